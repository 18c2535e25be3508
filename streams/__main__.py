"""python -m streams {worker,sink,ui,migrate,topics,check,report,replay,retention,config}: the same
commands as ``celery-monitor`` (streams/cli.py)."""

from .cli import main

if __name__ == "__main__":
    main()
