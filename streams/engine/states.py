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
DEFAULT_FREQ = 2.0

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

TASK_EVENT_KINDS = {
    "task-sent": SENT,
    "task-received": RECEIVED_K,
    "task-started": STARTED_K,
    "task-succeeded": SUCCEEDED_K,
    "task-failed": FAILED_K,
    "task-retried": RETRIED_K,
    "task-revoked": REVOKED_K,
    "task-rejected": None,  # resolved by REJECTED_KIND[requeue]
}
REJECTED_KIND = {True: REQUEUED_K, False: IGNORED_K}
WORKER_EVENT_TYPES = frozenset({"worker-online", "worker-heartbeat", "worker-offline"})

# Field types the engine relies on; anything else makes the event invalid (rule 7).
# `None` is allowed for every optional field (Celery sends nulls).
NUMBER = (int, float)
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
# Every register keeps the value(s) of ONE event: the one with the greatest rank among the
# event kinds listed.  Ranks are total orders built from the event itself (see
# `fold.event_rank`), so the winner never depends on arrival order or duplicates.
#   name: (kinds it reads, fields it keeps, rank used)
# Ranks:  "attempt"  = (retries, received-over-sent, timestamp, clock, identity)
#         "latest"   = (timestamp, clock, identity)
#         "earliest" = the smallest "latest" rank wins
#         "revoke"   = (terminated > expired > plain, timestamp, clock, identity)
MERGE_RULES = {
    "meta": ((SENT, RECEIVED_K), ("name", "args", "kwargs", "root_id", "parent_id", "eta", "expires"), "attempt"),
    "route": ((SENT,), ("queue", "exchange", "routing_key"), "attempt"),
    "client": ((SENT,), ("hostname",), "earliest"),
    "worker": (
        (RECEIVED_K, STARTED_K, SUCCEEDED_K, FAILED_K, RETRIED_K, REVOKED_K, REQUEUED_K, IGNORED_K),
        ("hostname",),
        "latest",
    ),
    "success": ((SUCCEEDED_K,), ("result", "runtime"), "latest"),
    "failure": ((FAILED_K,), ("exception", "traceback"), "latest"),
    "retry": ((RETRIED_K,), ("exception", "traceback"), "latest"),
    "revoke": ((REVOKED_K,), ("expired", "terminated", "signum"), "revoke"),
    # Which ended the latest delivery: a retry or a requeue (only read when nothing is terminal).
    "ending": ((RETRIED_K, REQUEUED_K), ("kind",), "latest"),
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

# Kinds that carry the attempt number (`retries`, 0-based); rule 2: retries = the highest seen.
RETRIES_KINDS = frozenset({SENT, RECEIVED_K})

# Per-state timestamps: the latest event of each kind (the latest attempt's).
TIMESTAMP_FIELDS = {
    SENT: "queued_at",
    RECEIVED_K: "received_at",
    STARTED_K: "started_at",
    SUCCEEDED_K: "succeeded_at",
    FAILED_K: "failed_at",
    RETRIED_K: "retried_at",
    REQUEUED_K: "rejected_at",
    IGNORED_K: "rejected_at",
    REVOKED_K: "revoked_at",
}

# -- how the state is decided (rules 3 and 4) -----------------------------------------------
# Terminal kinds, highest precedence first: when several are present the first one decides.
#  * succeeded: the work was done; a failure/revoke of an earlier delivery does not undo it.
#  * ignored (task-rejected requeue=false): a delivery that ends in task-failed AND a drop is
#    REJECTED, not FAILED (Reject(requeue=False) with acks_late emits both).
#  * revoked: a terminate may also produce a task-failed; the revoke is the reason.
#  * failed: duplicates count once, because a set has no duplicates.
TERMINAL_PRECEDENCE = (
    (SUCCEEDED_K, SUCCEEDED),
    (IGNORED_K, REJECTED),
    (REVOKED_K, REVOKED),
    (FAILED_K, FAILED),
)
# A terminal state reached after retries gets its own name.
AFTER_RETRIES = {SUCCEEDED: RECOVERED, FAILED: CRITICAL}

# Without a terminal event: deliveries ended so far = retried + requeued events; the current
# delivery is at the furthest of these points whose count exceeds the ended deliveries.
PROGRESS = ((STARTED_K, STARTED), (RECEIVED_K, RECEIVED))
# ...else, if a delivery ended, the latest ending decides:
ENDING_STATE = {RETRIED_K: RETRY, REQUEUED_K: REJECTED}
# ...else the task was only published.
ONLY_SENT_STATE = QUEUED

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
