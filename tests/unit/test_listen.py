"""Endpoints bind loudly: a taken port is an error naming the setting; 'off' binds nothing."""

import socket

import pytest

from bridge.metrics import BridgeMetrics
from streams.listen import SettingError, listen, parse_address
from streams.metrics import StreamsMetrics


@pytest.fixture
def taken():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize("value", ["off", "OFF", "", " off "])
def test_off_binds_nothing(value):
    assert parse_address(value, "bridge_metrics_addr") is None
    assert listen(value, "bridge_metrics_addr") is None


def test_addresses():
    assert parse_address("127.0.0.1:9464", "x") == ("127.0.0.1", 9464)
    assert parse_address(":9464", "x") == ("127.0.0.1", 9464)
    assert parse_address("9464", "x") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:9464", "x") == ("::1", 9464)


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_a_malformed_address_names_the_setting(value):
    with pytest.raises(SettingError, match=r"STREAMS_METRICS_ADDR=.*--streams-metrics-addr.*STREAMS_METRICS_ADDR=off"):
        parse_address(value, "streams_metrics_addr")


def test_a_taken_port_names_the_setting(taken):
    with pytest.raises(SettingError) as err:
        listen(taken, "bridge_metrics_addr")
    message = str(err.value)
    assert message.startswith(f"BRIDGE_METRICS_ADDR={taken}: the port is already in use")
    assert "--bridge-metrics-addr" in message and "BRIDGE_METRICS_ADDR=off" in message


def test_both_metrics_endpoints_refuse_a_taken_port(taken):
    with pytest.raises(SettingError, match="BRIDGE_METRICS_ADDR"):
        BridgeMetrics().serve(taken)
    with pytest.raises(SettingError, match="STREAMS_METRICS_ADDR"):
        StreamsMetrics().serve(taken)
    assert BridgeMetrics().serve("off") is None


def test_a_free_port_is_served():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = BridgeMetrics().serve(f"127.0.0.1:{port}")
    try:
        assert server.socket.getsockname()[1] == port
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_alone_beside_its_host_setting(taken):
    host, port = taken.rsplit(":", 1)
    assert parse_address(port, "ui_port", host=host) == (host, int(port))
    with pytest.raises(SettingError, match=f"^UI_PORT={port} on {host}: the port is already in use.*a free port, or UI_PORT=off"):
        listen(port, "ui_port", host=host)
