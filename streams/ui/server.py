"""`python -m streams ui`: checks the settings, binds the port itself, then serves with uvicorn.

Binding before uvicorn starts lets a taken port fail with an error that names the setting to
change (UI_PORT), as every server of the pipeline does, instead of uvicorn's bare errno.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from streams.config import Settings
from streams.listen import SettingError, listen

log = logging.getLogger("streams.ui")

OFF = "off"


class UIConfigError(SettingError):
    """A setting makes the UI unable or unsafe to start; the message names the setting."""


def parse_port(settings: Settings) -> int | None:
    """UI_PORT -> a port number, or None for 'off'."""
    raw = str(settings.ui_port).strip().lower()
    if raw == OFF:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise UIConfigError(f"UI_PORT must be a port number or 'off', got {settings.ui_port!r}") from None
    if not 0 < port < 65536:
        raise UIConfigError(f"UI_PORT must be between 1 and 65535, got {port}")
    return port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """Refuse to serve beyond loopback without authentication, and a half-set basic auth."""
    from .auth import AuthConfigError, Authenticator

    basic, token = settings.secret("ui_basic_auth"), settings.secret("ui_token")
    if basic and ":" not in basic:
        raise UIConfigError("UI_BASIC_AUTH must be user:password")
    try:
        auth = Authenticator.from_settings(settings)
    except AuthConfigError as exc:
        raise UIConfigError(str(exc)) from None
    if not is_loopback(settings.ui_host) and not auth.required:
        raise UIConfigError(
            f"UI_HOST={settings.ui_host} is not a loopback address: set UI_USERS_FILE, UI_BASIC_AUTH=user:password or UI_TOKEN "
            "(or keep UI_HOST=127.0.0.1 and put an authenticating proxy in front)"
        )


def bind(host: str, port: int) -> socket.socket:
    """The UI's listening socket, bound by the pipeline's one binding helper (streams/listen.py)."""
    try:
        return listen(port, "ui_port", backlog=128, host=host)
    except SettingError as exc:
        raise UIConfigError(str(exc)) from None


def url(settings: Settings, port: int | None = None) -> str:
    host = settings.ui_host if ":" not in settings.ui_host else f"[{settings.ui_host}]"
    return f"http://{host}:{port or parse_port(settings)}/"


def serve(settings: Settings) -> None:
    """Run the UI until SIGINT/SIGTERM. Raises UIConfigError before binding anything wrong."""
    import uvicorn

    from .app import create_app, missing_assets

    port = parse_port(settings)
    if port is None:
        log.info("UI_PORT=off: the web UI is not started")
        return
    check_bind(settings)
    missing = missing_assets()
    if missing:
        raise UIConfigError(f"the UI's browser libraries are not installed ({', '.join(missing)}): run `make setup` (npm ci in streams/ui)")
    sock = bind(settings.ui_host, port)
    app = create_app(settings)
    log.info("web UI on %s (ClickHouse %s:%s, database %s)", url(settings, port), settings.clickhouse_host,
             settings.clickhouse_port, settings.clickhouse_database)  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
