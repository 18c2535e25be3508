"""Binding the pipeline's HTTP endpoints (metrics, health, UI): one helper, loud errors.

A taken port used to be a warning and a process running on without its endpoint (a second
bridge on one host served no metrics and nobody noticed). Now it is an error that names the
setting to change; a setting set to ``off`` (or empty) means "no endpoint" and binds nothing.

    sock = listen(settings.bridge_metrics_addr, "bridge_metrics_addr")   # socket or None
    server = serve_http(settings.streams_metrics_addr, "streams_metrics_addr", routes)

``SettingError`` carries a one-line message for the command line (``python -m bridge`` and
``python -m streams`` print it and exit with status 2, no traceback).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

log = logging.getLogger("streams.listen")
OFF = ("", "off")
DEFAULT_HOST = "127.0.0.1"  # loopback unless the setting names another address

# path prefix -> () -> (HTTP status, body, content type)
Route = Callable[[], tuple[int, bytes, str]]


class SettingError(RuntimeError):
    """A setting cannot be used as given; the message names it and says what to change."""


def setting_names(name: str) -> tuple[str, str]:
    """(environment variable, CLI flag) of a Settings field, e.g. ('BRIDGE_METRICS_ADDR', '--bridge-metrics-addr')."""
    from .config import field_env, field_flag

    return field_env(name), field_flag(name)


def _error(setting: str, value, why: str, host: str | None = None) -> SettingError:
    env, flag = setting_names(setting)
    where = f"{env}={str(value).strip()}" + (f" on {host}" if host is not None else "")
    wanted = "port" if host is not None else "host:port"
    return SettingError(f"{where}: {why}; set {env} (or {flag}) to a free {wanted}, or {env}=off for no endpoint")


def parse_address(value, setting: str, host: str | None = None) -> tuple[str, int] | None:
    """``host:port``, ``:port`` or ``port`` -> (host, port); ``off``/empty -> None. With ``host``
    the setting is a port alone (UI_PORT, beside UI_HOST).

    Raises SettingError for anything else (the message names ``setting``)."""
    text = str(value).strip()
    if text.lower() in OFF:
        return None
    if host is None:
        bound, _, port = text.rpartition(":")
        bound = bound.strip("[]") or DEFAULT_HOST
    else:
        bound, port = host.strip("[]"), text
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise _error(setting, value, "not a port" if host is not None else "not a host:port", host)
    return bound, number


def listen(value, setting: str, backlog: int = 64, host: str | None = None) -> socket.socket | None:
    """A listening TCP socket on the setting's address, or None when the setting is off.

    ``host``: for a setting that is a port alone (the address comes from another setting).
    Raises SettingError when the address is taken or cannot be bound, naming the setting."""
    address = parse_address(value, setting, host)
    if address is None:
        return None
    bound, port = address
    try:
        family = socket.getaddrinfo(bound, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise _error(setting, value, f"cannot resolve {bound!r} ({exc})", host) from exc
    try:
        # SO_REUSEADDR as http.server does: a restart may rebind while old connections sit in
        # TIME_WAIT; Linux still refuses a port another process listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bound, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "the port is already in use (another process, e.g. a second instance on this host)"
        else:
            why = f"cannot listen there ({exc.strerror or exc})"
        raise _error(setting, value, why, host) from exc
    return sock


def serve_http(value, setting: str, routes: dict[str, Route], name: str = "http") -> ThreadingHTTPServer | None:
    """Serve GET ``routes`` (path prefix -> handler) on the setting's address from a daemon thread.

    None when the setting is off; SettingError (naming it) when the address cannot be bound."""
    sock = listen(value, setting)
    if sock is None:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            for prefix, route in routes.items():
                if self.path.startswith(prefix):
                    status, body, ctype = route()
                    break
            else:
                status, body, ctype = 404, b"not found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not news
            pass

    server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
