"""The engine is pure: importing it pulls in no broker, Kafka, Faust or ClickHouse client."""

import subprocess
import sys


def test_engine_imports_no_io_library():
    code = (
        "import sys, streams.engine, streams.engine.codec\n"
        "bad = [m for m in ('kombu', 'faust', 'aiokafka', 'kafka', 'clickhouse_driver', 'celery', 'socket') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"engine imported {out}"
