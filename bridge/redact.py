"""Redaction of task payloads before they leave the bridge (pure).

Celery events carry `args`, `kwargs` (task-sent/received) and `result` (task-succeeded) as repr
strings, which may hold personal data or secrets. Modes:
  drop      remove the field from the event
  truncate  keep the first N characters
  hash      replace with "sha256:<hex>" (equal values stay comparable, the content does not leave)
Every other field stays exactly as the producer sent it; the envelope lists what was redacted.
"""

from __future__ import annotations

import hashlib

MODES = ("drop", "truncate", "hash")
REDACTABLE = ("args", "kwargs", "result")


class Redactor:
    def __init__(self, fields: tuple[str, ...], mode: str = "hash", max_chars: int = 256):
        unknown = set(fields) - set(REDACTABLE)
        if unknown:
            raise ValueError(f"cannot redact {sorted(unknown)}: choose among {', '.join(REDACTABLE)}")
        if mode not in MODES:
            raise ValueError(f"redaction mode {mode!r}: choose among {', '.join(MODES)}")
        self.fields = tuple(fields)
        self.mode = mode
        self.max_chars = max_chars

    @classmethod
    def from_settings(cls, fields: str, mode: str, max_chars: int) -> "Redactor | None":
        names = tuple(f.strip() for f in fields.split(",") if f.strip())
        return cls(names, mode, max_chars) if names else None

    def __call__(self, event: dict) -> list[str]:
        """Redact in place; returns the fields that were present and redacted."""
        done = []
        for field in self.fields:
            if field not in event:
                continue
            value = event[field]
            if self.mode == "drop":
                del event[field]
            elif value is None:
                continue
            elif self.mode == "truncate":
                event[field] = str(value)[: self.max_chars]
            else:
                event[field] = "sha256:" + hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()
            done.append(field)
        return done
