"""docker-compose.yml parses and wires Kafka (KRaft), ClickHouse, RabbitMQ, Redis, bridge, streams."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_services_and_wiring():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "clickhouse", "rabbitmq", "redis", "bridge", "streams"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")
    for name in ("kafka", "clickhouse", "rabbitmq", "redis"):
        assert "healthcheck" in services[name], name
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    for name in ("bridge", "streams"):
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP"] == "kafka:9092" and env["KAFKA_FLAVOR"] == "kafka"
        assert env["CLICKHOUSE_HOST"] == "clickhouse"
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["bridge"]["environment"]["CELERY_BROKER_URL"].startswith("amqp://guest:guest@rabbitmq:5672")
    assert services["bridge"]["command"] == ["python", "-m", "bridge"]
    assert services["streams"]["command"] == ["python", "-m", "streams", "worker"]


def test_compose_env_names_are_real_settings():
    from dataclasses import fields

    from streams.config import Settings

    known = {f.metadata["env"] for f in fields(Settings)}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("bridge", "streams", "init"):
        assert set(compose["services"][name]["environment"]) <= known, name
