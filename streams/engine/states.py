"""The task and worker state rules, written as data.

Everything the fold needs to know about Celery's event types lives here; ``fold.py`` only
interprets these tables. ``docs/state-rules.md`` explains each rule and why it is shaped so.
"""

# -- task states --------------------------------------------------------------------------
QUEUED = "QUEUED"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
RETRY = "RETRY"
REJECTED = "REJECTED"
REVOKED = "REVOKED"
RECOVERED = "RECOVERED"  # succeeded after >= 1 retry
CRITICAL = "CRITICAL"  # failed after >= 1 retry: the retry chain gave up

TASK_STATES = (QUEUED, RECEIVED, STARTED, SUCCEEDED, FAILED, RETRY, REJECTED, REVOKED, RECOVERED, CRITICAL)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, REJECTED, REVOKED, RECOVERED, CRITICAL})

# -- worker states ------------------------------------------------------------------------
ONLINE = "ONLINE"
HEARTBEAT = "HEARTBEAT"
OFFLINE = "OFFLINE"
WORKER_STATES = (ONLINE, HEARTBEAT, OFFLINE)
OFFLINE_LEFT = "left"
OFFLINE_HEARTBEAT_EXPIRED = "heartbeat-expired"
DEFAULT_EXPIRY_FACTOR = 2.0  # Celery's own rule: gone after 2 x freq without a heartbeat
DEFAULT_FREQ = 2.0  # Celery's heartbeat interval (worker_heartbeat / --heartbeat-interval default)
# A worker that never sent a freq (started --without-heartbeat, or seen only through its task
# events): Celery's State gives it Worker(freq=60), alive 2 x 60 s after its last event.
UNKNOWN_FREQ = 60.0

# -- event kinds ----------------------------------------------------------------------------
# A task event's *kind* is its type, except that task-rejected splits on `requeue`:
# a requeue ends one delivery (like a retry ends an attempt); a drop is terminal.
SENT = "sent"
RECEIVED_K = "received"
STARTED_K = "started"
SUCCEEDED_K = "succeeded"
FAILED_K = "failed"
RETRIED_K = "retried"
REVOKED_K = "revoked"
REQUEUED_K = "requeued"  # task-rejected {requeue: true}
IGNORED_K = "ignored"  # task-rejected {requeue: false}
CANCELLED_K = "cancelled"  # task-cancelled: acks_late task cancelled on broker connection loss
OTHER_K = "other"  # a well-formed task-* type these rules do not know: kept and counted, no state

TASK_EVENT_KINDS = {
    "task-sent": SENT,
    "task-received": RECEIVED_K,
    "task-started": STARTED_K,
    "task-succeeded": SUCCEEDED_K,
    "task-failed": FAILED_K,
    "task-retried": RETRIED_K,
    "task-revoked": REVOKED_K,
    "task-rejected": None,  # resolved by REJECTED_KIND[requeue]
    "task-cancelled": CANCELLED_K,
}
REJECTED_KIND = {True: REQUEUED_K, False: IGNORED_K}
TASK_PREFIX = "task-"
WORKER_PREFIX = "worker-"  # any worker-* event is a sign of life (Celery's State)

# Field types the engine relies on; anything else makes the event invalid (rule 7).
# `None` is allowed for every optional field (Celery sends nulls).
NUMBER = (int, float)
# Event timestamps are epoch seconds that ClickHouse's DateTime can hold (1970 - 2106): a value
# outside (a millisecond timestamp, a negative one) is malformed input, not an event.
MAX_TIMESTAMP = 4_294_967_296.0
TASK_FIELD_TYPES = {
    "retries": int,
    "runtime": NUMBER,
    "signum": int,
    "requeue": bool,
    "expired": bool,
    "terminated": bool,
    "name": str,
    "args": str,
    "kwargs": str,
    "result": str,
    "exception": str,
    "traceback": str,
    "root_id": str,
    "parent_id": str,
    "eta": str,
    "expires": str,
    "queue": str,
    "exchange": str,
    "routing_key": str,
}
# Older Celery shapes of fields the rules read, normalised before the type check (rule 7):
#   signum  Celery 4.x sends the signal of a terminate as text ("15", or a name such as "SIGTERM")
#   flags   0/1 where a boolean belongs (expired, terminated, requeue)
# Missing fields need no entry: every field but type/uuid/hostname/timestamp is optional.
LEGACY_SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15}
LEGACY_FIELDS = {"signum": "signal", "expired": "flag", "terminated": "flag", "requeue": "flag"}
WORKER_FIELD_TYPES = {
    "freq": NUMBER,
    "active": int,
    "processed": int,
    "loadavg": list,
    "sw_ident": str,
    "sw_ver": str,
    "sw_sys": str,
}

