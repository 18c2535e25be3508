"""The UI's side of task control: ask celery-monitor control for a nonce, sign, send.

The UI holds no broker credentials; it forwards who asks (user, role: checked by the UI first),
what (action, dry run, options) and which tasks (the task list's filters), signed with
CONTROL_SECRET (signing.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid as uuidlib

from streams.config import Settings

from .signing import HEADER, sign


class ControlUnavailable(RuntimeError):
    """celery-monitor control could not be reached (or answered something that is not JSON)."""


class ControlClient:
    def __init__(self, settings: Settings):
        self.url = settings.control_url
        self.secret = settings.secret("control_secret")
        self.timeout = settings.control_timeout

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.secret)

    def _post(self, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ControlUnavailable(f"celery-monitor control at {self.url} (CONTROL_URL) is unreachable: {exc}") from None
        try:
            return status, json.loads(raw)
        except ValueError:
            raise ControlUnavailable(f"celery-monitor control at {self.url} answered {status} without JSON") from None

    def act(self, user: str, role: str, action: str, dry_run: bool, selection: dict, options: dict | None = None,
            request_id: str | None = None, via: str = "") -> tuple[int, dict]:  # fmt: skip
        """(HTTP status, answer): 200 and the result (service.py), or an error status and {"error": ...}."""
        if not self.enabled:
            return 404, {"error": "task control is off (CONTROL_URL and CONTROL_SECRET are not set)"}
        status, answer = self._post("/v1/nonce", b"{}")
        if status != 200 or "nonce" not in answer:
            raise ControlUnavailable(f"celery-monitor control gave no nonce ({status}): {answer}")
        payload = {"nonce": answer["nonce"], "request_id": request_id or str(uuidlib.uuid4()), "user": user, "role": role, "via": via,
                   "action": action, "dry_run": dry_run, "selection": selection, "options": options or {}}  # fmt: skip
        body = json.dumps(payload).encode()
        return self._post("/v1/actions", body, {HEADER: sign(self.secret, body)})
