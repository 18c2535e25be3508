"""Failure groups: failed tasks grouped by cluster, task name, exception type and a fingerprint of
the exception's message — the message with what varies between occurrences masked (numbers, hex
ids, uuids, memory and network addresses, e-mail addresses), so ``KeyError('user 1234')`` and
``KeyError('user 5678')`` are one group.

The masking rules are data (``RULES``, applied in order); ``fingerprint`` applies them in Python
and ``fingerprint_sql`` writes the same rules as nested ``replaceRegexpAll`` for ClickHouse (RE2),
so a group can be computed where the failures are, over every failure. Each pattern is written in
the syntax both engines read the same way (Python's ``re`` with ``re.ASCII`` and RE2): ASCII
classes only, no look-arounds. The fragment sql/fragments/failure_fingerprint.sql, which
`celery-monitor report` uses, is this expression (a unit test keeps the two equal); tests check
Python and both ClickHouse versions give the same fingerprint for the same messages.
"""

from __future__ import annotations

import re

FAILED_STATES = ("FAILED", "CRITICAL")
FINGERPRINT_CHARS = 300  # a fingerprint is cut here after masking (a 50 kB message is one group, not a 50 kB key)

# (what, RE pattern, replacement) — order matters: uuids before hex runs, hex before numbers.
RULES: tuple[tuple[str, str, str], ...] = (
    ("uuid", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    ("e-mail address", r"[A-Za-z0-9_.+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", "<email>"),
    ("0x hex (memory addresses, ids)", r"0[xX][0-9a-fA-F]+", "<hex>"),
    ("IPv4 address, with its port", r"\b[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]{1,5})?\b", "<ip>"),
    ("IPv6 address (4 groups or more, :: allowed)", r"\b[0-9a-fA-F]{1,4}(::?[0-9a-fA-F]{1,4}){3,7}\b", "<ip>"),
    # a word of hex digits with both digits and a-f letters, any length (hashes, short commit ids:
    # a1b2c3d, 9f8e7d6); digits alone are numbers (user 10000000 as user 9999999), letters alone words
    ("hex word (hashes, short ids)", r"\b(?:[0-9]+[a-fA-F]|[a-fA-F]+[0-9])[0-9a-fA-F]*\b", "<hex>"),
    ("number", r"[0-9]+", "<n>"),
)
_COMPILED = tuple((re.compile(pattern, re.ASCII), replacement) for _, pattern, replacement in RULES)


def fingerprint(message: str | None) -> str:
    """The message with its varying parts masked, cut at FINGERPRINT_CHARS characters."""
    text = message or ""
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text[:FINGERPRINT_CHARS]


def _literal(text: str) -> str:
    """A constant as a ClickHouse string literal (the rules are code, never user input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fingerprint_sql(column: str) -> str:
    """``fingerprint`` as a ClickHouse expression over ``column`` (a String expression)."""
    expr = column
    for _, pattern, replacement in RULES:
        expr = f"replaceRegexpAll({expr}, {_literal(pattern)}, {_literal(replacement)})"
    return f"substringUTF8({expr}, 1, {FINGERPRINT_CHARS})"


FRAGMENT_COLUMN = "ifNull(exception, '')"