# -- how a task's fields are merged (rule 1: a function of the SET of events) ----------------
# A task's state keeps one compact entry per distinct event (kind, host, pid, clock, timestamp,
# receive time, retries) -- from which attempts, deliveries and the state are derived -- and
# *registers* for the large fields: each keeps the values of ONE event, the one with the
# greatest rank among the kinds listed.  Ranks are total orders built from the event itself
# (see `fold.event_rank`), so the winner never depends on arrival order or duplicates.
#   name: (kinds it reads, fields it keeps, rank used)
# Ranks:  "latest"   = (receive time, timestamp, clock, host, pid): receive times are the
#                      monitor's one clock, so events of two hosts compare without their skew
#         "ran-last" = (received-over-sent, *latest): the delivery received last is the one that
#                      ran last -- Task.replace() reuses the task id with retries back at 0, so the
#                      attempt number cannot say which message ran last (issue 19)
#         "earliest" = the smallest "latest" rank wins
#         "revoke"   = (terminated > expired > plain, *latest)
#         "success"  = (how many of result/runtime it has, *latest): the task-succeeded of a
#                      deduplicated redelivery (worker_deduplicate_successful_tasks) or of a
#                      success read back after a lost worker has result/runtime null, and never
#                      hides the one that has them
MERGE_RULES = {
    "meta": ((SENT, RECEIVED_K), ("name", "args", "kwargs", "root_id", "parent_id", "eta", "expires"), "ran-last"),
    "route": ((SENT,), ("queue", "exchange", "routing_key"), "ran-last"),
    "client": ((SENT,), ("hostname",), "earliest"),
    "success": ((SUCCEEDED_K,), ("result", "runtime"), "success"),
    "failure": ((FAILED_K,), ("exception", "traceback"), "latest"),
    "retry": ((RETRIED_K,), ("exception", "traceback"), "latest"),
    "revoke": ((REVOKED_K,), ("expired", "terminated", "signum"), "revoke"),
}
REGISTERS_BY_KIND: dict[str, tuple[str, ...]] = {}
for _name, (_kinds, _fields, _rank) in MERGE_RULES.items():
    for _kind in _kinds:
        REGISTERS_BY_KIND.setdefault(_kind, ())
        REGISTERS_BY_KIND[_kind] += (_name,)

# Fields the engine reads from each event type: only these are type-checked (rule 7), so a
# wrong type in a field nobody reads neither costs time nor invalidates the event.
_FLAGS = {"task-rejected": ("requeue",), "task-revoked": ("expired", "terminated", "signum")}
FIELDS_READ_BY_TYPE = {}
for _etype, _kind in TASK_EVENT_KINDS.items():
    _kinds = tuple(REJECTED_KIND.values()) if _kind is None else (_kind,)
    _read = {"retries"} if _kind in ("sent", "received") else set()
    _read.update(_FLAGS.get(_etype, ()))
    for _k in _kinds:
        for _name in REGISTERS_BY_KIND.get(_k, ()):
            _read.update(f for f in MERGE_RULES[_name][1] if f in TASK_FIELD_TYPES)
    FIELDS_READ_BY_TYPE[_etype] = {f: TASK_FIELD_TYPES[f] for f in sorted(_read)}

# Kinds that carry the attempt number (`retries`, 0-based).
RETRIES_KINDS = frozenset({SENT, RECEIVED_K})

# -- bounded state per task (issue 19) ----------------------------------------------------------
# A task retried for ever (celery.chord_unlock retries every second with max_retries=None) must
# not grow its state without bound (its table record passed Kafka's 1 MB at ~3,700 attempts and
# every fold cost O(events)). Past TASK_ENTRIES_MAX entries, the oldest are folded into a summary
# (counts per kind, the retries they proved, first/last times) until TASK_ENTRIES_KEEP remain;
# the newest entry of each kind is always kept. The raw events all stay in ClickHouse `events`.
TASK_ENTRIES_MAX = 512
TASK_ENTRIES_KEEP = 256

