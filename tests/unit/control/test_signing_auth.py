"""Signed control requests (HMAC + one-time nonces) and the UI's users and roles."""

from __future__ import annotations

import base64

import pytest

from streams.control.signing import Nonces, sign, valid
from streams.ui.auth import AuthConfigError, Authenticator, check_password, hash_password

SECRET = "s" * 40


def test_signature_covers_the_body():
    body = b'{"action": "retry"}'
    assert valid(SECRET, body, sign(SECRET, body))
    assert not valid(SECRET, body + b" ", sign(SECRET, body))
    assert not valid(SECRET, body, sign("t" * 40, body))
    assert not valid("", body, sign("", body))
    assert not valid(SECRET, body, "")


def test_nonce_is_used_once_and_ages_on_its_own_clock():
    now = [0.0]
    nonces = Nonces(ttl=60, limit=3, clock=lambda: now[0])
    first = nonces.issue()
    assert nonces.use(first) and not nonces.use(first)
    late = nonces.issue()
    now[0] = 61
    assert not nonces.use(late)
    assert not nonces.use("made-up")
    many = [nonces.issue() for _ in range(4)]
    assert not nonces.use(many[0]) and nonces.use(many[-1])  # only `limit` kept: the oldest went


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def users_file(tmp_path):
    import hashlib

    path = tmp_path / "users.toml"
    path.write_text(f"""
[users.alice]
password = "{hash_password('alice-pw', iterations=100_000)}"
role = "operator"

[users.bob]
password = "{hash_password('bob-pw', iterations=100_000)}"

[tokens.bot]
sha256 = "{hashlib.sha256(b'bot-token').hexdigest()}"
role = "operator"
""")
    return str(path)


def test_roles_from_the_users_file(users_file):
    auth = Authenticator(users_file=users_file, basic="legacy:pw", token="legacy-token")
    assert auth.identify(basic("alice", "alice-pw")).role == "operator"
    assert auth.identify(basic("bob", "bob-pw")).role == "viewer"  # role defaults to viewer
    assert auth.identify("Bearer bot-token").role == "operator"
    assert auth.identify("Bearer bot-token").user == "bot"
    assert auth.identify(basic("legacy", "pw")).role == "viewer"
    assert auth.identify("Bearer legacy-token").role == "viewer"
    for wrong in (basic("alice", "bob-pw"), basic("carol", "x"), "Bearer nope", "", "Basic !!!", "Digest x"):
        assert auth.identify(wrong) is None
    assert auth.identify(basic("alice", "alice-pw")).role == "operator"  # remembered


def test_no_credentials_configured_is_an_anonymous_viewer():
    identity = Authenticator().identify("")
    assert (identity.user, identity.role) == ("anonymous", "viewer")


@pytest.mark.parametrize("text, message", [
    ("[users.a]\npassword = 'plain'\n", "pbkdf2_sha256"),
    ("[users.a]\npassword = 'pbkdf2_sha256$100000$00$00'\nrole = 'admin'\n", "role must be"),
    ("[users.a]\npassword = 'pbkdf2_sha256$1$00$00'\n", "iterations"),
    ("[tokens.t]\nsha256 = 'abc'\n", "64 hex"),
    ("[groups.x]\n", "unknown table"),
    ("[users.a]\npassword = 'pbkdf2_sha256$100000$00$00'\nextra = 1\n", "takes password and role"),
    ("not toml [", "not valid TOML"),
    ("", "no [users"),
])
def test_bad_users_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "u.toml"
    path.write_text(text)
    with pytest.raises(AuthConfigError, match=message.replace("[", r"\[").replace("$", r"\$")):
        Authenticator(users_file=str(path))


def test_password_hash_round_trip():
    stored = hash_password("pw", iterations=1000)
    assert check_password("pw", stored) and not check_password("pW", stored) and not check_password("pw", "garbage")


def test_failed_sign_ins_are_limited_per_address():
    from streams.ui.auth import FAILURE_WINDOW, FAILURES_MAX

    auth = Authenticator(token="t")
    for i in range(FAILURES_MAX):
        assert auth.blocked("10.0.0.1", now=100.0 + i) == 0
        auth.failed("10.0.0.1", now=100.0 + i)
    assert auth.blocked("10.0.0.1", now=100.0 + FAILURES_MAX) > 0
    assert auth.blocked("10.0.0.2", now=100.0 + FAILURES_MAX) == 0  # another address
    assert auth.blocked("10.0.0.1", now=100.0 + FAILURE_WINDOW + FAILURES_MAX) == 0  # the window passed
