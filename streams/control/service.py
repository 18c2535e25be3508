"""`celery-monitor control`: the one process that holds broker credentials and acts on tasks.

HTTP on CONTROL_HOST:CONTROL_PORT (loopback by default), three routes:

    GET  /healthz        "ok"
    POST /v1/nonce       {"nonce": hex} -- one use, NONCE_TTL seconds (signing.py)
    POST /v1/actions     a signed request (below) -> the result per task

Why HTTP and not a Kafka command topic: a dry run and a real run must answer the person who asked,
at once and per task; a command topic would need a reply channel, and a command re-read after a
crash would retry the same tasks twice. The audit does go through Kafka (audit.py).

A request (JSON, signed: ``X-Control-Signature: hex(HMAC-SHA256(CONTROL_SECRET, body))``)::

    {"nonce": "...", "request_id": "...", "user": "alice", "role": "operator", "via": "basic",
     "action": "revoke" | "terminate" | "retry", "dry_run": true,
     "selection": {"cluster", "state", "name", "taskname", "worker", "uuid", "uuids", "q", "window"},
     "options": {"signal": "SIGTERM", "queue": ""}}

The selection takes the task list's filters (and search text), resolved here from ClickHouse,
never task data sent by the caller. Answers: 200 the result; 400 a bad request; 401 a bad
signature or nonce; 403 not an operator; 413 a selection over CONTROL_SELECT_LIMIT; 503 ClickHouse
or the audit topic unavailable (nothing was done).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid as uuidlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from streams import search
from streams.config import Settings

from . import rules
from .audit import AuditLog, AuditUnavailable, row
from .signing import HEADER, Nonces, valid

log = logging.getLogger("streams.control")

MAX_BODY = 1_000_000  # bytes of a request
MAX_SELECTION = 16_384  # characters of a selection's JSON (it goes on the audit's request row)
SELECTION_KEYS = {"cluster", "state", "name", "taskname", "worker", "uuid", "uuids", "q", "window"}
REVOKE_CHUNK = 500  # task ids per revoke broadcast
RETRIED_MEMORY = 100_000  # (cluster, uuid) -> copy, remembered until the audit table has them
ROLES = ("viewer", "operator")


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Controller:
    """Resolves a selection, judges each task (rules.py), audits, acts. ``execute`` is a
    ClickHouse ``execute(sql, params) -> (columns, rows)``; ``brokers`` maps cluster -> ClusterSpec;
    ``apps`` (tests) maps cluster -> a Celery app."""

    def __init__(self, settings: Settings, brokers: dict, execute=None, audit: AuditLog | None = None, apps: dict | None = None):
        self.settings = settings
        self.db = settings.clickhouse_database
        self.brokers = brokers
        self.pool = None
        if execute is None:
            from streams.ui.db import Pool

            self.pool = Pool(settings.replace(ui_row_limit=settings.control_select_limit + 1, ui_query_timeout=30.0), size=2)
            execute = self.pool.execute
        self.execute = execute
        self.audit = audit or AuditLog(settings)
        self.apps = dict(apps or {})
        self.retried: collections.OrderedDict = collections.OrderedDict()
        self.lock = threading.Lock()  # one real run at a time: two overlapping selections must not retry a task twice
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.retry_tasks = tuple(p.strip() for p in settings.control_retry_tasks.split(",") if p.strip())

    # -- selection --------------------------------------------------------------------------
    def task_filter(self, selection: dict):
        from streams.ui.api import parse_states
        from streams.ui.queries import TaskFilter

        unknown = set(selection) - SELECTION_KEYS
        if unknown:
            raise RequestError(400, f"unknown selection key(s) {sorted(unknown)}; known: {sorted(SELECTION_KEYS)}")
        text = {k: selection.get(k, "") for k in ("cluster", "name", "taskname", "worker", "uuid", "q")}
        if any(not isinstance(v, str) for v in text.values()):
            raise RequestError(400, "selection values cluster, name, taskname, worker, uuid, q are strings")
        states = selection.get("state") or []
        states = [states] if isinstance(states, str) else states
        try:
            window = float(selection.get("window") or 0)
            parsed_states = parse_states(str(s) for s in states)
            terms = search.parse(text["q"])
        except (ValueError, TypeError, search.SearchError) as exc:
            raise RequestError(400, f"selection: {exc}") from None
        if not window >= 0 or window == float("inf"):
            raise RequestError(400, "selection: window is seconds, >= 0")
        return TaskFilter(cluster=text["cluster"], states=parsed_states, name=text["name"], worker=text["worker"], uuid=text["uuid"],
                          since=time.time() - window if window else 0.0, search=terms, exact_name=text["taskname"])  # fmt: skip

    def resolve(self, selection: dict) -> list[dict]:
        """The selected tasks' records, oldest first. Raises RequestError (400, 413)."""
        from streams.ui.queries import _in_cluster

        where = self.task_filter(selection)
        uuids = selection.get("uuids") or []
        if not isinstance(uuids, list) or not all(isinstance(u, str) and u for u in uuids):
            raise RequestError(400, "selection: uuids is a list of task ids")
        if uuids and not where.cluster:
            raise RequestError(400, "selection: uuids needs cluster (a task id is unique per cluster only)")
        if not uuids and not (where.cluster or where.states or where.name or where.worker or where.uuid or where.search or where.exact_name
                              or where.since):  # fmt: skip
            raise RequestError(400, "selection: choose tasks (a filter, a search or uuids); an empty selection would be every task")
        limit = self.settings.control_select_limit
        if len(uuids) > limit:
            raise RequestError(413, f"selection holds {len(uuids):,} task ids, more than CONTROL_SELECT_LIMIT={limit:,}")
        params = {**where.params(), "uuids": tuple(uuids) or ("",), "any_uuid": 0 if uuids else 1, "limit": limit + 1}
        sql = f"""
            SELECT cluster, uuid, name, state, revocation_reason, args, kwargs, queue, exchange, routing_key, root_id, parent_id, worker
            FROM {self.db}.tasks FINAL
            WHERE {_in_cluster(where.cluster)} {where.where()} AND (%(any_uuid)s = 1 OR uuid IN %(uuids)s)
            ORDER BY first_seen_at, uuid
            LIMIT %(limit)s"""
        columns, rows = self._query(sql, params)
        if len(rows) > limit:
            raise RequestError(413, f"the selection holds more than CONTROL_SELECT_LIMIT={limit:,} tasks: narrow the filter")
        return [dict(zip(columns, r)) for r in rows]

    def _query(self, sql: str, params: dict):
        from streams.ui.db import ClickHouseDown, QueryTimeout, TooManyRows

        try:
            return self.execute(sql, params)
        except (ClickHouseDown, QueryTimeout) as exc:
            raise RequestError(503, f"ClickHouse: {exc}; nothing was done") from None
        except TooManyRows:
            raise RequestError(413, f"the selection holds more than CONTROL_SELECT_LIMIT={self.settings.control_select_limit:,} tasks") from None

    def already_retried(self, tasks: list[dict]) -> dict[tuple[str, str], str]:
        """(cluster, uuid) -> the copy an earlier real retry sent or claimed: this process's memory, then
        the audit table, where a run's 'requested' rows claim each copy's id before it is sent (a
        control service killed while sending, or a second one, cannot send a task twice)."""
        found = {k: v for k in ((t["cluster"], t["uuid"]) for t in tasks) if (v := self.retried.get(k))}
        wanted = tuple({t["uuid"] for t in tasks if (t["cluster"], t["uuid"]) not in found})
        if wanted:
            sql = f"""
                SELECT cluster, uuid, new_uuid FROM {self.db}.audit FINAL
                WHERE uuid IN %(uuids)s AND action = 'retry' AND dry_run = 0 AND new_uuid != '' AND outcome != 'error'"""
            _, rows = self._query(sql, {"uuids": wanted})
            for cluster, uuid, new in rows:
                found.setdefault((cluster, uuid), new)
        return found

    # -- a request --------------------------------------------------------------------------
    def handle(self, request: dict) -> dict:
        """One checked request (signature and nonce already verified) -> the result."""
        action, dry_run = request.get("action"), request.get("dry_run", True)
        if action not in rules.ACTIONS:
            raise RequestError(400, f"action must be one of {', '.join(rules.ACTIONS)}")
        if not isinstance(dry_run, bool):
            raise RequestError(400, "dry_run is true or false")
        user, role = request.get("user"), request.get("role")
        if not isinstance(user, str) or not user or role not in ROLES:
            raise RequestError(400, "user and role (viewer | operator) are required")
        if role != "operator":
            raise RequestError(403, f"{user} is a {role}: task control needs the operator role")
        selection, options = request.get("selection") or {}, request.get("options") or {}
        if not isinstance(selection, dict) or not isinstance(options, dict) or set(options) - {"signal", "queue"}:
            raise RequestError(400, "selection and options are objects; options: signal, queue")
        opts = rules.Options(signal=str(options.get("signal") or "SIGTERM").upper(), queue=str(options.get("queue") or ""))
        if opts.signal not in rules.SIGNALS:
            raise RequestError(400, f"signal must be one of {', '.join(rules.SIGNALS)}")
        if len(json.dumps(selection)) > MAX_SELECTION:
            raise RequestError(413, f"selection larger than {MAX_SELECTION:,} characters of JSON")
        request_id = str(request.get("request_id") or uuidlib.uuid4())
        applies = {"terminate": {"signal": opts.signal}, "retry": {"queue": opts.queue} if opts.queue else {}}.get(action, {})
        meta = {"request_id": request_id, "at": time.time(), "user": user, "role": role, "action": action, "dry_run": dry_run,
                "via": str(request.get("via") or "")[:20], "selection": {**selection, "options": applies},
                "cluster": selection.get("cluster") or "", "control": self.identity}  # fmt: skip
        with self.lock if not dry_run else contextlib.nullcontext():
            tasks = self.resolve(selection)
            retried = self.already_retried(tasks) if action == "retry" else {}
            judged = []
            for task in tasks:
                key = (task["cluster"], task["uuid"])
                found = rules.verdict(action, task, opts, retried.get(key, ""), has_broker=task["cluster"] in self.brokers,
                                      retry_tasks=self.retry_tasks)  # fmt: skip
                detail = f"the copy: {retried[key]}" if key in retried else ""
                judged.append({**task, "eligible": found.eligible, "reason": found.reason, "outcome": "", "detail": detail, "new_uuid": ""})
            eligible = [t for t in judged if t["eligible"]]
            todo = [] if dry_run else eligible[: self.settings.control_max_tasks]
            if not dry_run:
                claims = []
                for task in todo:
                    if action == "retry":
                        task["new_uuid"] = str(uuidlib.uuid4())
                        claims.append(row(meta, "requested", task={**task, "outcome": "", "detail": "sending"}))
                self.audit.write([row(meta, "requested", counts={"selected": len(judged), "eligible": len(eligible)})] + claims)
            self._act(action, todo, opts)
            for task in judged:
                if dry_run:
                    task["outcome"] = "dry-run"
                elif not task["outcome"]:
                    task["outcome"] = "skipped"
                    if task["eligible"]:
                        task["detail"] = f"over CONTROL_MAX_TASKS={self.settings.control_max_tasks}: not done; run again"
            done = sum(1 for t in judged if t["outcome"] in ("ok", "no-reply"))
            counts = {"selected": len(judged), "eligible": len(eligible), "done": done}
            finished = time.time()
            records = [row(meta, "done", finished_at=finished, counts=counts)]
            records += [row(meta, "done", task=t, finished_at=finished) for t in judged]
            audit_error = ""
            try:
                self.audit.write(records)
            except AuditUnavailable as exc:
                if dry_run:
                    raise RequestError(503, f"audit unavailable: {exc}; nothing was done") from None
                # The tasks were acted on and the request row says so ('requested'); the results are
                # in the answer and the log. Never silent:
                audit_error = str(exc)
                log.error("control: request %s by %s done but its results are not in the audit: %s; results: %s",
                          request_id, user, exc, json.dumps([{k: t[k] for k in ("cluster", "uuid", "outcome", "new_uuid")} for t in judged]))  # fmt: skip
        reasons = collections.Counter(t["reason"] for t in judged if not t["eligible"])
        log.info("control: %s %s by %s (%s): %d selected, %d eligible, %d done", "dry run" if dry_run else "run", action, user,
                 request_id, len(judged), len(eligible), done)  # fmt: skip
        return {
            "request_id": request_id, "action": action, "dry_run": dry_run, "user": user, "selected": len(judged),
            "eligible": len(eligible), "done": done, "max_tasks": self.settings.control_max_tasks,
            "capped": not dry_run and len(eligible) > self.settings.control_max_tasks,
            "not_eligible": [{"reason": r, "tasks": n} for r, n in reasons.most_common()], "audit_error": audit_error,
            "eligible_names": dict(collections.Counter(t["name"] for t in judged if t["eligible"]).most_common()),
            "eligible_uuids": [t["uuid"] for t in eligible[: self.settings.control_max_tasks]],
            "tasks": [{k: t[k] for k in ("cluster", "uuid", "name", "state", "eligible", "reason", "outcome", "detail", "new_uuid")} for t in judged],
        }  # fmt: skip

    # -- acting -----------------------------------------------------------------------------
    def app(self, cluster: str):
        if cluster not in self.apps:
            from celery import Celery

            spec = self.brokers[cluster]
            app = Celery(f"celery-monitor-control-{cluster}", broker=spec.broker_url, set_as_current=False)
            # event_exchange: the copy's task-sent goes where the cluster's bridge listens
            app.conf.update(task_send_sent_event=True, broker_connection_retry_on_startup=True, broker_connection_timeout=10,
                            broker_transport_options=dict(spec.transport_options), broker_use_ssl=spec.ssl or False,
                            event_exchange=spec.event_exchange or self.settings.bridge_event_exchange)  # fmt: skip
            self.apps[cluster] = app
        return self.apps[cluster]

    def _act(self, action: str, tasks: list[dict], opts: rules.Options) -> None:
        by_cluster = collections.defaultdict(list)
        for task in tasks:
            by_cluster[task["cluster"]].append(task)
        for cluster, group in by_cluster.items():
            app = self.app(cluster)
            if action == "retry":
                for task in group:
                    self._retry(app, task, opts)
            else:
                for start in range(0, len(group), REVOKE_CHUNK):
                    self._revoke(app, group[start : start + REVOKE_CHUNK], action == "terminate", opts.signal)

    def _revoke(self, app, tasks: list[dict], terminate: bool, signal: str) -> None:
        ids = [t["uuid"] for t in tasks]
        try:
            replies = app.control.revoke(ids, terminate=terminate, signal=signal, reply=True, timeout=self.settings.control_reply_timeout)
        except Exception as exc:  # the broker's own errors (kombu/amqp/redis): reported per task
            for task in tasks:
                task.update(outcome="error", detail=f"revoke failed: {type(exc).__name__}: {exc}")
            return
        answers = {name: str(answer.get("ok") or answer.get("error") or answer) for reply in replies or [] for name, answer in reply.items()}
        for task in tasks:
            if answers:
                # A terminate's reply names the task on the worker that ran it ("terminate: <id>");
                # the others answer "tasks unknown".
                ran = sorted(name for name, text in answers.items() if terminate and task["uuid"] in text)
                what = f"terminate ({signal})" if terminate else "revoke"
                where = f"; signalled by {', '.join(ran)}" if ran else ("; no worker was running it" if terminate else "")
                task.update(outcome="ok", detail=f"{what} acknowledged by {len(answers)} worker(s){where}")
            else:
                task.update(outcome="no-reply", detail=f"broadcast; no worker replied within {self.settings.control_reply_timeout:g} s "
                                                       "(Celery keeps revokes in the memory of the workers that hear them)")  # fmt: skip

    def _retry(self, app, task: dict, opts: rules.Options) -> None:
        try:
            message = rules.retry_message(task, opts, task_id=task.get("new_uuid") or None, retry_tasks=self.retry_tasks)
        except ValueError as exc:  # judged eligible a moment ago: cannot happen unless the rules changed
            task.update(outcome="error", detail=str(exc), new_uuid="")
            return
        try:
            app.send_task(message.name, **message.send_task_kwargs())
        except Exception as exc:  # the broker's own errors, serialization: reported per task
            task.update(outcome="error", detail=f"send_task failed: {type(exc).__name__}: {exc}", new_uuid="")  # the claim is released
            return
        task.update(outcome="ok", new_uuid=message.task_id, detail=f"sent as {message.task_id}")
        self.retried[(task["cluster"], task["uuid"])] = message.task_id
        while len(self.retried) > RETRIED_MEMORY:
            self.retried.popitem(last=False)

    def close(self) -> None:
        if self.pool:
            self.pool.close()
        for app in self.apps.values():
            app.close()


