import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "celery-events-redis"

# make test's parallel part (pytest-xdist, --dist loadfile) hands whole files to its 2 workers in
# collection order: the longest files go first, so that neither worker is left with one of them at
# the end while the other idles (the longest files of make test on this 2-core machine, 2026-12-07:
# the image test's first build of its base images ≈ 2 min, the liveness tests ≈ 2.5 min together).
LONGEST_FIRST = (
    "test_image.py", "test_worker_liveness.py", "test_celery_metrics.py", "test_streams_correctness.py",
    "test_wheel.py", "test_sink_clickhouse_down.py", "test_long_retries.py", "test_clock_skew.py",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests stay together, in order


def load_jsonl(name: str) -> list:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def scenario_events() -> list[dict]:
    """Events as Celery's Receiver handlers see them."""
    return load_jsonl("scenarios.jsonl")


@pytest.fixture(scope="session")
def scenario_raw() -> list[dict]:
    """The same scenarios as raw broker messages {routing_key, body}."""
    return load_jsonl("scenarios_raw.jsonl")


@pytest.fixture(scope="session")
def scenario_ids() -> dict[str, list[str]]:
    return json.loads((FIXTURES / "scenario_ids.json").read_text())
