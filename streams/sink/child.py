"""The ClickHouse sink as a child process of `streams worker` (STREAMS_SINK=process, the default).

Why a process: as a thread inside the worker the sink shares the Faust worker's GIL; a worker
catching up on 200k events with the sink inline folded 7,900 - 9,300 events/s, with the sink as
its own process 21,900 - 25,000 (docs/benchmarks.md). The contract stays that of the inline sink:
it starts and stops with the worker, and a sink that dies takes the worker down (exit status 1)
so that a supervisor restarts both. A worker killed with SIGKILL cannot stop its child: the child
notices that its parent is gone and stops itself.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from ..config import Settings

log = logging.getLogger("streams.sink")

PARENT_CHECK_SECONDS = 1.0


class SinkChild:
    """``python -m streams sink`` started by this process with the same settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.crashed = False
        self._stopping = False

    def start(self) -> None:
        argv = [sys.executable, "-m", "streams", "sink", "--stop-with-pid", str(os.getpid())]
        self.proc = subprocess.Popen(argv, env=self.settings.environ(), stdin=subprocess.DEVNULL)
        log.info("ClickHouse sink started as process %d", self.proc.pid)
        threading.Thread(target=self._watch, name="sink-child", daemon=True).start()

    def _watch(self) -> None:
        code = self.proc.wait()
        if self._stopping:
            return
        # Stopped on its own (a signal to the whole process group: the worker stops too) or
        # crashed: either way the worker does not run on without its sink.
        self.crashed = code != 0
        log.log(logging.ERROR if self.crashed else logging.INFO,
                "ClickHouse sink process %d exited (status %s); stopping the worker", self.proc.pid, code)  # fmt: skip
        self._stopping = True
        os.kill(os.getpid(), signal.SIGTERM)  # Faust's own graceful stop

    def stop(self, timeout: float = 20.0) -> None:
        self._stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # the sink finishes its batch (insert, then commit) and exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("ClickHouse sink process %d did not stop within %.0fs; killing it (its batch is re-read)", self.proc.pid, timeout)
            self.proc.kill()
            self.proc.wait(10)


def stop_when_parent_goes(parent: int, stop: Callable[[], None]) -> threading.Thread:
    """Call ``stop`` once ``parent`` is no longer this process's parent (it died, even by SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        log.warning("the streams worker (pid %d) is gone; the sink stops", parent)
        stop()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
