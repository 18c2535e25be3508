import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "celery-events-redis"


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "streams", "replay", *args], input=stdin, capture_output=True, text=True)


def test_replay_prints_sorted_records_tasks_then_workers():
    proc = run(str(FIXTURES / "scenarios.jsonl"))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [r["kind"] for r in lines]
    assert kinds == sorted(kinds, key=lambda k: k != "task")
    tasks = [r for r in lines if r["kind"] == "task"]
    assert [r["uuid"] for r in tasks] == sorted(r["uuid"] for r in tasks)
    assert all(r["requeues"] >= 0 and "events_count" in r for r in tasks)
    assert lines[-1] == {**lines[-1], "kind": "worker", "hostname": "w1@vm", "state": "OFFLINE"}


def test_replay_raw_and_stdin_and_bad_lines():
    raw = (FIXTURES / "scenarios_raw.jsonl").read_text()
    proc = run("-", stdin="not json\n" + raw + '{"type": "task-sent"}\n')
    assert proc.returncode == 0
    assert "-:1: not JSON" in proc.stderr and "invalid event" in proc.stderr
    assert len([1 for line in proc.stdout.splitlines() if '"kind":"task"' in line]) == 30


def test_replay_worker_liveness_at():
    proc = run(str(FIXTURES / "scenarios.jsonl"), "--at", "9999999999")
    assert json.loads(proc.stdout.splitlines()[-1])["state"] == "OFFLINE"


def test_unreadable_file_exits_nonzero():
    assert run("/nonexistent.jsonl").returncode == 2


def test_replay_at_orphans_the_tasks_of_a_worker_found_gone(tmp_path):
    """The liveness judgement at --at comes before the task records are printed: a task STARTED
    on a worker that went silent carries orphaned_at = when the worker counted as gone."""
    t0 = 1_800_000_000.0
    events = [
        {"type": "worker-online", "hostname": "w@h", "timestamp": t0, "freq": 2.0, "local_received": t0},
        {"type": "task-received", "uuid": "u1", "hostname": "w@h", "timestamp": t0 + 0.5, "local_received": t0 + 0.5},
        {"type": "task-started", "uuid": "u1", "hostname": "w@h", "timestamp": t0 + 0.6, "local_received": t0 + 0.6},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    proc = run(str(path), "--at", str(t0 + 60))
    assert proc.returncode == 0, proc.stderr
    task = next(json.loads(line) for line in proc.stdout.splitlines() if '"kind":"task"' in line)
    assert (task["state"], task["orphaned_at"]) == ("STARTED", t0 + 4.6)
