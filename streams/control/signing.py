"""Signed requests from the UI to celery-monitor control: HMAC-SHA256 over the body, with a
one-time nonce the control service issued.

Why a nonce and not a timestamp: a timestamp window compares the UI host's clock with the control
host's (the project's rule: never compare two hosts' clocks). The nonce is issued and aged by the
control service alone (its monotonic clock), used once, and lives ``NONCE_TTL`` seconds, so a
captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

HEADER = "X-Control-Signature"
NONCE_TTL = 60.0  # seconds a nonce may wait for its request
MAX_NONCES = 10_000  # outstanding nonces kept at most (the oldest go first)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def valid(secret: str, body: bytes, signature: str) -> bool:
    given = (signature or "").encode("latin-1", "replace")  # bytes: compare_digest refuses non-ASCII str
    return bool(secret) and hmac.compare_digest(sign(secret, body).encode(), given)


class Nonces:
    """Nonces issued and not yet used, each for ``ttl`` seconds of this process's monotonic clock."""

    def __init__(self, ttl: float = NONCE_TTL, limit: int = MAX_NONCES, clock=time.monotonic):
        self.ttl, self.limit, self.clock = ttl, limit, clock
        self._issued: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._prune()
            self._issued[nonce] = self.clock()
            while len(self._issued) > self.limit:
                self._issued.popitem(last=False)
        return nonce

    def use(self, nonce: str) -> bool:
        """True once for a nonce issued less than ``ttl`` seconds ago; False for any other."""
        with self._lock:
            self._prune()
            return self._issued.pop(nonce, None) is not None

    def _prune(self) -> None:
        oldest = self.clock() - self.ttl
        while self._issued and next(iter(self._issued.values())) < oldest:
            self._issued.popitem(last=False)
