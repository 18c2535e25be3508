"""The search parser (pure) and its SQL on modern ClickHouse (chdb) against a Python oracle;
tests/integration/test_ui_queries_both_servers.py runs the same searches on 18.16."""

from __future__ import annotations

import dataclasses
import fnmatch
import re

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from streams.search import ANY, SearchError, Term, condition, glob_regex, kwargs_patterns, parse

# -- the parser ------------------------------------------------------------------------------------


def test_bare_words_quotes_and_qualifiers():
    assert parse("") == () and parse("   \t\n") == ()
    assert parse('1234 "connection reset"  name:demo.fl') == (
        Term(ANY, "1234"), Term(ANY, "connection reset"), Term("name", "demo.fl"))  # fmt: skip
    assert parse('args:"a b" RESULT:ok exception:Timeout traceback:"line 12"') == (
        Term("args", "a b"), Term("result", "ok"), Term("exception", "Timeout"), Term("traceback", "line 12"))  # fmt: skip
    assert parse("kwargs:customer=1234 state:failed,Retry worker:*@w1 uuid:3f2a") == (
        Term("kwargs", "1234", key="customer"), Term("state", "FAILED,RETRY"), Term("worker", "*@w1"), Term("uuid", "3f2a"))  # fmt: skip


def test_quoted_parts_inside_a_value():
    assert parse('kwargs:note="a b" name:"demo x"*') == (Term("kwargs", "a b", key="note"), Term("name", "demo x*"))
    assert parse(r'"say \"hi\"" "back\\slash"') == (Term(ANY, 'say "hi"'), Term(ANY, "back\\slash"))


def test_negation():
    assert parse("-Timeout -exception:Boom - x -") == (
        Term(ANY, "Timeout", True), Term("exception", "Boom", True), Term(ANY, "x"))  # fmt: skip
    assert parse("-") == () and parse('"-"') == (Term(ANY, "-"),)  # a dash alone is no term; quoted, a literal one
    assert parse('-"a b"') == (Term(ANY, "a b", True),)
    assert parse("--x") == (Term(ANY, "-x", True),)


def test_hostile_text_is_kept_as_text():
    text = r'''50%_off a\b "q\"uote\\" it's ')); DROP TABLE x; -- Ünïcödé Ω ‮evil'''
    terms = parse(text)
    assert [t.value for t in terms] == ["50%_off", "a\\b", 'q"uote\\', "it's", "'));", "DROP", "TABLE", "x;", "-",
                                        "Ünïcödé", "Ω", "\u202eevil"]  # fmt: skip
    assert terms[8] == Term(ANY, "-", negated=True)  # '--' is "not '-'"
    assert parse("http://x.y/z?a=b") == (Term(ANY, "http://x.y/z?a=b"),)  # not a qualifier
    assert parse('"name:x"') == (Term(ANY, "name:x"),)
    assert parse("foo:bar") == (Term(ANY, "foo:bar"),)


@pytest.mark.parametrize(
    "text, message",
    [
        ('"open', "unterminated quote"),
        ("args:", "args: needs a value"),
        ('""', "empty"),
        ("kwargs:customer", "key=value"),
        ("kwargs:=1", "key=value"),
        ("state:DONE", "DONE is not a task state"),
        ("state:,", "not a task state"),
        (" ".join(["x"] * 21), "more than 20"),
        ("x" * 100_001, "longer than"),
    ],
)
def test_errors_say_why(text, message):
    with pytest.raises(SearchError, match=message):
        parse(text)


@given(st.text(max_size=200))
@hsettings(max_examples=300, deadline=None)
def test_any_text_parses_or_fails_cleanly_and_never_reaches_the_sql(text):
    try:
        terms = parse(text)
    except SearchError:
        return
    sql, params = condition(terms)
    # user text only in parameters: the same terms with other values give the same SQL text
    def blank(t: Term) -> Term:
        value = "FAILED" if t.field == "state" else ("*" if any(c in t.value for c in "*?") else "v")
        if t.field == "name" and t.value.startswith("=") and len(t.value) > 1:
            value = "=v"
        return Term(t.field, value, t.negated, "k" if t.key else "")

    assert sql == condition(tuple(blank(t) for t in terms))[0]
    assert re.fullmatch(r"( AND (NOT )?\(.*?\))*", sql, re.S)
    assert set(re.findall(r"%\((\w+)\)s", sql)) == set(params)  # ...and every one is used
    assert parse(" ".join(str(t) for t in terms)) == terms  # str() writes a term back


def test_glob_regex_escapes_everything_but_star_and_question_mark():
    assert glob_regex("demo.*.add") == r"(?s)^demo\..*\.add$"
    assert glob_regex("a?[b]{c}(d)|e^$+\\") == r"(?s)^a.\[b\]\{c\}\(d\)\|e\^\$\+\\$"
    assert glob_regex("%_") == "(?s)^%_$"


def test_kwargs_patterns_as_celery_writes_kwargs():
    pats = kwargs_patterns("customer", "1234")
    assert "'customer': 1234," in pats and "'customer': 1234}" in pats and "'customer': '1234'" in pats
    assert '"customer": "1234"' in pats


def test_condition_is_parameterised():
    sql, params = condition(parse("-name:demo.* 'x' state:FAILED"))
    assert "demo" not in sql and "'x'" not in sql and "FAILED" not in sql
    assert params == {"s0": r"(?s)^demo\..*$", "s1": "'x'", "s2": ("FAILED",)}
    assert sql.startswith(" AND NOT (match(lowerUTF8(ifNull(name, ''))")
    assert condition(()) == ("", {})


