"""python -m bridge [queues|forget] ...: the same as ``celery-monitor bridge ...`` (streams/cli.py)."""

import sys

from streams.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    level = []
    if "--log-level" in argv:  # a top-level option of celery-monitor, accepted here anywhere
        i = argv.index("--log-level")
        level, argv = argv[i : i + 2], argv[:i] + argv[i + 2 :]  # (without a value click says what is missing)
    main([*level, "bridge", *argv])
