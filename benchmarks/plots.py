"""PNG plots of benchmark results, drawn with matplotlib (the `bench` extra).

Each function takes the result document a benchmark wrote and draws from it
alone, so a plot can be redrawn from a JSON file later. Without matplotlib a
plot is skipped with a note on stdout (the figures are in the JSON anyway);
a plot that cannot be written raises OSError.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import result_path

MiB = 2**20
Draw = Callable[[Any], None]
"""Draws on a matplotlib Figure."""


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _draw(
    out: Path, benchmark: str, label: str | None, size: tuple[float, float], draw: Draw
) -> Path | None:
    if not available():
        print("plot skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return None
    # The object API, not pyplot: no global state, so drawing in a worker thread is safe.
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    draw(figure)
    figure.tight_layout()
    path = result_path(out, benchmark, label, ".png")
    figure.savefig(path, dpi=110)
    print(f"plot: {path}")
    return path


def _errors(spreads: Sequence[dict[str, float]], scale: float = 1.0) -> list[list[float]]:
    """Asymmetric error bars (median - min, max - median) for matplotlib."""
    return [
        [(s["median"] - s["min"]) * scale for s in spreads],
        [(s["max"] - s["median"]) * scale for s in spreads],
    ]


def throughput(doc: dict[str, Any], out: Path) -> Path | None:
    rows = doc["summary"]

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        sizes = [r["size"] / MiB for r in rows]
        for key, name in (
            ("direct_mb_s", "direct to S3 (aiobotocore)"),
            ("service_mb_s", "via ingest serve"),
        ):
            spreads = [r[key] for r in rows]
            ax.errorbar(
                sizes,
                [s["median"] for s in spreads],
                yerr=_errors(spreads),
                marker="o",
                capsize=4,
                label=name,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [r["size_label"] for r in rows])
        ax.set_xlabel("file size")
        ax.set_ylabel("MB/s (median, bars: min-max)")
        ax.set_ylim(bottom=0)
        ax.set_title("Single-stream upload throughput")
        ax.grid(alpha=0.3)
        ax.legend()

    return _draw(out, "throughput", doc.get("label"), (7, 4.5), draw)


def memory(doc: dict[str, Any], out: Path) -> Path | None:
    runs = doc["runs"]

    def draw(figure: Any) -> None:
        by_time, by_bytes = figure.subplots(1, 2)
        sent_axis = by_time.twinx()
        for n, run in enumerate(runs, 1):
            times = [t for t, _ in run["rss"]]
            rss = [r / MiB for _, r in run["rss"]]
            (line,) = by_time.plot(times, rss, label=f"RSS, run {n}")
            sent_axis.plot(
                [t for t, _ in run["sent"]],
                [b / 2**30 for _, b in run["sent"]],
                linestyle=":",
                color=line.get_color(),
                alpha=0.6,
            )
            by_time.axvline(run["t_10pct"], color=line.get_color(), alpha=0.3, linestyle="--")
            by_bytes.plot(
                [b / 2**30 for b in run["rss_vs_sent"]["sent"]],
                [r / MiB for r in run["rss_vs_sent"]["rss"]],
                color=line.get_color(),
                label=f"run {n}: growth {run['growth'] / MiB:.0f} MiB",
            )
        by_time.set_xlabel("seconds")
        by_time.set_ylabel("server RSS (MiB)")
        by_time.set_ylim(bottom=0)
        sent_axis.set_ylabel("GiB sent (dotted)")
        sent_axis.set_ylim(bottom=0)
        by_time.set_title("Server RSS over time (dashed: 10% sent)")
        by_time.legend(loc="lower right")
        by_bytes.set_xlabel("GiB sent by the client")
        by_bytes.set_ylabel("server RSS (MiB)")
        by_bytes.set_ylim(bottom=0)
        by_bytes.set_title(f"Server RSS during a {doc['config']['size_label']} upload")
        by_bytes.legend(loc="lower right")
        for ax in (by_time, by_bytes):
            ax.grid(alpha=0.3)

    return _draw(out, "memory", doc.get("label"), (12, 4.5), draw)


def concurrency(doc: dict[str, Any], out: Path) -> Path | None:
    rows = doc["summary"]["fast"]

    def draw(figure: Any) -> None:
        rate, times, rss = figure.subplots(1, 3)
        levels = [r["concurrency"] for r in rows]
        mb_s = [r["aggregate_mb_s"] for r in rows]
        rate.errorbar(
            levels, [s["median"] for s in mb_s], yerr=_errors(mb_s), marker="o", capsize=4
        )
        rate.set_ylabel("aggregate MB/s")
        for key, name in (("p50_seconds", "p50"), ("p99_seconds", "p99")):
            spreads = [r[key] for r in rows]
            times.errorbar(
                levels,
                [s["median"] for s in spreads],
                yerr=_errors(spreads),
                marker="o",
                capsize=4,
                label=name,
            )
        times.set_ylabel("upload time (s)")
        times.legend()
        peaks = [r["peak_rss_mib"] for r in rows]
        rss.errorbar(
            levels, [s["median"] for s in peaks], yerr=_errors(peaks), marker="o", capsize=4
        )
        rss.set_ylabel("server peak RSS (MiB)")
        for ax, title in (
            (rate, "Aggregate throughput"),
            (times, "Upload time"),
            (rss, "Server memory"),
        ):
            ax.set_xscale("log")
            ax.set_xticks(levels, [str(level) for level in levels])
            ax.set_xlabel("concurrent uploads (size per upload in the table)")
            ax.set_ylim(bottom=0)
            ax.set_title(title)
            ax.grid(alpha=0.3)

    return _draw(out, "concurrency", doc.get("label"), (14, 4.2), draw)


def latency(doc: dict[str, Any], out: Path) -> Path | None:
    runs = doc["runs"]

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        for run in runs:
            values = sorted(run["latencies_ms"])
            if not values:
                continue
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            ax.plot(
                values,
                fractions,
                label=(
                    f"{run['clients']} clients (p50 {run['p50_ms']:.1f} ms, "
                    f"p99 {run['p99_ms']:.1f} ms)"
                ),
            )
        ax.set_xscale("log")
        ax.set_xlabel("progress event built by ingest -> received by a WebSocket client (ms)")
        ax.set_ylabel("fraction of deliveries")
        ax.set_title("Live progress latency: Kafka, live service, WebSocket")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")

    return _draw(out, "latency", doc.get("label"), (7, 4.5), draw)


def peer(doc: dict[str, Any], out: Path) -> Path | None:
    rows = doc["summary"]

    def draw(figure: Any) -> None:
        speed, cpu = figure.subplots(1, 2)
        names = [r["path"] for r in rows]
        for ax, key, label in (
            (speed, "mib_s", "MiB/s (median, bars: min-max)"),
            (cpu, "server_cpu_s_per_gib", "server CPU seconds per GiB"),
        ):
            spreads = [r[key] for r in rows]
            ax.bar(names, [s["median"] for s in spreads], yerr=_errors(spreads), capsize=4)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3, axis="y")
        speed.set_title(f"{doc['config']['size'] // MiB} MiB, one upload at a time")
        cpu.set_title("what the server spends")

    return _draw(out, "peer", doc.get("label"), (9, 4), draw)