# -- the SQL on chdb against a Python oracle ---------------------------------------------------------


def oracle(term: Term, r: dict) -> bool:
    """What a term means, in Python (lowercasing as ClickHouse's lowerUTF8 does for these texts)."""

    def has(column, text):
        return text.lower() in (r.get(column) or "").lower()

    if term.field == ANY:
        hit = any(has(c, term.value) for c in ("name", "args", "kwargs", "result", "exception_type", "exception", "traceback"))
    elif term.field in ("args", "result", "traceback"):
        hit = has(term.field, term.value)
    elif term.field == "exception":
        hit = has("exception_type", term.value) or has("exception", term.value)
    elif term.field == "name" and term.value.startswith("=") and len(term.value) > 1:
        hit = r["name"] == term.value[1:]
    elif term.field == "fingerprint":
        from streams.failures import fingerprint

        hit = fingerprint(r.get("exception")) == term.value
    elif term.field in ("name", "worker"):
        if any(c in term.value for c in "*?"):
            hit = bool(re.fullmatch(fnmatch.translate(term.value.lower()).replace("(?s:", "(?:").removesuffix(r"\Z"), (r.get(term.field) or "").lower(), re.S))
        else:
            hit = has(term.field, term.value)
    elif term.field == "kwargs":
        hit = any(p.lower() in (r.get("kwargs") or "").lower() for p in kwargs_patterns(term.key, term.value))
    elif term.field == "state":
        hit = r["state"] in term.value.split(",")
    elif term.field == "uuid":
        hit = r["uuid"].lower().startswith(term.value.lower())
    return hit != term.negated


SEARCHES = [
    "1234", "12345", "ünïcödé", "ωmega", "50%_off", "%", "_", "a\\b", '"\\"q\\""', "0X7F3A", "10.0.0.1",
    "name:demo.search", "name:DEMO.SEARCH.FIND", "name:demo.*.find", "name:demo.search.find?", "name:*.find*",
    "name:feas.*", "-name:feas.* state:FAILED", "args:1234", "args:'50%_off'", "kwargs:customer=1234",
    "kwargs:customer=12345", "-kwargs:customer=1234 name:demo.search*", "result:100%", "result:[done]",
    "exception:valueerror", "exception:0x7f3a", "traceback:\"line 12\"", "state:SUCCEEDED,FAILED",
    "-state:SUCCEEDED", "uuid:SEARCH-", "a -", "-", "worker:search-1", "worker:celery@search-?", "worker:*@SEARCH-2", "uuid:search-",
    "uuid:SEARCH", "name:=demo.search.find", "name:=DEMO.search.find", "-name:=demo.search.find name:demo.search",
    "fingerprint:\"ValueError('bad id <hex> at <ip>')\"", "-fingerprint:x state:FAILED", "-1234 -x", "x" * 300, "<script>window.__xss=1</script>", "'", "\\", "\u202eevil",
]  # fmt: skip


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, scenario_events):
    from streams.migrate import migrate
    from tests.sqlkit import Chdb, insert_sql
    from tests.ui_data import final_tasks, ui_dataset

    ch = Chdb(str(tmp_path_factory.mktemp("chdb-search")))
    migrate(ch.execute, "celery")
    tables, records = ui_dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        ch.execute(insert_sql("celery", table, columns, rows))
    yield ch, final_tasks(records)
    ch.close()


@pytest.mark.parametrize("text", SEARCHES)
def test_search_on_chdb_keeps_what_the_oracle_keeps(loaded, text):
    from streams.ui import queries

    ch, expected = loaded
    terms = parse(text)
    present = queries.table_columns(ch.query, "celery", "tasks")
    got = {(r["cluster"], r["uuid"]) for r in queries.tasks(ch.query, "celery", present, queries.TaskFilter(search=terms), 1000)}
    want = {k for k, r in expected.items() if all(oracle(t, r) for t in terms)}
    assert got == want


def test_searches_find_what_they_should(loaded):
    """The oracle agreeing is not enough: these find the hand-made search tasks."""
    from streams.ui import queries
    from tests.ui_data import SEARCH_UUIDS

    ch, _ = loaded
    present = queries.table_columns(ch.query, "celery", "tasks")

    def find(text, **kw):
        return sorted(r["uuid"] for r in queries.tasks(ch.query, "celery", present, queries.TaskFilter(search=parse(text), **kw), 1000))

    first, second = SEARCH_UUIDS
    assert find("kwargs:customer=1234") == [first] and find("kwargs:customer=12345") == [second]
    assert find("ünïcödé") == [first] and find("ÜNÏCÖDÉ") == [first] and find("50%_off") == [first]
    assert find("a\\\\b") == [first] and find("a\\b") == []  # kwargs hold repr() text: a backslash is written twice
    assert find("name:demo.*.find") == [first] and find("name:demo.search.find*") == [first, second]
    assert find("name:demo.search") == [first, second]
    assert find("result:100%") == [second] and find("exception:ValueError traceback:\"line 12\"") == [first]
    assert find("1234", name="search.f") == [first, second] and find("-exception:valueerror", name="demo.search") == [second]
    assert find("worker:celery@search-?") == [first, second]
    assert find("name:demo.search.find?") == [] and find("name:demo.search.finde?") == [second]
