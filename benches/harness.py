"""What every benchmark shares: interleaved measurement, rows, the table, JSON and plots."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boxlite


@dataclass
class Row:
    """One figure of ours beside its baseline. For latencies lower is better; for throughputs
    (``higher_is_better``) higher is."""

    name: str
    unit: str
    ours_median: float
    ours_p99: float
    baseline: str
    baseline_median: float
    baseline_p99: float
    samples: int
    target_ratio: float | None = None
    higher_is_better: bool = False
    note: str = ""
    ours_samples: list[float] = field(default_factory=list, repr=False)
    baseline_samples: list[float] = field(default_factory=list, repr=False)

    @property
    def ratio(self) -> float:
        return self.ours_median / self.baseline_median if self.baseline_median else float("nan")

    @property
    def verdict(self) -> str:
        if self.target_ratio is None:
            return "-"
        met = self.ratio >= self.target_ratio if self.higher_is_better else self.ratio <= self.target_ratio
        return "pass" if met else "FAIL"

    def target_text(self) -> str:
        if self.target_ratio is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='}{self.target_ratio:.2f}x"

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("ours_samples")
        data.pop("baseline_samples")
        return data | {"ratio": self.ratio, "target": self.target_text(), "verdict": self.verdict}


def open_runtime(home: str) -> boxlite.Boxlite:
    return boxlite.Boxlite(boxlite.Options(home_dir=home))


async def run_quietly(*command: str) -> None:
    """Runs ``command`` with its output discarded; raises if it fails."""
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    if await process.wait() != 0:
        raise RuntimeError(f"{command[0]} failed")


def available_mib() -> float:
    """The host's available memory (``MemAvailable``), in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed_us(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1e6


async def side_by_side(
    ours: Callable[[], Awaitable[object]], baseline: Callable[[], Awaitable[object]], samples: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Alternates ours and the baseline, so noise on this machine hits both alike."""
    for _ in range(warmup):
        await ours()
        await baseline()
    ours_times: list[float] = []
    baseline_times: list[float] = []
    for _ in range(samples):
        ours_times.append(await timed_us(ours))
        baseline_times.append(await timed_us(baseline))
    return ours_times, baseline_times


def latency_row(name: str, baseline: str, ours: list[float], theirs: list[float], target: float | None = None, note: str = "") -> Row:
    return Row(
        name, "us", statistics.median(ours), percentile(ours, 0.99), baseline, statistics.median(theirs), percentile(theirs, 0.99),
        len(ours), target, False, note, ours, theirs,
    )


def print_table(rows: list[Row]) -> None:
    who = "root" if os.geteuid() == 0 else f"an ordinary user (uid {os.geteuid()})"
    print(f"machine: {platform.node()} {platform.machine()}, {platform.system()} {platform.release()}, python {platform.python_version()}; the runtime runs as {who}")
    header = f"{'benchmark':46} {'ours p50':>12} {'ours p99':>12} {'baseline':>34} {'base p50':>12} {'ratio':>7} {'target':>8} {'':4}"
    print(header)
    print("-" * len(header))
    for row in rows:
        def show(value: float) -> str:
            return f"{value:10.1f}{row.unit}" if row.unit != "us" else f"{value:9.0f}us"

        print(f"{row.name:46} {show(row.ours_median):>12} {show(row.ours_p99):>12} {row.baseline:>34} {show(row.baseline_median):>12} {row.ratio:6.2f}x {row.target_text():>8} {row.verdict:4}")
        if row.note:
            print(f"    {row.note}")


def write_json(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": platform.platform(), "rows": [row.as_json() for row in rows]}, indent=2))


def plot(rows: list[Row], curves: dict[str, list[dict[str, float]]], directory: Path) -> list[Path]:
    """Latency distributions of every latency row, the burst curve and the start curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        path = directory / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    latency = [row for row in rows if row.unit == "us" and row.ours_samples]
    if latency:
        figure, axes = plt.subplots(len(latency), 1, figsize=(9, 2.6 * len(latency)), squeeze=False)
        for axis, row in zip(axes[:, 0], latency):
            data = [[value / 1000 for value in row.ours_samples], [value / 1000 for value in row.baseline_samples]]
            axis.boxplot(data, vert=False, showfliers=True)
            axis.set_yticks([1, 2], ["boxlite", row.baseline])
            axis.set_xlabel("ms")
            axis.set_title(row.name, fontsize=10)
        save(figure, "latency.png")
    if curves.get("concurrency"):
        points = curves["concurrency"]
        figure, axis = plt.subplots(figsize=(7, 4))
        levels = [point["concurrency"] for point in points]
        for key, label in [("burst_ms", "boxlite: whole burst"), ("baseline_burst_ms", "asyncio subprocesses: whole burst"),
                           ("loop_lag_p99_ms", "boxlite: event-loop lag p99"), ("baseline_loop_lag_p99_ms", "subprocesses: event-loop lag p99")]:
            axis.plot(levels, [point[key] for point in points], marker="o", label=label)
        axis.set_xlabel("concurrent create + start + exec + remove")
        axis.set_ylabel("ms")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.legend(fontsize=8)
        axis.set_title("bursts")
        save(figure, "concurrency.png")
    if curves.get("density"):
        points = curves["density"]
        figure, axis = plt.subplots(figsize=(7, 4))
        counts = [point["boxes"] for point in points]
        axis.plot(counts, [point["ms_per_box"] for point in points], marker=".", label="start time per box (its batch's)")
        axis.set_xlabel("idle boxes running")
        axis.set_ylabel("ms per box")
        memory = axis.twinx()
        memory.plot(counts, [point["mib_per_box"] for point in points], color="tab:orange", label="host memory per box (MiB)")
        memory.set_ylabel("MiB per box")
        figure.legend(fontsize=8, loc="upper left")
        axis.set_title("starting idle boxes")
        save(figure, "density.png")
    return written
