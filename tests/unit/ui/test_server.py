"""`streams ui` refuses unsafe or impossible settings with a message naming the setting."""

import socket
import subprocess
import sys

import pytest

from streams.config import ConfigError, Settings
from streams.ui.server import UIConfigError, bind, check_bind, is_loopback, parse_port


def settings(**overrides):
    return Settings.load(environ={}).replace(**overrides)


def test_port_setting():
    assert parse_port(settings()) == 9466
    assert parse_port(settings(ui_port="off")) is None
    assert parse_port(settings(ui_port="OFF")) is None
    for bad in ("abc", "0", "70000"):  # refused by the settings model, naming the variable and flag
        with pytest.raises(ConfigError, match="--ui-port"):
            settings(ui_port=bad)


def test_beyond_loopback_only_with_authentication():
    check_bind(settings())
    check_bind(settings(ui_host="::1"))
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    for host in ("0.0.0.0", "10.1.2.3", "::", "monitor.example"):
        with pytest.raises(UIConfigError, match="UI_BASIC_AUTH=user:password or UI_TOKEN"):
            check_bind(settings(ui_host=host))
    check_bind(settings(ui_host="0.0.0.0", ui_token="t"))
    check_bind(settings(ui_host="0.0.0.0", ui_basic_auth="u:p"))
    with pytest.raises(ConfigError, match="--ui-basic-auth=\\*\\*\\*: must be user:password"):
        settings(ui_basic_auth="justuser")


def test_a_taken_port_names_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UIConfigError, match=f"UI_PORT={port} on 127.0.0.1: the port is already in use.*set UI_PORT"):
            bind("127.0.0.1", port)
        result = subprocess.run(
            [sys.executable, "-m", "streams", "ui", "--ui-port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert f"UI_PORT={port} on 127.0.0.1: the port is already in use" in result.stderr and "Traceback" not in result.stderr


def test_off_starts_nothing():
    result = subprocess.run([sys.executable, "-m", "streams", "ui", "--ui-port", "off"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "UI_PORT=off" in result.stderr