# -- attempts and deliveries (rules 2 and 4; docs/state-rules.md, "Emit paths") ---------------
# A *delivery* is one run of the task's message on one worker; an *attempt* is one value of
# `retries` (Task.retry sends a new message with retries + 1; a requeue or a cancel redelivers
# the same one).  Only task-sent/-received say which attempt they belong to, so every other
# worker-side event is placed on its own host's timeline -- ordered by that host's clock, the
# only comparison of sender timestamps the engine makes -- by these rules:
#   task-received opens a delivery whose attempt is its `retries`;
#   each other kind joins a delivery on its host in the phase named here:
#     "waiting"  the OLDEST not started and not ended (task-started: the worker runs messages in
#                the order it got them, and Celery may announce attempt n's start after it already
#                received attempt n+1's message -- docs/emit-paths.md, F1)
#     "running"  the latest started and not ended, else the latest not ended (results, retries,
#                rejects, cancels: a task-received of the next attempt may come before the
#                task-retried of this one)
#     "open"     the latest not ended (a revoke: before or after the start)
#   with none, a kind listed in AFTER_HANDBACK joins the host's last delivery when that one was
#   handed back to the broker (5.7: a hard time limit under acks_late with acks on timeout off
#   sends task-rejected(requeue=true), then task-failed, and the message runs again -- F2);
#   else it opens a delivery of its own (its task-received never reached us): after a delivery
#   ended by ENDS[kind] its attempt is that one's + the increment, else the host's last attempt
#   (or 0, a lower bound, when the host has none).
JOINS = {
    STARTED_K: "waiting",
    SUCCEEDED_K: "running",
    FAILED_K: "running",
    RETRIED_K: "running",
    CANCELLED_K: "running",
    REQUEUED_K: "running",
    IGNORED_K: "running",
    REVOKED_K: "open",
}
# Kinds that end a delivery and are followed by another one: the value is how much the next
# delivery's attempt grows (a retry is a new attempt; a requeue or a cancel redelivers it).
ENDS = {RETRIED_K: 1, REQUEUED_K: 0, CANCELLED_K: 0}
# A delivery handed back to the broker (requeued, cancelled) is not the task's end: a terminal
# event in it does not make the task terminal.
HANDED_BACK = frozenset({REQUEUED_K, CANCELLED_K})
AFTER_HANDBACK = frozenset({FAILED_K})
# The current delivery: with a terminal state, the one holding the deciding terminal event;
# otherwise the greatest (attempt, receive time of its first event).

# -- how the state is decided (rules 3 and 4) -----------------------------------------------
# Terminal kinds, highest precedence first: when several are present the first one decides.
#  * succeeded: the work was done; a failure/revoke of an earlier delivery does not undo it.
#  * rejected: the task's own Reject(requeue=False) -- a task-rejected(requeue=false) with no
#    task-failed, or a task-failed whose exception is Reject (celery/worker/request.py
#    on_failure; without acks_late the message was acked already and only task-failed is sent).
#  * revoked: a terminate may also produce a task-failed; the revoke is the reason.
#  * failed: an ordinary failure, even when a task-rejected(requeue=false) came with it
#    (acks_late with task_acks_on_failure_or_timeout=False rejects every failed message to
#    drop it from the prefetched queue: the task FAILED, the tag rejection=ignored stays).
OWN_REJECT = "rejected"
REJECT_EXCEPTION = "Reject"
TERMINAL_PRECEDENCE = (
    (SUCCEEDED_K, SUCCEEDED),
    (OWN_REJECT, REJECTED),
    (REVOKED_K, REVOKED),
    (FAILED_K, FAILED),
)
# A terminal state reached after retries gets its own name.
AFTER_RETRIES = {SUCCEEDED: RECOVERED, FAILED: CRITICAL}

# Without a terminal event, the current delivery decides: ended -> by how it ended;
ENDING_STATE = {RETRIED_K: RETRY, REQUEUED_K: REJECTED, CANCELLED_K: RETRY}
# (task-cancelled: Celery marks the result RETRY "cancelled by Celery" and the unacked message
# is redelivered with the same retries.)  Not ended -> how far it got:
PROGRESS = ((STARTED_K, STARTED), (RECEIVED_K, RECEIVED))
# ... and with no delivery at all, the task was only published.
ONLY_SENT_STATE = QUEUED
# A task whose worker was lost while it was in one of these states is tagged orphaned.
ORPHANABLE_STATES = frozenset({RECEIVED, STARTED})

# Revocation tags (Leek: E = expired, T = terminated + signal).
REVOCATION_EXPIRED = "expired"
REVOCATION_TERMINATED = "terminated"
REVOCATION_PLAIN = "revoked"
REVOKE_RANK = {REVOCATION_TERMINATED: 2, REVOCATION_EXPIRED: 1, REVOCATION_PLAIN: 0}

# Rejection tags (Leek: I = ignored, Q = requeued).
REJECTION_IGNORED = "ignored"
REJECTION_REQUEUED = "requeued"

# Exception reprs that hide the real type; it is then read from the traceback's last line.
WRAPPER_EXCEPTIONS = frozenset({"ExceptionWithTraceback", "None", ""})
# Wrappers whose repr names the real type as an argument:
#   UnpickleableExceptionWrapper('module', 'Type', (args,), 'text')  (celery.utils.serialization)
NAMING_WRAPPERS = {"UnpickleableExceptionWrapper": 1}  # wrapper -> index of the type-name argument

# -- workers: liveness on the monitor's clock ---------------------------------------------------
# Celery's State (celery/events/state.py, Worker.event / Worker.alive) keeps the times the
# monitor *received* events (local_received) and judges a worker gone when its newest is more
# than freq x HEARTBEAT_EXPIRE_WINDOW (200 %) old on the monitor's own clock; any event from the
# worker counts, task events included.  It only warns when the worker's clock drifts from the
# monitor's by more than HEARTBEAT_DRIFT_MAX (16 s).
DEFAULT_DRIFT_THRESHOLD = 16.0
