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

from .resources import migrations_dir

MIGRATIONS_DIR = migrations_dir()
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


def statements_for(migration: Migration, layout: "ClusterLayout | None" = None, down: bool = False) -> list[str]:
    """A migration's statements, rewritten for a cluster when a layout is given."""
    statements = migration.down if down else migration.up
    return list(statements) if layout is None else [out for st in statements for out in layout.rewrite(st)]


def migrate(
    execute: Callable[[str], list], db: str, directory: Path = MIGRATIONS_DIR, layout: "ClusterLayout | None" = None
) -> list[str]:
    """Apply what is not applied yet; returns the ids applied now.

    With a layout the tables are created for a multi-node cluster (see ClusterLayout); the
    migrations table stays on the node migrate talks to, so always migrate through the same node.
    """
    on_cluster = layout.clause if layout else ""
    execute(f"CREATE DATABASE IF NOT EXISTS {db}{on_cluster}")
    execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (id String, name String, applied_at DateTime) "
        f"ENGINE = MergeTree() ORDER BY id"
    )
    done = {row[0] for row in execute(f"SELECT id FROM {db}.schema_migrations")}
    applied = []
    for migration in load_migrations(db, directory):
        if migration.id in done:
            continue
        for statement in statements_for(migration, layout):
            execute(statement)
        execute(
            f"INSERT INTO {db}.schema_migrations (id, name, applied_at) "
            f"SELECT '{migration.id}', '{migration.name}', now()"
        )
        applied.append(migration.id)
    return applied


# -- Multi-node ClickHouse ------------------------------------------------------------------
# The same migrations, rewritten for a cluster: each table becomes <table>_local
# (Replicated*MergeTree, one per shard and replica) plus a Distributed table under the original
# name, so the sink and every query in sql/queries/ keep using the names they know.  Rows are
# sharded by the key that identifies a task (or a worker), so a task's duplicates and versions
# land on one shard, where ReplacingMergeTree folds them and FINAL sees them together.
SHARDING_KEYS = {
    "events": "cityHash64(cluster, uuid, hostname)",
    "tasks": "cityHash64(cluster, uuid)",
    "workers": "cityHash64(cluster, hostname)",
    "events_per_minute": "cityHash64(cluster, minute)",  # written by its view on each shard, never directly
    "queue_lengths": "cityHash64(cluster, queue)",
    "audit": "cityHash64(request_id)",
}
_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)\s*(\(.*\))\s*ENGINE\s*=\s*(\w*MergeTree)\((.*?)\)(.*)$", re.S)
_CREATE_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+)\s+AS (.*)$", re.S)
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (\w+)\.(\w+)$")
_ALTER_TABLE = re.compile(r"^ALTER TABLE (\w+)\.(\w+) (.*)$", re.S)


@dataclass(frozen=True)
class ClusterLayout:
    """How migrations are rewritten for a multi-node ClickHouse.

    name:        the cluster in the servers' <remote_servers> configuration
    replicated:  Replicated*MergeTree engines (needs ZooKeeper/Keeper); False = sharding only
    on_cluster:  run each DDL ON CLUSTER (distributed DDL, needs ZooKeeper/Keeper); False = run
                 the same statements on every node yourself
    """

    name: str
    replicated: bool = True
    on_cluster: bool = True

    @property
    def clause(self) -> str:
        return f" ON CLUSTER {self.name}" if self.on_cluster else ""

    def rewrite(self, statement: str) -> list[str]:
        if m := _CREATE_TABLE.match(statement):
            db, table, columns, engine, args, rest = m.groups()
            if table not in SHARDING_KEYS:
                raise ValueError(f"{table}: no sharding key for cluster mode; add it to SHARDING_KEYS")
            local = f"{table}_local"
            if self.replicated:
                path = f"'/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}'"
                engine, args = f"Replicated{engine}", f"{path}, {args}" if args.strip() else path
            return [
                f"CREATE TABLE IF NOT EXISTS {db}.{local}{self.clause}\n{columns}\nENGINE = {engine}({args}){rest}",
                f"CREATE TABLE IF NOT EXISTS {db}.{table}{self.clause} AS {db}.{local}\n"
                f"ENGINE = Distributed({self.name}, {db}, {local}, {SHARDING_KEYS[table]})",
            ]
        if m := _CREATE_VIEW.match(statement):
            # A view fires on the shard that stores the inserted rows: it reads and writes the
            # local tables.
            db, view, target_db, target, select = m.groups()
            select = re.sub(rf"\bFROM {db}\.(\w+)", lambda s: f"FROM {db}.{s.group(1)}_local", select)
            return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view}{self.clause} TO {target_db}.{target}_local\nAS {select}"]
        if m := _DROP_TABLE.match(statement):
            db, table = m.groups()
            drops = [f"DROP TABLE IF EXISTS {db}.{table}{self.clause}"]
            return drops + ([f"DROP TABLE IF EXISTS {db}.{table}_local{self.clause}"] if table in SHARDING_KEYS else [])
        if m := _ALTER_TABLE.match(statement):
            # Columns change on the shards and on the Distributed table that reads them.
            db, table, change = m.groups()
            local = [f"ALTER TABLE {db}.{table}_local{self.clause} {change}"] if table in SHARDING_KEYS else []
            return local + [f"ALTER TABLE {db}.{table}{self.clause} {change}"]
        if statement.startswith("CREATE DATABASE IF NOT EXISTS "):
            return [statement + self.clause]
        raise ValueError(f"cluster mode cannot rewrite this statement yet; extend ClusterLayout.rewrite:\n{statement}")
