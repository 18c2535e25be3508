"""Loss detection where the broker cannot redeliver (Redis pub/sub): pure.

Redis PUB/SUB keeps nothing: while the bridge is disconnected — or when Redis drops a subscriber
whose output buffer passed `client-output-buffer-limit pubsub` (32 MB by default) — events are
gone. We cannot get them back, but we must say so:

* heartbeat gap: each worker heartbeats every `freq` seconds; two consecutive heartbeats of one
  worker further apart than GAP_FACTOR x freq mean heartbeats (and, with them, any events of that
  span) were lost;
* disconnect: the span between the last message before a lost connection and the reconnect.

Each becomes a `bridge-gap` record on the bridge-status topic (schemas/bridge-status.v1.json).
"""

from __future__ import annotations

import time

GAP_FACTOR = 1.9  # Celery's heartbeat timer drifts a little; 2 x freq means one was missed


class GapDetector:
    def __init__(self, cluster: str, bridge_id: str, factor: float = GAP_FACTOR):
        self.cluster = cluster
        self.bridge_id = bridge_id
        self.factor = factor
        self.last_heartbeat: dict[str, float] = {}

    def _record(self, gap: str, start: float, end: float, **fields) -> dict:
        return {
            "v": 1, "kind": "bridge-gap", "gap": gap, "cluster": self.cluster, "bridge": self.bridge_id,
            "from": start, "to": end, "seconds": round(end - start, 3), "at": time.time(), **fields,
        }  # fmt: skip

    def on_event(self, event: dict) -> dict | None:
        """Look at one worker event; a gap record when heartbeats were missed."""
        if event.get("type") != "worker-heartbeat":
            if event.get("type") == "worker-offline":
                self.last_heartbeat.pop(event.get("hostname"), None)
            return None
        hostname, ts = event.get("hostname"), event.get("timestamp")
        freq = event.get("freq") or 2.0
        if not isinstance(ts, (int, float)) or not isinstance(freq, (int, float)) or freq <= 0:
            return None
        last = self.last_heartbeat.get(hostname)
        if last is None or ts > last:
            self.last_heartbeat[hostname] = ts
        if last is not None and ts - last > self.factor * freq:
            missing = max(1, round((ts - last) / freq) - 1)
            return self._record("heartbeat", last, ts, hostname=hostname, missing_heartbeats=missing)
        return None

    def on_disconnect(self, last_message_at: float | None, reconnected_at: float, reason: str) -> dict:
        return self._record("disconnect", last_message_at or reconnected_at, reconnected_at, reason=reason[:500])
