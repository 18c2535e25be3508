import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "celery-events-redis"


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
