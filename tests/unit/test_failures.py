"""Failure fingerprints (pure) and failure groups on modern ClickHouse (chdb); the 18.16 server
is compared in tests/integration/test_ui_queries_both_servers.py."""

from __future__ import annotations

from collections import defaultdict

import pytest

from streams.failures import FINGERPRINT_CHARS, FRAGMENT_COLUMN, RULES, fingerprint, fingerprint_sql

MESSAGES = [
    ("KeyError('user 1234')", "KeyError('user <n>')"),
    ("ValueError('bad id 0x7f3a at 10.0.0.1:5672')", "ValueError('bad id <hex> at <ip>')"),
    ("<MyObj object at 0x7F3A9C0D2E10>", "<MyObj object at <hex>>"),
    ("task 3f2a1b4c-1234-4abc-8def-0123456789ab gone", "task <uuid> gone"),
    ("mail to a.b+c@mail.example.org bounced", "mail to <email> bounced"),
    ("connect to fe80::1:2:3 and 2001:db8:0:0:1:0:0:1 refused", "connect to <ip> and <ip> refused"),
    ("sha deadbeefcafe1234 took 1.5s at 12:30:45", "sha <hex> took <n>.<n>s at <n>:<n>:<n>"),
    ("Ünïcödé ५६ 42 日本", "Ünïcödé ५६ <n> 日本"),  # only ASCII digits are numbers (as RE2 reads [0-9])
    ("still broken (retries=2)", "still broken (retries=<n>)"),
    ("", ""),
    ("x" * 50_000, "x" * FINGERPRINT_CHARS),
    ("'quote\\' back\\\\slash %_ \u202e", "'quote\\' back\\\\slash %_ \u202e"),
]


@pytest.mark.parametrize("message, expected", MESSAGES)
def test_fingerprint_masks_what_varies(message, expected):
    assert fingerprint(message) == expected


def test_same_problem_same_fingerprint():
    assert fingerprint("KeyError('user 1234')") == fingerprint("KeyError('user 98765')")
    # from a hostile review: 8 digits or more were a hex run, short hex ids were not masked
    assert fingerprint("KeyError('user 9999999')") == fingerprint("KeyError('user 10000000')") == "KeyError('user <n>')"
    assert fingerprint("bad commit a1b2c3d") == fingerprint("bad commit 9f8e7d6") == "bad commit <hex>"
    assert fingerprint("deadbeef cafe sha256") == "deadbeef cafe sha<n>"  # words stay words
    assert fingerprint("Timeout after 30s to 10.1.2.3:6379") == fingerprint("Timeout after 5s to 192.168.0.77:6380")
    assert fingerprint("KeyError('user 1')") != fingerprint("KeyError('account 1')")
    assert fingerprint(None) == ""


def test_the_report_fragment_is_the_rules():
    from streams.report import fragments

    assert fragments()["failure_fingerprint"] == fingerprint_sql(FRAGMENT_COLUMN)
    assert len(RULES) == fingerprint_sql("x").count("replaceRegexpAll")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, scenario_events):
    from streams.migrate import migrate
    from tests.sqlkit import Chdb, insert_sql
    from tests.ui_data import final_tasks, ui_dataset

    ch = Chdb(str(tmp_path_factory.mktemp("chdb-groups")))
    migrate(ch.execute, "celery")
    tables, records = ui_dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        ch.execute(insert_sql("celery", table, columns, rows))
    yield ch, final_tasks(records)
    ch.close()


def test_clickhouse_masks_as_python_does(loaded):
    for message, expected in MESSAGES:
        (got,) = loaded[0].query(f"SELECT {fingerprint_sql('%(m)s')} AS f", {"m": message})[1]
        assert got[0] == expected == fingerprint(message), message


def oracle_groups(expected: dict) -> dict:
    groups = defaultdict(list)
    for r in expected.values():
        if r["state"] in ("FAILED", "CRITICAL"):
            groups[(r["cluster"], r["name"], r.get("exception_type") or "", fingerprint(r.get("exception")))].append(r)
    return groups


def test_failure_groups_on_chdb_are_the_oracles(loaded):
    from streams.ui import queries
    from tests.ui_data import T0

    ch, expected = loaded
    now = T0 + 3600  # after every failure of the data (the captures end near T0 + 700)
    rows = queries.failure_groups(ch.query, "celery", "", now=now, since=T0 - 3600 * 24 * 30, limit=1000)
    want = oracle_groups(expected)
    assert {(r["cluster"], r["name"], r["exception_type"], r["fingerprint"]): r["count"] for r in rows} == {k: len(v) for k, v in want.items()}
    assert [r["last_seen"] for r in rows] == sorted((r["last_seen"] for r in rows), reverse=True)
    for r in rows:
        members = want[(r["cluster"], r["name"], r["exception_type"], r["fingerprint"])]
        at = [m.get("failed_at") or m["last_seen_at"] for m in members]
        assert (r["first_seen"], r["last_seen"]) == pytest.approx((min(at), max(at)))
        latest = max(members, key=lambda m: m.get("failed_at") or m["last_seen_at"])
        assert r["latest_uuid"] == latest["uuid"] and r["latest_traceback"] == (latest.get("traceback") or "")
        assert r["workers_count"] == len({m.get("worker") or "" for m in members})
        assert sum(r["trend"]) == sum(1 for a in at if a >= T0 - 3600 * 24 * 30) and len(r["trend"]) == queries.TREND_BUCKETS
    grouped = next(r for r in rows if r["name"] == "group.me" and r["fingerprint"] == "KeyError('user <n>')")
    assert grouped["count"] == 3 and grouped["fingerprint"] == "KeyError('user <n>')" and grouped["workers"] == ["w-a", "w-b"]


def test_a_groups_search_lists_exactly_its_tasks(loaded):
    from streams.search import parse
    from streams.ui import queries

    ch, expected = loaded
    present = queries.table_columns(ch.query, "celery", "tasks")
    rows = queries.failure_groups(ch.query, "celery", "", now=2e9, since=1, limit=1000)
    want = oracle_groups(expected)
    for r in rows:
        text = queries.failure_group_search(r)
        where = queries.TaskFilter(cluster=r["cluster"], search=parse(text))
        got = {t["uuid"] for t in queries.tasks(ch.query, "celery", present, where, 1000)}
        key = (r["cluster"], r["name"], r["exception_type"], r["fingerprint"])
        assert got >= {m["uuid"] for m in want[key]}, text
        # other groups' tasks only where the exception search is a part of a longer type name
        assert all(expected[(r["cluster"], u)]["exception_type"] for u in got) or not r["exception_type"]


def test_name_filter_narrows_groups(loaded):
    from streams.search import Term
    from streams.ui import queries

    ch, _ = loaded
    rows = queries.failure_groups(ch.query, "celery", "", terms=(Term("name", "group.*"),), now=2e9, since=1, limit=1000)
    assert {r["name"] for r in rows} == {"group.me", "group.other"}
