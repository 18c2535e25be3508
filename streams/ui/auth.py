"""Who is asking, and with which role: the web UI's and API's authentication.

Sources, any mix:

* ``UI_USERS_FILE`` -- a TOML file of users and tokens, each with a role::

      [users.alice]
      password = "pbkdf2_sha256$600000$<salt hex>$<hash hex>"   # celery-monitor hash-password
      role = "operator"

      [tokens.deploy-bot]
      sha256 = "<hex sha256 of the token>"                      # printf %s "$TOKEN" | sha256sum
      role = "viewer"

* ``UI_BASIC_AUTH`` (user:password) and ``UI_TOKEN``: one viewer each.

Roles: ``viewer`` (the default: every page and the read-only API) and ``operator`` (also task
control, when it is on). With no source configured, every request is an anonymous viewer (the
server then binds loopback only). Passwords are stored as PBKDF2-SHA256 (stdlib ``hashlib``,
600,000 iterations, OWASP's 2023 figure); a verified Authorization header is remembered (by its
SHA-256) so the UI's polling does not pay the hash on every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

ROLES = ("viewer", "operator")
SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000
MIN_ITERATIONS, MAX_ITERATIONS = 100_000, 10_000_000  # a weaker hash is refused; a huge count would stall every login
CACHE = 1024  # verified Authorization headers remembered
FAILURES_MAX, FAILURE_WINDOW = 10, 60.0  # failed sign-ins per client address per window, then refused unchecked
FAILURE_CLIENTS = 10_000  # client addresses remembered at most


class AuthConfigError(ValueError):
    """UI_USERS_FILE is unusable; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Identity:
    user: str
    role: str
    via: str  # none | basic | token

    @property
    def operator(self) -> bool:
        return self.role == "operator"


ANONYMOUS = Identity("anonymous", "viewer", "none")


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


_DUMMY = f"{SCHEME}${ITERATIONS}${'30' * 16}${'00' * 32}"  # matches no password; checked for unknown users


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        given = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
        return hmac.compare_digest(given.hex(), digest)
    except ValueError:
        return False


def load_users_file(path: str) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """({user: (password hash, role)}, {token sha256: (token name, role)}). Raises AuthConfigError."""
    where = f"UI_USERS_FILE={path}"
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise AuthConfigError(f"{where}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AuthConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = set(data) - {"users", "tokens"}
    if unknown:
        raise AuthConfigError(f"{where}: unknown table(s) {sorted(unknown)}; the file has [users.<name>] and [tokens.<name>]")
    users, tokens = {}, {}
    for name, entry in (data.get("users") or {}).items():
        _check_entry(where, f"users.{name}", entry, "password")
        parts = str(entry["password"]).split("$")
        if parts[0] != SCHEME or len(parts) != 4 or not parts[1].isdigit():
            raise AuthConfigError(f"{where}: [users.{name}] password must be a {SCHEME}$... hash: `celery-monitor hash-password`")
        if not MIN_ITERATIONS <= int(parts[1]) <= MAX_ITERATIONS:
            raise AuthConfigError(f"{where}: [users.{name}] {int(parts[1]):,} PBKDF2 iterations: between {MIN_ITERATIONS:,} and "
                                  f"{MAX_ITERATIONS:,} (`celery-monitor hash-password` uses {ITERATIONS:,})")  # fmt: skip
        if ":" in name:
            raise AuthConfigError(f"{where}: [users.{name}]: a user name cannot hold ':' (HTTP Basic splits on it)")
        users[name] = (entry["password"], entry["role"])
    for name, entry in (data.get("tokens") or {}).items():
        _check_entry(where, f"tokens.{name}", entry, "sha256")
        digest = str(entry["sha256"]).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise AuthConfigError(f"{where}: [tokens.{name}] sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)")
        tokens[digest] = (name, entry["role"])
    if not users and not tokens:
        raise AuthConfigError(f"{where}: no [users.<name>] or [tokens.<name>] entry")
    return users, tokens


def _check_entry(where: str, table: str, entry, secret_key: str) -> None:
    if not isinstance(entry, dict):
        raise AuthConfigError(f"{where}: [{table}] must be a table")
    extra = set(entry) - {secret_key, "role"}
    if extra or secret_key not in entry:
        raise AuthConfigError(f"{where}: [{table}] takes {secret_key} and role (got {sorted(entry)})")
    if entry.get("role", "viewer") not in ROLES:
        raise AuthConfigError(f"{where}: [{table}] role must be one of {', '.join(ROLES)}")
    entry.setdefault("role", "viewer")


class Authenticator:
    """``identify(authorization header) -> Identity | None`` (None: credentials missing or wrong
    while some are required)."""

    def __init__(self, basic: str = "", token: str = "", users_file: str = ""):
        self.basic, self.token = basic, token
        self.users, self.tokens = load_users_file(users_file) if users_file else ({}, {})
        self._verified: OrderedDict[str, Identity] = OrderedDict()
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "Authenticator":
        return cls(settings.secret("ui_basic_auth"), settings.secret("ui_token"), settings.ui_users_file)

    @property
    def required(self) -> bool:
        return bool(self.basic or self.token or self.users or self.tokens)

    @property
    def basic_offered(self) -> bool:
        return bool(self.basic or self.users)

    def blocked(self, client: str, now: float | None = None) -> float:
        """Seconds ``client`` must wait: after FAILURES_MAX failed sign-ins within FAILURE_WINDOW
        its requests are refused without checking (a password guess costs a PBKDF2 hash)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.get(client, ()) if t > now - FAILURE_WINDOW]
            if len(recent) < FAILURES_MAX:
                return 0.0
            return recent[0] + FAILURE_WINDOW - now

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.pop(client, ()) if t > now - FAILURE_WINDOW]
            self._failures[client] = (recent + [now])[-FAILURES_MAX:]
            while len(self._failures) > FAILURE_CLIENTS:
                self._failures.popitem(last=False)

    def cached(self, authorization: str) -> Identity | None:
        """The identity of a header verified before, or None (then ``identify``, in a thread: a
        password check costs ~0.5 s of PBKDF2 and must not block the event loop)."""
        if not self.required:
            return ANONYMOUS
        key = hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()
        with self._lock:
            return self._verified.get(key)

    def identify(self, authorization: str) -> Identity | None:
        if not self.required:
            return ANONYMOUS
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        key = hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return self._verified[key]
        found = self._check(scheme.lower(), value)
        if found is not None:
            with self._lock:
                self._verified[key] = found
                while len(self._verified) > CACHE:
                    self._verified.popitem(last=False)
        return found

    def _check(self, scheme: str, value: str) -> Identity | None:
        if scheme == "bearer":
            if self.token and hmac.compare_digest(value.encode(), self.token.encode()):
                return Identity("token", "viewer", "token")
            entry = self.tokens.get(hashlib.sha256(value.encode()).hexdigest())
            return Identity(entry[0], entry[1], "token") if entry else None
        if scheme == "basic":
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return None
            if self.basic and hmac.compare_digest(given, self.basic.encode()):
                return Identity(self.basic.partition(":")[0], "viewer", "basic")
            user, colon, password = given.decode("utf-8", "replace").partition(":")
            entry = self.users.get(user)
            # an unknown user costs the same hash: the answer's time does not tell which names exist
            if check_password(password, entry[0] if entry else _DUMMY) and colon and entry:
                return Identity(user, entry[1], "basic")
        return None
