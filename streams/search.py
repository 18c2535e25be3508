"""Task search: one parser for the search box, the API's ``search`` and ``report --search``, and
the ClickHouse condition it becomes. Pure: text in, terms out; terms in, (SQL fragment, params) out.

Syntax (like Flower's qualifiers, combined with AND — Flower ORs them, see docs/api.md)::

    1234                      any of name, args, kwargs, result, exception (type and message), traceback contain 1234
    "connection reset"        a quoted phrase (\\" and \\\\ inside quotes are a quote and a backslash)
    name:demo.fl  name:demo.*.add   the task name contains the text, or matches the glob (* and ?)
    name:=demo.add            the task name is exactly this (case-sensitive)
    args:1234  result:ok  exception:Timeout  traceback:"line 12"    that field contains the text
    kwargs:customer=1234      the kwargs hold key 'customer' with value 1234 (as Celery's repr writes it)
    state:FAILED,RETRY        the task's state is one of these
    worker:celery@w1  worker:*@w1   the worker contains the text / matches the glob
    uuid:3f2a                 the task id starts with this
    fingerprint:"KeyError('user <n>')"   the exception message's fingerprint (streams/failures.py) is this
    -term  -exception:Timeout  negation: tasks that do NOT match the term

Every comparison is case-insensitive (the server's ``lowerUTF8`` / ``positionCaseInsensitiveUTF8``,
so both sides fold the same way). User text only ever travels as a query parameter: the SQL
fragment is built from fixed templates and generated parameter names (``s0``, ``s1``...).
The same SQL runs on ClickHouse 18.16 and on modern ClickHouse (tests/unit/test_search.py with chdb,
tests/integration/test_ui_queries_both_servers.py on the server).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.engine.states import TASK_STATES

QUALIFIERS = ("name", "args", "kwargs", "result", "exception", "traceback", "state", "worker", "uuid", "fingerprint")
ANY = "any"
MAX_TERMS = 20
MAX_CHARS = 100_000  # one search text; longer is refused (as the UI refuses any longer parameter)
GLOB = frozenset("*?")
REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")


class SearchError(ValueError):
    """The search text cannot be read; the message says why (shown to the user, 400 in the API)."""


@dataclass(frozen=True)
class Term:
    field: str  # ANY or one of QUALIFIERS
    value: str
    negated: bool = False
    key: str = ""  # kwargs:key=value

    def __str__(self) -> str:
        value = f"{self.key}={self.value}" if self.field == "kwargs" else self.value
        quoted = value if value and not any(c.isspace() or c == '"' for c in value) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return ("-" if self.negated else "") + ("" if self.field == ANY else f"{self.field}:") + quoted


def _read_value(text: str, i: int) -> tuple[str, int]:
    """The value starting at ``text[i]``, up to unquoted whitespace: bare characters and quoted
    parts (``"a b"``; inside quotes ``\\"`` is a quote and ``\\\\`` a backslash), quotes removed —
    so ``"a b"``, ``args:"a b"`` and ``kwargs:note="a b"`` are each one value."""
    out = []
    while i < len(text) and not text[i].isspace():
        if text[i] != '"':
            out.append(text[i])
            i += 1
            continue
        opened = i
        i += 1
        while True:
            if i >= len(text):
                raise SearchError(f"unterminated quote in the search text (opened at character {opened + 1})")
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
            elif ch == '"':
                i += 1
                break
            else:
                out.append(ch)
                i += 1
    return "".join(out), i


def parse(text: str) -> tuple[Term, ...]:
    """The terms of a search text; '' -> (). Raises SearchError with the reason."""
    if len(text) > MAX_CHARS:
        raise SearchError(f"the search text is longer than {MAX_CHARS:,} characters")
    terms: list[Term] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        negated = False
        if text[i] == "-" and (i + 1 == len(text) or text[i + 1].isspace()):
            i += 1  # a dash alone negates nothing and matches nearly everything: not a term
            continue
        if text[i] == "-":
            negated = True
            i += 1
        field = ANY
        head, _, _ = text[i:].partition(":")
        if head.lower() in QUALIFIERS and not any(c.isspace() or c == '"' for c in head):
            field = head.lower()
            i += len(head) + 1
        value, i = _read_value(text, i)
        terms.append(_term(field, value, negated))
        if len(terms) > MAX_TERMS:
            raise SearchError(f"more than {MAX_TERMS} search terms")
    return tuple(t for t in terms if t is not None)


def _term(field: str, value: str, negated: bool) -> Term:
    if field == ANY:
        if not value:
            raise SearchError('an empty quoted term ("")')
        return Term(ANY, value, negated)
    if not value and field != "fingerprint":  # a message with nothing to mask has the empty fingerprint
        raise SearchError(f"{field}: needs a value")
    if field == "kwargs":
        key, eq, val = value.partition("=")
        if not eq or not key.strip():
            raise SearchError("kwargs: needs key=value (e.g. kwargs:customer=1234)")
        return Term("kwargs", val.strip(), negated, key.strip())
    if field == "state":
        states = tuple(dict.fromkeys(s.strip().upper() for s in value.split(",") if s.strip()))
        unknown = [s for s in states if s not in TASK_STATES]
        if unknown or not states:
            named = ", ".join(unknown) if unknown else repr(value)
            raise SearchError(f"state: {named} is not a task state ({', '.join(TASK_STATES)})")
        return Term("state", ",".join(states), negated)
    return Term(field, value, negated)


def glob_regex(pattern: str) -> str:
    """A glob (``*`` any text, ``?`` one character, everything else literal) as an anchored re2
    regular expression for ``match()``; the caller lowercases both sides."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "(?s)^" + "".join(out) + "$"


def is_glob(value: str) -> bool:
    return any(c in GLOB for c in value)


# Columns searched by a bare term, and by exception:. Nullable columns are read through ifNull.
ANY_COLUMNS = ("name", "args", "kwargs", "result", "exception_type", "exception", "traceback")
FIELD_COLUMNS = {"args": ("args",), "result": ("result",), "traceback": ("traceback",), "exception": ("exception_type", "exception")}


def _contains(column: str, param: str) -> str:
    return f"positionCaseInsensitiveUTF8(ifNull({column}, ''), %({param})s) > 0"


def kwargs_patterns(key: str, value: str) -> tuple[str, ...]:
    """How ``key=value`` reads in Celery's repr of kwargs (``{'customer': 1234, 'tag': 'x'}``) or in
    JSON: the value quoted, or bare and followed by ``,`` or ``}``."""
    out = []
    for q in ("'", '"'):
        k = f"{q}{key}{q}: "
        out += [f"{k}{q}{value}{q}", f"{k}{value},", f"{k}{value}}}"]
    return tuple(dict.fromkeys(out))


def condition(terms: tuple[Term, ...], prefix: str = "s") -> tuple[str, dict]:
    """``AND``-ed SQL conditions for ``terms`` over the tasks table, and their parameters.

    The returned text starts with `` AND`` (or is '' for no terms), ready to follow a WHERE."""
    parts, params = [], {}
    n = 0

    def param(value) -> str:
        nonlocal n
        name = f"{prefix}{n}"
        n += 1
        params[name] = value
        return name

    for term in terms:
        if term.field == ANY:
            p = param(term.value)
            sql = " OR ".join(_contains(c, p) for c in ANY_COLUMNS)
        elif term.field in FIELD_COLUMNS:
            p = param(term.value)
            sql = " OR ".join(_contains(c, p) for c in FIELD_COLUMNS[term.field])
        elif term.field == "name" and term.value.startswith("=") and len(term.value) > 1:
            sql = f"name = %({param(term.value[1:])})s"
        elif term.field == "fingerprint":
            from streams.failures import FRAGMENT_COLUMN, fingerprint_sql

            sql = f"{fingerprint_sql(FRAGMENT_COLUMN)} = %({param(term.value)})s"
        elif term.field in ("name", "worker"):
            if is_glob(term.value):
                sql = f"match(lowerUTF8(ifNull({term.field}, '')), lowerUTF8(%({param(glob_regex(term.value))})s))"
            else:
                sql = _contains(term.field, param(term.value))
        elif term.field == "kwargs":
            sql = " OR ".join(_contains("kwargs", param(p)) for p in kwargs_patterns(term.key, term.value))
        elif term.field == "state":
            sql = f"state IN %({param(tuple(term.value.split(',')))})s"
        elif term.field == "uuid":
            sql = f"startsWith(lowerUTF8(uuid), %({param(term.value.lower())})s)"  # any case, as every comparison here
        else:  # pragma: no cover - parse() only makes the fields above
            raise SearchError(f"unknown field {term.field!r}")
        parts.append(f" AND {'NOT ' if term.negated else ''}({sql})")
    return "".join(parts), params
