"""Runs the benchmarks and prints a table (ours, baseline, ratio, target, pass/fail), writes
JSON and PNG plots.

    python -m benches            # full run (about 5-10 minutes on 2 cores)
    python -m benches --quick    # under 2 minutes; CI runs it so the harness never rots
    python -m benches --only exec,create
    python -m benches --only faults   # kill -9 of a runtime at random moments, then recovery
    python -m benches --only soak     # 10,000 create/exec/stop cycles: memory, fds, threads flat
    python -m benches --only network  # a box's network against the host's (needs root)
    python -m benches --only snapshots  # snapshot and clone of a box with 1 GiB, against cp -a
    python -m benches --only rest       # boxlite serve on loopback against the local runtime
    python -m benches --only density --boxes 3800  # the start curve up to 3,800 idle boxes
    python -m benches --only ray        # Boxlite.ray on a 4-node loopback cluster (pip install ray)

Benchmarks are not tests: nothing fails on a slow figure. Run from the repository root (the
test images come from tests/images.py). Results go to benches/results/ unless --out says.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from . import network_suite, ray_suite, reliability_suite, suites
from .harness import Row, plot, print_table, write_json

SUITES = ["exec", "create", "stream", "density", "concurrency", "pull", "copy", "snapshots", "rest", "ray", "faults", "soak", "network"]


async def run(arguments: argparse.Namespace) -> None:
    quick = arguments.quick
    chosen = arguments.only.split(",") if arguments.only else SUITES
    rows: list[Row] = []
    curves: dict[str, list[dict[str, float]]] = {}
    started = time.monotonic()
    if "exec" in chosen:
        rows += await suites.exec_true(*((30, 5) if quick else (300, 30)))
    if "create" in chosen:
        rows += await suites.create_start_exec(*((10, 2, 5) if quick else (100, 10, 30)))
    if "stream" in chosen:
        rows += await suites.stream_throughput(*((64, 2) if quick else (512, 5)))
    if "density" in chosen:
        rows += await suites.density([10] if quick else [10, 100])
        curve_rows, curves["density"] = await suites.start_curve(100 if quick else arguments.boxes, 50)
        rows += curve_rows
    if "concurrency" in chosen:
        level_rows, curves["concurrency"] = await suites.concurrency([1, 10] if quick else [1, 10, 50, 100], 2 if quick else 5)
        rows += level_rows
    if "pull" in chosen:
        rows += await suites.image_pull(3 if quick else 10)
    if "copy" in chosen:
        rows += await suites.copy_files(128 if quick else 1024)
    if "snapshots" in chosen:
        rows += await suites.snapshots(*((64, 2) if quick else (1024, 5)))
    if "rest" in chosen:
        rows += await suites.rest(*((20, 3, 64, 10) if quick else (200, 20, 512, 100)))
    if "ray" in chosen:
        rows += await ray_suite.ray_cluster(*((20, 3, 200, 2, 8) if quick else (300, 30, 10_000, 4, 32)))
    if "faults" in chosen:
        rows += await reliability_suite.faults(5 if quick else 200)
    if "soak" in chosen:
        rows += await reliability_suite.soak(200 if quick else 10_000)
    if "network" in chosen:
        rows += await network_suite.network(*((64, 20, 5, 10, 50) if quick else (1024, 200, 50, 100, 200)))
    print_table(rows)
    out = Path(arguments.out)
    write_json(rows, out / "results.json")
    for path in plot(rows, curves, out):
        print(f"plot: {path}")
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions (CI)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--out", default="benches/results", help="directory for results.json and the plots")
    parser.add_argument("--boxes", type=int, default=1000, help="idle boxes the density suite's start curve goes up to (full run)")
    asyncio.run(run(parser.parse_args()))
