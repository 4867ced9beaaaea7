"""Runs the benchmarks and prints a table (ours, baseline, ratio, target).

    python -m benches            # full run
    python -m benches --quick    # a few repetitions, for CI (the harness must not rot)
    python -m benches --json out.json

Benchmarks are not tests: nothing fails on a slow figure. Each measurement interleaves ours and
the baseline, so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import boxlite


@dataclass
class Row:
    name: str
    ours_median_us: float
    ours_p99_us: float
    baseline: str
    baseline_median_us: float
    baseline_p99_us: float
    target_ratio: float
    samples: int

    @property
    def ratio(self) -> float:
        return self.ours_median_us / self.baseline_median_us


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1e6


async def side_by_side(ours: Callable[[], Awaitable[object]], baseline: Callable[[], Awaitable[object]], samples: int, warmup: int) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        await ours()
        await baseline()
    ours_times: list[float] = []
    baseline_times: list[float] = []
    for _ in range(samples):
        ours_times.append(await timed(ours))
        baseline_times.append(await timed(baseline))
    return ours_times, baseline_times


async def exec_true(samples: int, warmup: int) -> Row:
    """Exec of `true` in a running box vs asyncio.create_subprocess_exec('/bin/true')."""
    with tempfile.TemporaryDirectory() as home, boxlite.Boxlite(boxlite.Options(home_dir=home)) as runtime:
        box = await runtime.create(boxlite.BoxOptions())
        await box.start()

        async def ours() -> None:
            execution = await box.exec("/bin/true")
            status = await execution.wait()
            assert status.exit_code == 0

        async def baseline() -> None:
            process = await asyncio.create_subprocess_exec("/bin/true")
            assert await process.wait() == 0

        ours_times, baseline_times = await side_by_side(ours, baseline, samples, warmup)
        await box.stop()
    return Row("exec `true` in a running box", statistics.median(ours_times), percentile(ours_times, 0.99),
               "asyncio.create_subprocess_exec", statistics.median(baseline_times), percentile(baseline_times, 0.99), 1.0, samples)


async def create_start_exec(samples: int, warmup: int) -> Row:
    """create + start + first exec + stop of a box vs a plain subprocess of the same command."""
    with tempfile.TemporaryDirectory() as home, boxlite.Boxlite(boxlite.Options(home_dir=home)) as runtime:

        async def ours() -> None:
            box = await runtime.create(boxlite.BoxOptions())
            execution = await box.exec("/bin/true")
            await execution.wait()
            await box.stop()

        async def baseline() -> None:
            process = await asyncio.create_subprocess_exec("/bin/true")
            await process.wait()

        ours_times, baseline_times = await side_by_side(ours, baseline, samples, warmup)
    return Row("create + first exec + stop (host:// image)", statistics.median(ours_times), percentile(ours_times, 0.99),
               "asyncio.create_subprocess_exec", statistics.median(baseline_times), percentile(baseline_times, 0.99), 0.0, samples)


def print_table(rows: list[Row]) -> None:
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    header = f"{'benchmark':44} {'ours p50':>10} {'ours p99':>10} {'baseline':>32} {'base p50':>10} {'ratio':>7} {'target':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = f"<={row.target_ratio:.2f}x" if row.target_ratio else "-"
        print(f"{row.name:44} {row.ours_median_us:9.0f}us {row.ours_p99_us:9.0f}us {row.baseline:>32} {row.baseline_median_us:9.0f}us {row.ratio:6.2f}x {target:>8}")


async def main(arguments: argparse.Namespace) -> None:
    samples, warmup = (20, 3) if arguments.quick else (300, 30)
    rows = [await exec_true(samples, warmup), await create_start_exec(max(samples // 3, 5), warmup)]
    print_table(rows)
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump([asdict(row) | {"ratio": row.ratio} for row in rows], handle, indent=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions (CI)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
