"""Ordered, idempotent ClickHouse migrations from sql/migrations/NNNN_name.sql.

Each file has a header comment, then ``-- up`` and ``-- down`` sections; statements are
separated by ``;`` at the end of a line and may use ``{db}`` for the database name.  Applied
ids are recorded in ``{db}.schema_migrations``.  The runner takes an ``execute(sql)``
callable, so the same files run on a ClickHouse server and on chdb in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    id: str
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]


def _statements(text: str, db: str) -> tuple[str, ...]:
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    parts = re.split(r";\s*(?:\n|$)", body.replace("{db}", db))
    return tuple(p.strip() for p in parts if p.strip())


def load_migrations(db: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"{path.name}: migration files are named NNNN_verb_object.sql")
        text = path.read_text()
        if "-- up" not in text or "-- down" not in text:
            raise ValueError(f"{path.name}: needs '-- up' and '-- down' sections")
        _, rest = text.split("-- up", 1)
        up, down = rest.split("-- down", 1)
        migrations.append(Migration(m.group(1), m.group(2), _statements(up, db), _statements(down, db)))
    return migrations


def migrate(execute: Callable[[str], list], db: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is not applied yet; returns the ids applied now."""
    execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (id String, name String, applied_at DateTime) "
        f"ENGINE = MergeTree() ORDER BY id"
    )
    done = {row[0] for row in execute(f"SELECT id FROM {db}.schema_migrations")}
    applied = []
    for migration in load_migrations(db, directory):
        if migration.id in done:
            continue
        for statement in migration.up:
            execute(statement)
        execute(
            f"INSERT INTO {db}.schema_migrations (id, name, applied_at) "
            f"SELECT '{migration.id}', '{migration.name}', now()"
        )
        applied.append(migration.id)
    return applied
