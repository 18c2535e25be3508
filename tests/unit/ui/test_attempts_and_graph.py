"""A task's events grouped into attempts; the workflow tree layout."""

from collections import defaultdict

from streams.ui.attempts import group_attempts
from streams.ui.workflow import layout


def by_uuid(events):
    out = defaultdict(list)
    for e in events:
        if e.get("uuid"):
            out[e["uuid"]].append(e)
    return out


def test_retried_then_recovered_task_has_one_delivery_per_attempt(scenario_events, scenario_ids):
    events = by_uuid(scenario_events)[scenario_ids["recovered_retry"][0]]
    groups = group_attempts(events)
    assert [(g.number, g.delivery, g.hostname) for g in groups] == [(0, 1, "w1@vm"), (1, 1, "w1@vm"), (2, 1, "w1@vm")]
    assert [g.ending["type"] for g in groups] == ["task-retried", "task-retried", "task-succeeded"]
    # the real order: received(n+1) arrives before retried(n); the retry still ends attempt n
    for g in groups:
        types = [e["type"] for e in g.events]
        assert types.index("task-received") < types.index("task-started") < types.index(g.ending["type"])
    assert sum(len(g.events) for g in groups) == len(events)
    assert all(g.queue_wait is not None and g.queue_wait >= 0 and g.runtime is not None for g in groups)


def test_attempts_on_two_workers_and_a_requeue():
    def ev(t, etype, host, **kw):
        return {"type": etype, "hostname": host, "timestamp": t, "clock": int(t * 10), **kw}

    events = [
        ev(1.0, "task-sent", "client@c", retries=0),
        ev(1.1, "task-received", "a@h", retries=0),
        ev(1.2, "task-started", "a@h"),
        ev(1.3, "task-rejected", "a@h", requeue=True),
        ev(1.4, "task-received", "a@h", retries=0),
        ev(1.5, "task-started", "a@h"),
        ev(1.6, "task-sent", "gen1@a", retries=1),
        ev(1.7, "task-received", "b@h", retries=1),
        ev(1.8, "task-retried", "a@h", exception="E()"),
        ev(2.0, "task-started", "b@h"),
        ev(2.5, "task-succeeded", "b@h", runtime=0.5),
    ]
    groups = group_attempts(list(reversed(events)))  # arrival order does not matter
    assert [(g.number, g.delivery, g.hostname, g.ending["type"]) for g in groups] == [
        (0, 1, "a@h", "task-rejected"), (0, 2, "a@h", "task-retried"), (1, 1, "b@h", "task-succeeded")]  # fmt: skip
    assert groups[0].events[0]["type"] == "task-sent"
    assert groups[2].runtime == 0.5 and abs(groups[2].queue_wait - 0.3) < 1e-9


def test_expired_before_any_worker_received_it_is_a_delivery_of_the_revoking_worker(scenario_events, scenario_ids):
    events = by_uuid(scenario_events)[scenario_ids["expired_past"][0]]
    groups = group_attempts(events)
    assert groups and groups[-1].ending["type"] == "task-revoked"


def test_workflow_chain_and_group_layout():
    rows = [
        {"uuid": "r", "parent_id": None, "root_id": None, "first_seen_at": 1},
        {"uuid": "a", "parent_id": "r", "root_id": "r", "first_seen_at": 2},
        {"uuid": "b", "parent_id": "r", "root_id": "r", "first_seen_at": 3},
        {"uuid": "c", "parent_id": "a", "root_id": "r", "first_seen_at": 4},
        {"uuid": "d", "parent_id": "gone", "root_id": "r", "first_seen_at": 5},  # parent not stored: hangs off the root
    ]
    graph = layout(rows, "a")
    nodes = {n.row["uuid"]: n for n in graph.nodes}
    assert {(a.row["uuid"], b.row["uuid"]) for a, b in graph.edges} == {("r", "a"), ("r", "b"), ("a", "c"), ("r", "d")}
    assert (nodes["r"].depth, nodes["a"].depth, nodes["c"].depth) == (0, 1, 2)
    assert nodes["a"].current and not nodes["b"].current
    assert len({(n.x, n.y) for n in graph.nodes}) == len(rows)  # no two nodes on one spot


def test_workflow_survives_parent_loops_and_long_chains():
    loop = [{"uuid": "x", "parent_id": "y"}, {"uuid": "y", "parent_id": "x"}]
    assert len(layout(loop, "x").nodes) == 2
    chain = [{"uuid": f"t{i}", "parent_id": f"t{i - 1}" if i else None, "root_id": "t0", "first_seen_at": i} for i in range(5000)]
    graph = layout(chain, "t0")
    assert len(graph.nodes) == 5000 and max(n.depth for n in graph.nodes) == 4999


def test_a_tasks_own_reject_ends_its_delivery_as_a_rejection_not_a_failure():
    """Celery sends task-failed{Reject} then task-rejected(requeue=false) (acks_late), or the failure
    alone: the state is REJECTED(ignored), and so is the delivery's outcome on the page."""
    def ev(t, etype, **kw):
        return {"type": etype, "hostname": "a@h", "timestamp": t, "clock": int(t * 10), **kw}

    base = [ev(1.0, "task-received", retries=0), ev(1.1, "task-started")]
    failed = ev(1.2, "task-failed", exception="Reject(reason='bad input', requeue=False)")
    with_event = group_attempts(base + [failed, ev(1.3, "task-rejected", requeue=False)])
    alone = group_attempts(base + [failed])
    assert with_event[-1].outcome == ("rejected (dropped)", "task-rejected")
    assert alone[-1].outcome == ("rejected (dropped)", "task-rejected")
    ordinary = group_attempts(base + [ev(1.2, "task-failed", exception="ValueError('x')"), ev(1.3, "task-rejected", requeue=False)])
    assert ordinary[-1].outcome == ("failed", "task-failed")  # the dead-letter setup: FAILED, tagged ignored
