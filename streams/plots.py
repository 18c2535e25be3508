"""`streams report --plot DIR`: PNG charts of the report's answers (matplotlib, no display)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .report import Answer


def _axes(title: str):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    ax.set_title(title)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _time_series(title: str, ylabel: str, series: dict[str, list], path: Path) -> Path:
    """One line per label of (minute, value) points, in time order; counts never go below 0."""
    plt, fig, ax = _axes(title)
    for label, points in sorted(series.items()):
        xs, ys = zip(*sorted(points, key=lambda p: str(p[0])))
        ax.plot(xs, ys, marker=".", label=label)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if series:
        ax.legend(fontsize="small")
    fig.autofmt_xdate()
    return _save(plt, fig, path)


def throughput(answer: Answer, path: Path) -> Path:
    series: dict[str, list] = defaultdict(list)
    for minute, kind, events in answer.rows:
        series[kind].append((minute, events))
    return _time_series("Events per minute by type", "distinct events", series, path)


def runtime_percentiles(answer: Answer, path: Path) -> Path:
    plt, fig, ax = _axes("Runtime percentiles by task (ms)")
    names = [row[0] for row in answer.rows]
    for offset, (label, column) in enumerate((("p50", 2), ("p95", 3), ("p99", 4))):
        ax.bar([i + offset * 0.27 for i in range(len(names))], [row[column] or 0 for row in answer.rows], width=0.27, label=label)
    ax.set_xticks([i + 0.27 for i in range(len(names))], names, rotation=45, ha="right", fontsize="small")
    ax.set_yscale("symlog", linthresh=1.0)  # task runtimes span orders of magnitude
    ax.set_ylabel("ms (log scale above 1)")
    ax.legend()
    return _save(plt, fig, path)


def failure_rate(answer: Answer, path: Path) -> Path:
    plt, fig, ax = _axes("Failure rate by task (FAILED + CRITICAL)")
    rows = sorted(answer.rows, key=lambda r: (-r[4], r[0]))
    ax.barh([r[0] for r in rows], [r[4] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("share of tasks")
    return _save(plt, fig, path)


def queue_lengths(answer: Answer, path: Path) -> Path:
    series: dict[str, list] = defaultdict(list)
    for minute, cluster, queue, role, messages_max, *_ in answer.rows:
        series[f"{cluster}/{queue}" + (" (bridge)" if role == "bridge" else "")].append((minute, messages_max))
    return _time_series("Messages waiting per queue (peak per minute)", "messages", series, path)


CHARTS = {
    "throughput_per_minute": (throughput, "throughput.png"),
    "runtime_percentiles_by_name": (runtime_percentiles, "runtime_percentiles.png"),
    "failure_rate_by_name": (failure_rate, "failure_rate.png"),
    "queue_lengths": (queue_lengths, "queue_lengths.png"),
}


def write_plots(answers: list[Answer], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [CHARTS[a.query.name][0](a, directory / CHARTS[a.query.name][1]) for a in answers if a.query.name in CHARTS]