def create_app(settings: Settings, controller: Controller) -> Starlette:
    secret = settings.secret("control_secret")
    nonces = Nonces()

    async def nonce(request: Request) -> JSONResponse:
        return JSONResponse({"nonce": nonces.issue()})

    async def actions(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            return JSONResponse({"error": f"a request needs Content-Length, at most {MAX_BODY:,} bytes"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"request larger than {MAX_BODY:,} bytes"}, status_code=413)
        if not valid(secret, body, request.headers.get(HEADER, "")):
            log.warning("control: refused a request from %s: bad or missing %s (is CONTROL_SECRET the same as the UI's?)",
                        request.client.host if request.client else "?", HEADER)  # fmt: skip
            return JSONResponse({"error": f"bad or missing {HEADER}: celery-monitor control refused the signature (CONTROL_SECRET differs?)"},
                                status_code=401)  # fmt: skip
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(payload, dict) or not nonces.use(str(payload.get("nonce", ""))):
            return JSONResponse({"error": "nonce unknown, used or expired: ask /v1/nonce for a new one"}, status_code=401)
        from starlette.concurrency import run_in_threadpool

        try:
            result = await run_in_threadpool(controller.handle, payload)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except AuditUnavailable as exc:
            return JSONResponse({"error": f"audit unavailable: {exc}; nothing was done"}, status_code=503)
        except Exception as exc:  # noqa: BLE001 - every answer is JSON (e.g. ClickHouse without the audit table: run migrate)
            log.exception("control: request failed")
            return JSONResponse({"error": f"{type(exc).__name__}: {str(exc)[:500]}"}, status_code=500)
        return JSONResponse(result)

    routes = [
        Route("/healthz", lambda request: PlainTextResponse("ok\n")),
        Route("/v1/nonce", nonce, methods=["POST"]),
        Route("/v1/actions", actions, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def brokers_of(settings: Settings, config_file: str | None) -> dict:
    """cluster -> ClusterSpec: the cluster file (the bridge's format), else CLUSTER + CELERY_BROKER_URL."""
    from bridge.clusters import ClusterSpec, load_clusters

    if config_file:
        return {spec.name: spec for spec in load_clusters(config_file)}
    return {settings.cluster: ClusterSpec(settings.cluster, settings.secret("broker_url"), ssl=settings.broker_ssl)}


def serve(settings: Settings, config_file: str | None = None) -> None:
    """Run until SIGINT/SIGTERM. Raises SettingError for a missing secret or a taken port."""
    import uvicorn

    from streams.listen import SettingError, listen

    if not settings.secret("control_secret"):
        raise SettingError("CONTROL_SECRET is not set: task control stays off (set it here and in the UI, with CONTROL_URL)")
    brokers = brokers_of(settings, config_file)
    sock = listen(settings.control_port, "control_port", backlog=64, host=settings.control_host)
    controller = Controller(settings, brokers)
    log.info("control on http://%s:%s/ for cluster(s) %s; audit to %s; at most %d tasks per run",
             settings.control_host, settings.control_port, ", ".join(sorted(brokers)), settings.topic_audit, settings.control_max_tasks)  # fmt: skip
    config = uvicorn.Config(create_app(settings, controller), log_level="warning", access_log=False, proxy_headers=False, server_header=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        controller.close()
