"""Turning raw samples into the table (medians, percentiles, ratios, targets) and the plot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import median, percentile

Samples = dict[str, list[float]]


@dataclass(frozen=True)
class Row:
    metric: str  # key in the samples
    label: str  # may name the run's settings: {batch}, {stored:,}, {clients}
    unit: str  # how values are shown: "/s", "ms", "s", "MiB", "n"
    statistic: str  # "p50", "p95", "p99", "sum", "max"
    target: str = ""
    met: Callable[[Samples], bool | None] | None = None
    floor: str = "floor"  # the series shown in the floor column


def stat(values: list[float], statistic: str) -> float:
    if not values:
        return float("nan")
    if statistic == "sum":
        return float(sum(values))
    if statistic == "max":
        return max(values)
    return percentile(values, float(statistic[1:])) if statistic != "p50" else median(values)


def _get(samples: Samples, who: str, statistic: str) -> float:
    return stat(samples.get(who, []), statistic)


LABEL_DEFAULTS = {"batch": 200, "stored": 100000, "clients": 32}  # runs saved before they were kept

ROWS = [
    Row("submissions_per_s", "submissions/s, {clients} clients, 1 KB FASTA", "/s", "p50", "ours >= 3x theirs",
        lambda s: _get(s, "appliance", "p50") >= 3 * _get(s, "slivka", "p50")),
    Row("submission_errors", "  errors during those submissions", "n", "sum", "0",
        lambda s: _get(s, "appliance", "sum") == 0),
    Row("polls_per_s", "status polls/s (job GET), {clients} clients", "/s", "p50"),
    Row("poll_errors", "  errors during those polls", "n", "sum", "0",
        lambda s: _get(s, "appliance", "sum") == 0),
    Row("latency_trivial_local_s", "trivial job, local runner: submit -> COMPLETED", "ms", "p50",
        "p50 <= floor + 50 ms", lambda s: _get(s, "appliance", "p50") <= _get(s, "floor", "p50") + 0.05),
    Row("latency_trivial_local_s", "  same, p95", "ms", "p95"),
    Row("latency_trivial_docker_s", "trivial job, docker runner: submit -> COMPLETED", "ms", "p50",
        "p50 <= 1.25x floor", lambda s: _get(s, "appliance", "p50") <= 1.25 * _get(s, "floor", "p50")),
    Row("latency_trivial_docker_s", "  same, p95", "ms", "p95"),
    Row("latency_trivial_docker_s", "  floor with the runner's isolation flags", "ms", "p50",
        floor="floor_isolated"),
    Row("latency_clustalo_local_s", "Clustal Omega, local runner", "ms", "p50"),
    Row("latency_clustalo_docker_s", "Clustal Omega, docker runner", "ms", "p50"),
    Row("batch_docker_s", "{batch} trivial docker jobs at once: all COMPLETED", "s", "p50",
        ">= 90% of bare docker's rate", lambda s: _get(s, "floor", "p50") / _get(s, "appliance", "p50") >= 0.9),
    Row("batch_docker_s", "  floor with the runner's isolation flags", "s", "p50", floor="floor_isolated"),
    Row("cancel_local_s", "cancel -> final state, local runner", "ms", "p50", "< 1 s (p95)",
        lambda s: _get(s, "appliance", "p95") < 1.0),
    Row("cancel_local_s", "  same, p95", "ms", "p95"),
    Row("cancel_local_stuck", "  cancelled jobs not final after 10 s", "n", "sum", "0",
        lambda s: _get(s, "appliance", "sum") == 0),
    Row("cancel_docker_s", "cancel -> final state, docker runner", "ms", "p50", "< 1 s (p95)",
        lambda s: _get(s, "appliance", "p95") < 1.0),
    Row("cancel_docker_s", "  same, p95", "ms", "p95"),
    Row("cancel_docker_stuck", "  cancelled jobs not final after 10 s", "n", "sum", "0",
        lambda s: _get(s, "appliance", "sum") == 0),
    Row("stored_get_s", "job GET with {stored:,} jobs stored", "ms", "p50"),
    Row("stored_get_s", "  same, p99", "ms", "p99", "p99 < 10 ms", lambda s: _get(s, "appliance", "p99") < 0.010),
    Row("stored_list_s", "filtered job list with {stored:,} jobs stored", "ms", "p50"),
    Row("rss_web_idle_mib", "RSS of the web tier, idle", "MiB", "p50"),
    Row("rss_web_load_mib", "RSS of the web tier, under submissions", "MiB", "max"),
    Row("rss_scheduler_idle_mib", "RSS of the scheduler, idle", "MiB", "p50"),
    Row("rss_scheduler_load_mib", "RSS of the scheduler, {batch}-job batch", "MiB", "max"),
    Row("rss_runner_idle_mib", "RSS of the local worker pool, idle", "MiB", "p50"),
    Row("rss_runner_load_mib", "RSS of the local worker pool, {batch}-job batch", "MiB", "max"),
]  # fmt: skip


def show(value: float, unit: str) -> str:
    if value != value:  # NaN: not measured
        return "-"
    if unit == "ms":
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.1f} s"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "/s":
        return f"{value:.0f}/s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:.0f}"


def rows(results: dict[str, Any]) -> list[list[str]]:
    table = []
    for row in ROWS:
        samples: Samples = results["samples"].get(row.metric, {})
        if not samples:
            continue
        ours, theirs = (
            (
                _get(samples, "appliance", row.statistic),
                _get(samples, "slivka", row.statistic),
            )
            if row.floor == "floor"
            else (float("nan"), float("nan"))
        )  # a row of another floor
        floor = _get(samples, row.floor, row.statistic)
        ratio = f"{ours / theirs:.2f}" if theirs and theirs == theirs and ours == ours else "-"
        met = row.met(samples) if row.met is not None else None
        verdict = "" if met is None else ("yes" if met else "NO")
        label = row.label.format(**{**LABEL_DEFAULTS, **results.get("settings", {})})
        table.append([f"{label} ({row.statistic})", show(ours, row.unit), show(theirs, row.unit),
                      ratio, show(floor, row.unit), row.target, verdict])  # fmt: skip
    return table


HEADER = ["metric", "appliance", "slivka 0.8.5b7", "ours/theirs", "floor", "target", "met"]


def table(results: dict[str, Any]) -> str:
    body = [HEADER, *rows(results)]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) for line in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Run {results['started'][:16]} to {results['finished'][11:16]} UTC; "
        f"{results['settings']['rounds']} alternating rounds.",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
        f"{machine['os']}, kernel {machine['kernel']}, Docker {machine['docker']}, "
        f"Python {machine['python']}, MongoDB server {machine['mongodb_server']}, "
        f"slivka {machine['slivka']}, {machine['wrk']}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cell.strip() for cell in line) + " |" for line in rows(results)]
    if results.get("notes"):
        lines += ["", "Errors seen (wrk's words):", *(f"- {note}" for note in results["notes"])]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("latency_trivial_local_s", "trivial job, local runner"),
              ("latency_trivial_docker_s", "trivial job, docker runner"),
              ("latency_clustalo_docker_s", "Clustal Omega, docker runner")]  # fmt: skip
    panels = [p for p in panels if p[0] in results["samples"]]
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    styles = {"appliance": ("tab:blue", "appliance"), "slivka": ("tab:orange", "slivka 0.8.5b7"),
              "floor": ("tab:gray", "floor (bare run)"),
              "floor_isolated": ("tab:green", "bare run, same isolation")}  # fmt: skip
    for axis, (metric, title) in zip(axes[0], panels, strict=True):
        for who, values in results["samples"][metric].items():
            if not values:
                continue
            ordered = sorted(v * 1000 for v in values)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            colour, label = styles.get(who, ("black", who))
            axis.step(
                ordered, fractions, where="post", color=colour, label=f"{label} (n={len(ordered)})"
            )
        axis.set_xscale("log")
        axis.set_xlabel("submission to COMPLETED seen by the client (ms, log scale)")
        axis.set_ylabel("fraction of jobs")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
