"""docker-compose.yml: valid for Debian's docker-compose, wired to the image's own commands, every
variable a real setting, every published port on loopback. (The image itself is run for real in
tests/integration/test_image.py.)"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.cli import COMPONENTS, cli
from streams.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ("init", "bridge", "worker", "sink", "ui")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_wiring(compose):
    services = compose["services"]
    assert {"kafka", "clickhouse", "rabbitmq", "redis", *PIPELINE} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["clickhouse"]["image"] == "clickhouse/clickhouse-server:24.8"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    for name in PIPELINE:
        service = services[name]
        assert service["image"] == "celery-stream-monitor:local" and service["build"] == "."
        command = service["command"]
        assert command[0] in cli.commands, (name, command)  # a celery-monitor command (the image's entrypoint)
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP"] == "kafka:9092" and env["KAFKA_FLAVOR"] == "kafka" and env["CLICKHOUSE_HOST"] == "clickhouse"
        if name != "init":
            assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
            assert service["init"] is True
            assert service["healthcheck"]["test"] == ["CMD", "celery-monitor", "health", command[0]]
            assert command[0] in COMPONENTS
    assert services["init"]["command"] == ["init"]
    assert services["worker"]["environment"]["STREAMS_SINK"] == "off"  # the sink runs as its own service
    assert services["worker"]["environment"]["STREAMS_STORE"] == "rocksdb://"
    assert services["worker"]["volumes"] == ["streams-data:/var/lib/celery-monitor"]  # the image's STREAMS_DATA_DIR


def test_env_names_are_real_settings(compose):
    known = {info.json_schema_extra["env"] for info in Settings.model_fields.values()}
    for name in PIPELINE:
        assert set(compose["services"][name]["environment"]) <= known, name


def test_the_compose_file_validates():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is installed by `make docker` (Debian's package)"
    result = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True,
                            env={"UI_BASIC_AUTH": "admin:secret", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    refused = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert refused.returncode != 0 and "UI_BASIC_AUTH" in refused.stderr  # the UI is never served without a password


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text and "ARG NODE_IMAGE=" in text
    assert '"/src[rocksdb]"' in text  # STREAMS_STORE=rocksdb:// works in the image
    assert "USER 10001:10001" in text and 'ENTRYPOINT ["celery-monitor"]' in text
    assert 'HEALTHCHECK' in text and '"celery-monitor", "health"' in text
    assert "ca-certificates.crt" not in text and "resolv.conf" not in text  # the host's never go into the image users get
