"""The reliability suites: runtimes killed mid-work and reopened, and a long soak of cycles
with cancellations, each beside what a user would otherwise run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boxlite
from tests.leftovers import box_cgroups, box_processes

from .harness import Row, latency_row, open_runtime, run_quietly


FAULT_WORKLOAD = """
import asyncio, random, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    chance = random.Random(int(sys.argv[2]))
    kept = await runtime.get_or_create(boxlite.BoxOptions(auto_remove=False), name="kept")
    print("ready", flush=True)
    while True:  # create, start, exec, copy, stop and remove, until the kill comes
        box = await runtime.create(boxlite.BoxOptions(auto_remove=chance.random() < 0.5))
        await box.start()
        execution = await box.exec("sh", ["-c", "echo out; sleep 0.001"])
        await execution.wait()
        await box.copy_in(sys.argv[3], "/tmp/")
        await box.stop()
        await kept[0].start() if chance.random() < 0.3 else None

asyncio.run(main())
"""


async def faults(iterations: int) -> list[Row]:
    """8. A runtime killed (SIGKILL) at a random moment of create/start/exec/copy/stop, then the
    next runtime opened on its home: how long opening and reconciling takes, against opening a
    home nobody crashed in; every box left is started and used; nothing may be left over."""
    chance = random.Random(8)
    recovered: list[float] = []
    clean: list[float] = []
    leftovers = unusable = 0
    cgroups_before = box_cgroups()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "payload.txt"
        source.write_text("payload\n")
        for iteration in range(iterations):
            home = Path(scratch) / f"home-{iteration}"
            with subprocess.Popen([sys.executable, "-c", FAULT_WORKLOAD, str(home), str(iteration), str(source)], stdout=subprocess.PIPE, text=True) as process:
                assert process.stdout is not None and process.stdout.readline().strip() == "ready"
                time.sleep(chance.uniform(0, 0.03))
                process.kill()
            started = time.perf_counter()
            with open_runtime(str(home)) as runtime:
                infos = await runtime.list_info()
                recovered.append((time.perf_counter() - started) * 1e6)
                for info in infos:
                    try:
                        box = await runtime.get(info.id)
                        assert box is not None
                        if info.state.status != "running":
                            await box.start()
                        execution = await box.exec("echo", ["usable"])
                        await execution.wait()
                    except boxlite.BoxliteError:
                        unusable += 1
                    await runtime.remove(info.id, force=True)
            leftovers += len(box_processes(home)) + len(box_cgroups() - cgroups_before)
            started = time.perf_counter()
            with open_runtime(str(home)) as runtime:
                await runtime.list_info()
                clean.append((time.perf_counter() - started) * 1e6)
            shutil.rmtree(home, ignore_errors=True)
    note = f"{iterations} kills; boxes that could not be used again: {unusable}; box processes and cgroups left over: {leftovers}"
    return [latency_row("open + reconcile after kill -9 mid-work", "opening a home after a clean close", recovered, clean, note=note)]


def _process_gauges() -> tuple[float, int, int]:
    """This process's resident memory (KiB), open descriptors and threads."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1024, len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))


def _slope_per_thousand(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of value over cycle, per 1,000 cycles."""
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return 1000 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


async def soak(cycles: int) -> list[Row]:
    """9. Create, start, exec and stop, over and over, a third of the cycles cancelled at a
    random moment (careful code: removal in `finally`): the Python process's memory,
    descriptors and threads must stay flat (slopes over the second half, after warm-up), and
    nothing is left at the end. Beside it: as many `sh -c echo` subprocesses."""
    chance = random.Random(9)
    times: list[float] = []
    gauges: list[tuple[int, tuple[float, int, int]]] = []
    cancelled = 0
    with tempfile.TemporaryDirectory() as home:
        runtime = open_runtime(home)

        async def cycle() -> None:
            box = None
            try:
                box = await runtime.create(boxlite.BoxOptions())
                await box.start()
                execution = await box.exec("echo", ["soak"])
                await execution.wait()
            finally:
                if box is not None:
                    with contextlib.suppress(boxlite.BoxliteError):
                        await runtime.remove(box.id, force=True)

        try:
            for index in range(cycles):
                started = time.perf_counter()
                task = asyncio.ensure_future(cycle())
                if chance.random() < 1 / 3:
                    await asyncio.sleep(chance.uniform(0, 0.004))
                    if task.cancel():
                        cancelled += 1
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                times.append((time.perf_counter() - started) * 1e6)
                if index % max(1, cycles // 100) == 0:
                    gauges.append((index, _process_gauges()))
            left = len(await runtime.list_info())
        finally:
            runtime.close()
        processes = len(box_processes(Path(home)))
    baseline = []
    for _ in range(max(1, cycles // 10)):
        started = time.perf_counter()
        await run_quietly("sh", "-c", "echo soak")
        baseline.append((time.perf_counter() - started) * 1e6)
    later = [(index, values) for index, values in gauges if index >= cycles // 2]
    slopes = [_slope_per_thousand([(index, values[field]) for index, values in later]) for field in range(3)]
    first, last = gauges[0][1], gauges[-1][1]
    note = (
        f"{cycles} cycles, {cancelled} cancelled; per 1,000 cycles over the second half: memory {slopes[0]:+.0f} KiB, "
        f"descriptors {slopes[1]:+.2f}, threads {slopes[2]:+.2f} (first/last sample: {first[0]:.0f}/{last[0]:.0f} KiB, "
        f"{first[1]}/{last[1]} fds, {first[2]}/{last[2]} threads); left at the end: {left} boxes, {processes} box processes"
    )
    return [latency_row("soak: create+start+exec+stop cycle", "asyncio subprocess `sh -c echo`", times, baseline, note=note)]
