"""Files the package ships beside its code: the ClickHouse schema and questions, the JSON Schemas.

In the repository they live at the top (``sql/``, ``schemas/``); pyproject.toml maps them into the
package as ``streams.sql`` and ``streams.schemas``, so an installed wheel, an editable install and
the image all find them the same way: ``importlib.resources``, never a path relative to the source.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _directory(package: str, *parts: str) -> Path:
    root = files(package)
    path = Path(str(root.joinpath(*parts))) if parts else Path(str(root))
    if not path.is_dir():
        raise FileNotFoundError(f"{package}/{'/'.join(parts)} is missing from this installation of celery-stream-monitor")
    return path


def migrations_dir() -> Path:
    """sql/migrations: NNNN_verb_object.sql, applied in order by `celery-monitor migrate`."""
    return _directory("streams.sql", "migrations")


def queries_dir() -> Path:
    """sql/queries: one analytics question per file (`celery-monitor report`, the UI's charts)."""
    return _directory("streams.sql", "queries")


def fragments_dir() -> Path:
    """sql/fragments: conditions several questions share."""
    return _directory("streams.sql", "fragments")


def schemas_dir() -> Path:
    """schemas: the JSON Schema of every record the pipeline writes."""
    return _directory("streams.schemas")
