"""The benchmarks. Each returns rows of ours beside the baseline a user would otherwise pick,
measured in the same run, interleaved."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import boxlite
from tests import images
from tests.box_ports import connect_when_listening
from tests.registry import Registry
from tests.serve_client import KEY, serving

from .harness import Row, available_mib, latency_row, open_runtime, percentile, run_quietly, side_by_side


async def exec_true(samples: int, warmup: int) -> list[Row]:
    """1. Exec round trip of `true` in a running box."""
    baselines = [
        ("asyncio.create_subprocess_exec", ("/bin/true",), 0.7),
        ("bwrap --unshare-all", ("bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/true"), None),
        ("unshare -Urmpf --mount-proc", ("unshare", "-Urmpf", "--mount-proc", "/bin/true"), None),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as home, open_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions())
        await box.start()

        async def ours() -> None:
            execution = await box.exec("/bin/true")
            if (await execution.wait()).exit_code != 0:
                raise RuntimeError("true failed in the box")

        for name, command, target in baselines:
            if shutil.which(command[0]) is None:
                continue
            ours_times, theirs = await side_by_side(ours, lambda command=command: run_quietly(*command), samples, warmup)
            rows.append(latency_row("exec `true` in a running box", name, ours_times, theirs, target))

        async def spawn_and_reap() -> None:
            # The box runs the host's own /bin/true (the host:// image shares /usr): what this
            # costs, with no event loop and no box, is the floor of both rows above.
            os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], {}), 0)

        ours_times, theirs = await side_by_side(ours, spawn_and_reap, samples, warmup)
        rows.append(latency_row("exec `true` in a running box", "posix_spawn + waitpid, no loop", ours_times, theirs, None,
                                "the same binary started and reaped directly: the floor of any exec of it"))
        await box.stop()
    return rows


CRUN_HELPER = """
import subprocess, sys, time
subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=False)
bundle = sys.argv[1]
for index, line in enumerate(sys.stdin):
    started = time.perf_counter()
    result = subprocess.run(["crun", "run", "--bundle", bundle, f"bench-{index}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{(time.perf_counter() - started) * 1e6:.1f} {result.returncode}", flush=True)
"""


def _bundle(layout: str, directory: Path) -> Path:
    """An OCI runtime bundle with the busybox image's root, running /bin/true."""
    rootfs = directory / "rootfs"
    rootfs.mkdir(parents=True)
    images.busybox_rootfs(rootfs)
    subprocess.run(["crun", "spec"], cwd=directory, check=True, capture_output=True)
    config = json.loads((directory / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    (directory / "config.json").write_text(json.dumps(config))
    return directory


async def create_start_exec(samples: int, warmup: int, paced: int) -> list[Row]:
    """2. Box create + start + first exec with a cached image: the time until the first
    command's exit status is in hand, as the fresh-box floor measured on this machine counts it (crun run's
    figure includes its teardown, as there). Then the whole lifecycle, stop and removal included,
    beside the same `crun run`; and the first figure again with the host idle for 100 ms before
    each run, as when boxes are made one at a time."""
    layout = str(images.busybox_layout())
    rows = []
    with tempfile.TemporaryDirectory() as scratch, open_runtime(f"{scratch}/home") as runtime:
        await runtime.create(boxlite.BoxOptions(rootfs_path=layout))  # the image is now cached
        to_result: list[float] = []
        stops: list[float] = []

        async def ours(network: boxlite.NetworkSpec | None = None) -> None:
            started = time.perf_counter()
            box = await runtime.create(boxlite.BoxOptions(rootfs_path=layout, network=network))
            execution = await box.exec("/bin/true")
            await execution.wait()
            result = time.perf_counter()
            await box.stop()
            to_result.append((result - started) * 1e6)
            stops.append((time.perf_counter() - result) * 1e6)

        bundle = _bundle(layout, Path(scratch) / "bundle")
        # crun runs from a private mount namespace, which only root may make without a user
        # namespace of its own; an ordinary user's figures stand beside bwrap's.
        if shutil.which("crun") and shutil.which("unshare") and os.geteuid() == 0:
            # crun refuses this hybrid-cgroup host unless the cgroup2 mount is hidden: it runs
            # from a helper in a private mount namespace, which times each `crun run` itself.
            helper = await asyncio.create_subprocess_exec(
                "unshare", "-m", "--propagation", "private", "python3", "-c", CRUN_HELPER, str(bundle),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            assert helper.stdin is not None and helper.stdout is not None
            crun_times: list[float] = []

            async def crun() -> None:
                assert helper.stdin is not None and helper.stdout is not None
                helper.stdin.write(b"run\n")
                await helper.stdin.drain()
                elapsed, code = (await helper.stdout.readline()).split()
                if code != b"0":
                    raise RuntimeError("crun run failed")
                crun_times.append(float(elapsed))

            ours_times, _ = await side_by_side(ours, crun, samples, warmup)
            crun_run = crun_times[warmup:]
            rows.append(latency_row("create + start + first exec", "crun run (same bundle)", to_result[warmup:], crun_run, 0.3,
                                    "until the exit status is in hand; crun runs with the cgroup2 mount hidden (it refuses a cgroup2 mount without controllers); "
                                    "ours also starts the image's default command (sh) as the box's main process"))
            rows.append(latency_row("create + start + first exec + stop", "crun run (same bundle)", ours_times, crun_run, None,
                                    f"of which the stop (which removes the box): p50 {statistics.median(stops[warmup:]):.0f}us"))
            del to_result[:], crun_times[:]
            # crun's default spec gives its container a network namespace with loopback alone:
            # what a box without a network has (the default box also has an interface, rules
            # and the runtime's service of them).
            await side_by_side(lambda: ours(boxlite.NetworkSpec(mode="disabled")), crun, samples, warmup)
            rows.append(latency_row("create + start + first exec, network disabled", "crun run (same bundle)", to_result[warmup:], crun_times[warmup:], None,
                                    "boxes without a network one after another: the shim made ahead of need is made without one too"))
            del to_result[:], crun_times[:]
            for _ in range(paced):
                await asyncio.sleep(0.1)
                await ours()
                await asyncio.sleep(0.1)
                await crun()
            rows.append(latency_row("create + start + first exec, host idle before", "crun run (same bundle)", to_result, crun_times, None,
                                    "100 ms without work before each run: a process moved into a cgroup by pid waits for an "
                                    "RCU grace period then; a box's init moves itself and does not"))
            helper.stdin.close()
            await helper.wait()
        if shutil.which("bwrap"):
            command = ("bwrap", "--unshare-all", "--ro-bind", str(bundle / "rootfs"), "/", "--proc", "/proc", "--dev", "/dev", "/bin/true")
            ours_times, theirs = await side_by_side(ours, lambda: run_quietly(*command), samples, warmup)
            rows.append(latency_row("create + start + first exec + stop", "bwrap (same rootfs)", ours_times, theirs))
    return rows


async def _read_all(stream: asyncio.StreamReader) -> int:
    total = 0
    while chunk := await stream.read(1 << 18):
        total += len(chunk)
    return total


async def stream_throughput(megabytes: int, rounds: int) -> list[Row]:
    """3. Box stdout into Python, bytes and text, against a plain subprocess pipe."""
    size = megabytes << 20
    command = ["sh", "-c", f"head -c {size} /dev/zero"]
    results: dict[str, list[float]] = {"bytes": [], "text": [], "pipe": []}
    with tempfile.TemporaryDirectory() as home, open_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions())
        await box.start()
        for _ in range(rounds):
            for mode in ("bytes", "text"):
                started = time.perf_counter()
                execution = await box.exec(command[0], command[1:])
                total = 0
                async for chunk in execution.stdout(text=mode == "text"):
                    total += len(chunk)
                await execution.wait()
                assert total == size, (mode, total)
                results[mode].append(size / (time.perf_counter() - started) / 1e6)
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
            assert process.stdout is not None
            total = await _read_all(process.stdout)
            await process.wait()
            assert total == size
            results["pipe"].append(size / (time.perf_counter() - started) / 1e6)
        await box.stop()
    pipe = results["pipe"]
    rows = []
    for mode, target in (("bytes", 0.9), ("text", None)):
        ours = results[mode]
        rows.append(Row(f"box stdout -> Python, {mode} ({megabytes} MiB)", "MB/s", statistics.median(ours), min(ours),
                        "asyncio subprocess pipe", statistics.median(pipe), min(pipe), rounds, target, True,
                        "p99 column: slowest run"))
    return rows


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def density(counts: list[int]) -> list[Row]:
    """4. Host memory per idle box: PSS of its processes, and what its memory cgroup charges
    (kernel objects included), against an idle process."""
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory() as home, open_runtime(home) as runtime:
            boxes = [await runtime.create(boxlite.BoxOptions()) for _ in range(count)]
            for box in boxes:
                await box.start()
            pids = [(await box.info()).state.pid for box in boxes]
            ours = [_pss_kib(pid) / 1024 for pid in pids if pid]
            charged = [metrics.memory_bytes / 2**20 for metrics in [await box.metrics() for box in boxes] if metrics.memory_bytes]
            sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(count)]
            theirs = [_pss_kib(process.pid) / 1024 for process in sleepers]
            for process in sleepers:
                process.kill()
                process.wait()
            await runtime.shutdown(timeout=1)
        cgroup_note = f"; cgroup-charged memory per box {statistics.median(charged):.2f} MB (median)" if charged else ""
        rows.append(Row(f"host memory per idle box ({count} boxes)", "MB", statistics.median(ours), max(ours), "an idle `sleep` process",
                        statistics.median(theirs), max(theirs), count, None, False,
                        f"PSS of each box's processes (its init){cgroup_note}; target <= 3 MB per box; p99 column: largest"))
    return rows


async def start_curve(total: int, batch: int) -> tuple[list[Row], list[dict[str, float]]]:
    """4b. `total` idle boxes started, `batch` at a time, against as many idle processes (`sleep`)
    started the same way: the time each batch took per box as the count grows (the curve), the
    host memory each holds (MemAvailable's drop), the event loop's lag while they start, then
    an exec in every box and the runtime's shutdown."""
    curve = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as home, open_runtime(home) as runtime:
        await (await runtime.create(boxlite.BoxOptions())).stop()  # the host:// skeleton, once
        boxes: list[boxlite.Box] = []
        memory_before = available_mib()

        async def idle_box() -> boxlite.Box:
            box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
            await box.start()
            return box

        async def start_all() -> None:
            while len(boxes) < total:
                began = time.perf_counter()
                boxes.extend(await asyncio.gather(*[idle_box() for _ in range(min(batch, total - len(boxes)))]))
                curve.append({"boxes": len(boxes), "ms_per_box": (time.perf_counter() - began) * 1000 / batch,
                              "mib_per_box": (memory_before - available_mib()) / len(boxes)})

        _, ours_ms, lags = await _lagged(start_all())
        ours_mib = (memory_before - available_mib()) / total

        async def answer(box: boxlite.Box) -> int:
            return (await (await box.exec("/bin/true")).wait()).exit_code

        began = time.perf_counter()
        answered = 0
        for first in range(0, total, 100):
            answered += sum(code == 0 for code in await asyncio.gather(*[answer(box) for box in boxes[first:first + 100]]))
        exec_s = time.perf_counter() - began
        began = time.perf_counter()
        await runtime.shutdown(timeout=5)
        shutdown_s = time.perf_counter() - began

    sleepers: list[asyncio.subprocess.Process] = []
    memory_before = available_mib()

    async def start_sleepers() -> None:
        while len(sleepers) < total:
            sleepers.extend(await asyncio.gather(*[asyncio.create_subprocess_exec("sleep", "600") for _ in range(min(batch, total - len(sleepers)))]))

    _, theirs_ms, their_lags = await _lagged(start_sleepers())
    theirs_mib = (memory_before - available_mib()) / total
    for process in sleepers:
        process.kill()
    await asyncio.gather(*[process.wait() for process in sleepers])
    first, last = curve[0]["ms_per_box"], curve[-1]["ms_per_box"]
    rows = [
        Row(f"{total} idle boxes started, {batch} at a time", "s", ours_ms / 1000, ours_ms / 1000, f"{total} idle `sleep` processes, {batch} at a time",
            theirs_ms / 1000, theirs_ms / 1000, 1, None, False,
            f"per box {first:.2f} ms in the first batch, {last:.2f} ms in the last (plot: density.png); {answered}/{total} answered an exec ({exec_s:.1f} s); "
            f"shutdown {shutdown_s:.1f} s; event-loop lag p99 {percentile(lags, 0.99):.1f} ms (processes: {percentile(their_lags, 0.99):.1f} ms)"),
        Row(f"host memory per idle box ({total} boxes, MemAvailable's drop)", "MiB", ours_mib, ours_mib, "an idle `sleep` process", theirs_mib, theirs_mib, total, None, False,
            "target: <= 1 MB per box"),
    ]
    return rows, curve


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - started - 0.001) * 1000)


async def _lagged(work: Awaitable[Any]) -> tuple[Any, float, list[float]]:
    """Runs `work`; returns its result, its wall time in ms and the event loop's lags meanwhile."""
    stop, lags = asyncio.Event(), []
    ticker = asyncio.ensure_future(_loop_lag(stop, lags))
    started = time.perf_counter()
    result = await work
    elapsed = (time.perf_counter() - started) * 1000
    stop.set()
    await ticker
    return result, elapsed, lags


PHASES = ("create", "start", "exec", "remove")


async def concurrency(levels: list[int], rounds: int) -> tuple[list[Row], list[dict[str, float]]]:
    """5. Bursts of concurrent create + start + exec(true) + remove against as many concurrent
    asyncio subprocesses: the whole burst's time, the event loop's lag during each, the time of
    each phase; alternated, `rounds` of each. Plus 50 executions streaming output at once."""
    rows = []
    curve = []
    with tempfile.TemporaryDirectory() as home, open_runtime(home) as runtime:

        async def cycle(phases: dict[str, list[float]]) -> None:
            marks = [time.perf_counter()]
            box = await runtime.create(boxlite.BoxOptions())
            marks.append(time.perf_counter())
            await box.start()
            marks.append(time.perf_counter())
            await (await box.exec("/bin/true")).wait()
            marks.append(time.perf_counter())
            await runtime.remove(box.id, force=True)
            marks.append(time.perf_counter())
            for phase, began, ended in zip(PHASES, marks, marks[1:]):
                phases[phase].append((ended - began) * 1000)

        phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
        await cycle(phases)  # the first box of a home writes its host:// skeleton: not part of the figure

        for level in levels:
            ours: list[float] = []
            theirs: list[float] = []
            lags: dict[str, list[float]] = {"ours": [], "theirs": []}
            phases = {phase: [] for phase in PHASES}
            failures = 0
            for _ in range(rounds):
                results, elapsed, lagged = await _lagged(asyncio.gather(*[cycle(phases) for _ in range(level)], return_exceptions=True))
                failures += sum(isinstance(result, BaseException) for result in results)
                ours.append(elapsed)
                lags["ours"] += lagged
                _, elapsed, lagged = await _lagged(asyncio.gather(*[run_quietly("/bin/true") for _ in range(level)]))
                theirs.append(elapsed)
                lags["theirs"] += lagged
            lag_ours, lag_theirs = (percentile(lags[side], 0.99) if lags[side] else 0.0 for side in ("ours", "theirs"))
            phase_note = ", ".join(f"{phase} {statistics.median(phases[phase]):.1f}" for phase in PHASES if phases[phase])
            rows.append(Row(f"burst of {level} concurrent create+start+exec+remove, whole burst", "ms", statistics.median(ours), max(ours),
                            f"{level} concurrent asyncio subprocesses", statistics.median(theirs), max(theirs), rounds, 3.0 if level >= 100 else None, False,
                            f"failures: {failures}; event-loop lag p99 {lag_ours:.1f} ms (subprocesses: {lag_theirs:.1f} ms); phase p50 ms: {phase_note}; p99 column: slowest round"))
            curve.append({"concurrency": level, "burst_ms": statistics.median(ours), "baseline_burst_ms": statistics.median(theirs),
                          "loop_lag_p99_ms": lag_ours, "baseline_loop_lag_p99_ms": lag_theirs})

        box = await runtime.create(boxlite.BoxOptions())
        await box.start()
        command = ["sh", "-c", "head -c 20000000 /dev/zero"]

        async def drain_box() -> None:
            execution = await box.exec(command[0], command[1:])
            async for _ in execution.stdout(text=False):
                pass
            await execution.wait()

        async def drain_pipe() -> None:
            process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
            assert process.stdout is not None
            await _read_all(process.stdout)
            await process.wait()

        lag_rows = {}
        for name, work in (("ours", drain_box), ("baseline", drain_pipe)):
            _, _, lag_rows[name] = await _lagged(asyncio.gather(*[work() for _ in range(50)]))
        rows.append(Row("event-loop lag while 50 executions stream", "ms", statistics.median(lag_rows["ours"]), percentile(lag_rows["ours"], 0.99),
                        "50 asyncio subprocess pipes", statistics.median(lag_rows["baseline"]), percentile(lag_rows["baseline"], 0.99),
                        len(lag_rows["ours"]), None, False, "target: ours p99 <= 5 ms"))
        await box.stop()
    return rows, curve


async def image_pull(samples: int) -> list[Row]:
    """6. Pull from a registry on loopback against `skopeo copy` of the same image."""
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        registry = Registry(Path(scratch) / "registry")
        try:
            # About 40 MB, like a slim Python image: busybox plus a layer of incompressible data.
            layout = Path(scratch) / "layout"
            base = images.busybox_layout()
            index = json.loads((base / "index.json").read_text())
            manifest = json.loads((base / "blobs/sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
            import gzip

            busybox_layer = gzip.decompress((base / "blobs/sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes())
            payload = Path(scratch) / "payload"
            (payload / "opt").mkdir(parents=True)
            (payload / "opt" / "data.bin").write_bytes(os.urandom(40 << 20))
            images.write_layout(layout, [busybox_layer, images.tar_directory(payload)], {"Env": ["PATH=/bin"]})
            registry.push(layout, "bench/fat", "1")
            reference = f"{registry.host}/bench/fat:1"
            registries = [boxlite.ImageRegistry(host=registry.host, transport="http")]
            ours_times: list[float] = []
            theirs: list[float] = []
            home = f"{scratch}/home"
            with boxlite.Boxlite(boxlite.Options(home_dir=home, image_registries=registries)) as runtime:
                for index in range(samples + 1):
                    # The store is emptied before each round: every pull is a cold one. (Which
                    # layer store the runtime uses depends on user namespaces: empty them all.)
                    layer_stores = [str(path) for path in Path(home, "layers").iterdir() if path.name != "tmp"]
                    for store in [f"{home}/images", f"{home}/blobs/sha256", *layer_stores]:
                        shutil.rmtree(store, ignore_errors=True)
                        os.makedirs(store)
                    started = time.perf_counter()
                    await runtime.images.pull(reference)
                    elapsed = (time.perf_counter() - started) * 1e6
                    target = f"{scratch}/oci-{index}"
                    started = time.perf_counter()
                    await run_quietly("skopeo", "copy", "--src-tls-verify=false", f"docker://{reference}", f"oci:{target}")
                    skopeo_elapsed = (time.perf_counter() - started) * 1e6
                    shutil.rmtree(target)
                    if index:  # the first round warms both up
                        ours_times.append(elapsed)
                        theirs.append(skopeo_elapsed)
        finally:
            registry.stop()
    return [latency_row("pull a 40 MB image (cold cache, loopback)", "skopeo copy to an OCI layout", ours_times, theirs,
                        note="ours also unpacks the layer into the layer store")]


async def copy_files(megabytes: int) -> list[Row]:
    """7. copy_in / copy_out of a large file against cp on the host."""
    size = megabytes << 20
    rows = []
    with tempfile.TemporaryDirectory() as scratch, open_runtime(f"{scratch}/home") as runtime:
        source = Path(scratch) / "big"
        with source.open("wb") as handle:
            block = os.urandom(1 << 20)
            for _ in range(megabytes):
                handle.write(block)
        box = await runtime.create(boxlite.BoxOptions())
        await box.start()
        timings: dict[str, float] = {}
        for name, action in (
            ("copy_in", lambda: box.copy_in(str(source), "/root/big")),
            ("cp in", lambda: run_quietly("cp", str(source), f"{scratch}/copy-in")),
            ("copy_out", lambda: box.copy_out("/root/big", f"{scratch}/out")),
            ("cp out", lambda: run_quietly("cp", f"{scratch}/copy-in", f"{scratch}/copy-out")),
        ):
            started = time.perf_counter()
            await action()
            timings[name] = size / (time.perf_counter() - started) / 1e6
        await box.stop()
    for ours, theirs in (("copy_in", "cp in"), ("copy_out", "cp out")):
        rows.append(Row(f"{ours} of {megabytes} MiB", "MB/s", timings[ours], timings[ours], "cp on the host", timings[theirs], timings[theirs], 1, None, True))
    return rows


async def snapshots(megabytes: int, samples: int) -> list[Row]:
    """11. A snapshot and a clone of a box holding `megabytes` MiB in 64 files, against `cp -a`
    of the same files on the host (what a user would do by hand), alternated; an export to a
    `.boxlite` archive and its import, against `tar -c` and `tar -x` of the same files. On a
    filesystem with reflinks (btrfs, xfs) snapshots and clones share blocks; on ext4 all copy.
    Each is timed from a synced page cache, and each copy is removed after, so that no copy
    slows the next."""
    timings: dict[str, list[float]] = {name: [] for name in ("snapshot, running", "snapshot, stopped", "clone, stopped", "cp -a", "export, stopped", "import", "tar -c", "tar -x")}
    with tempfile.TemporaryDirectory() as scratch, open_runtime(f"{scratch}/home") as runtime:
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="filled")
        fill = f"mkdir /root/data; for i in $(seq 64); do head -c {megabytes << 14} /dev/urandom > /root/data/$i; done"
        await (await box.exec("sh", ["-c", fill])).wait()
        upper = Path(scratch) / "home" / "boxes" / box.id / "upper"

        async def timed(name: str, action: Callable[[], Awaitable[Any]]) -> Any:
            await asyncio.to_thread(os.sync)
            started = time.perf_counter()
            made = await action()
            timings[name].append((time.perf_counter() - started) * 1e3)
            return made

        async def copy_by_hand() -> None:
            await timed("cp -a", lambda: run_quietly("cp", "-a", str(upper), f"{scratch}/copy"))
            await asyncio.to_thread(shutil.rmtree, f"{scratch}/copy")

        for _ in range(samples):
            await copy_by_hand()
            await timed("snapshot, running", lambda: box.snapshot.create(name="running"))
            await box.snapshot.remove("running")
        await box.stop()
        box = await runtime.get("filled")
        for _ in range(samples):
            await copy_by_hand()
            await timed("snapshot, stopped", lambda: box.snapshot.create(name="stopped"))
            await box.snapshot.remove("stopped")
            clone = await timed("clone, stopped", box.clone_box)
            await runtime.remove(clone.id)
            archive, tarball = f"{scratch}/box.boxlite", f"{scratch}/files.tar"
            await timed("tar -c", lambda: run_quietly("tar", "-cf", tarball, "-C", str(upper), "."))
            await timed("export, stopped", lambda: box.export(dest=archive))
            os.mkdir(f"{scratch}/unpacked")
            await timed("tar -x", lambda: run_quietly("tar", "-xf", tarball, "-C", f"{scratch}/unpacked"))
            imported = await timed("import", lambda: runtime.import_box(archive))
            await runtime.remove(imported.id)
            for made in (archive, tarball):
                os.remove(made)
            await asyncio.to_thread(shutil.rmtree, f"{scratch}/unpacked")
        await runtime.remove(box.id, force=True)
    baselines = {"snapshot, stopped": "cp -a", "snapshot, running": "cp -a", "clone, stopped": "cp -a", "export, stopped": "tar -c", "import": "tar -x"}
    return [
        Row(f"{name}: {megabytes} MiB in 64 files", "ms", percentile(timings[name], 0.5), percentile(timings[name], 0.99), f"{baseline} of the box's files", percentile(timings[baseline], 0.5), percentile(timings[baseline], 0.99), len(timings[name]))
        for name, baseline in baselines.items()
    ]


ECHO_ONE_BYTE = """
import socket
server = socket.create_server(("127.0.0.1", 7000))
while True:
    connection, _ = server.accept()
    connection.sendall(connection.recv(1))
    connection.close()
"""

SEND_MEGABYTES = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
connection, _ = server.accept()
block = bytes(1 << 20)
for _ in range(int(sys.argv[2])):
    connection.sendall(block)
connection.close()
"""


async def _through_tunnel(box: boxlite.Box, port: int, size: int) -> float:
    """MB/s of `size` bytes (whole MiB) a server in `box` sends through a tunnel to its `port`."""
    server = await box.exec("python3", ["-c", SEND_MEGABYTES, str(port), str(size >> 20)])
    connection = await connect_when_listening(box, port)
    started = time.perf_counter()
    total = 0
    while chunk := await connection.read(1 << 20):
        total += len(chunk)
    elapsed = time.perf_counter() - started
    await connection.close()
    await server.wait()
    assert total == size
    return size / elapsed / 1e6


async def rest(samples: int, warmup: int, megabytes: int, burst: int) -> list[Row]:
    """12. `Boxlite.rest()` driving `boxlite serve` on loopback against the same work through
    the local runtime, side by side: exec `true` in a running box, `megabytes` MiB of stdout,
    a tunnel's connection and `megabytes` MiB through one, and a burst of `burst` concurrent
    create+exec+remove."""
    size = megabytes << 20
    rows = []
    with tempfile.TemporaryDirectory() as scratch, open_runtime(f"{scratch}/local") as runtime, serving(Path(scratch) / "served") as server:
        remote = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(f"http://{server.address}", boxlite.ApiKeyCredential(KEY)))
        try:
            boxes = {}
            for name, which in (("local", runtime), ("rest", remote)):
                boxes[name] = await which.create(boxlite.BoxOptions())
                await boxes[name].start()

            async def remote_true() -> None:
                await (await boxes["rest"].exec("true")).wait()

            async def local_true() -> None:
                await (await boxes["local"].exec("true")).wait()

            ours, theirs = await side_by_side(remote_true, local_true, samples, warmup)
            rows.append(latency_row("exec true over REST (loopback)", "the same exec, local", ours, theirs))

            streamed: dict[str, list[float]] = {"rest": [], "local": []}
            for _ in range(3):
                for name in ("rest", "local"):
                    started = time.perf_counter()
                    execution = await boxes[name].exec("head", ["-c", str(size), "/dev/zero"])
                    total = 0
                    async for chunk in execution.stdout(text=False):
                        total += len(chunk)
                    await execution.wait()
                    assert total == size
                    streamed[name].append(size / (time.perf_counter() - started) / 1e6)
            rows.append(Row(f"stdout over REST ({megabytes} MiB)", "MB/s", statistics.median(streamed["rest"]), min(streamed["rest"]),
                            "the same stdout, local", statistics.median(streamed["local"]), min(streamed["local"]), 3, 0.5, True,
                            "p99 column: slowest run"))

            tunneled = {}
            for name, which in (("local", runtime), ("rest", remote)):
                tunneled[name] = await which.create(boxlite.BoxOptions(network=boxlite.NetworkSpec(mode="disabled")))
                await tunneled[name].start()
            echo = {name: await made.exec("python3", ["-c", ECHO_ONE_BYTE]) for name, made in tunneled.items()}

            async def echo_one_byte(connection: boxlite.BoxConnection) -> None:
                await connection.write(b"x")
                assert await connection.read(1) == b"x"
                await connection.close()

            async def round_trip(name: str) -> None:
                await echo_one_byte(await (await tunneled[name].network.tunnel(7000)).connect())

            for made in tunneled.values():
                await echo_one_byte(await connect_when_listening(made, 7000))
            ours, theirs = await side_by_side(lambda: round_trip("rest"), lambda: round_trip("local"), samples, warmup)
            rows.append(latency_row("tunnel connect + 1-byte echo over REST", "the same, local", ours, theirs))
            for made in echo.values():
                await made.kill()
            through: dict[str, list[float]] = {"rest": [], "local": []}
            for run in range(3):
                for name in ("rest", "local"):
                    through[name].append(await _through_tunnel(tunneled[name], 8000 + run, size))
            rows.append(Row(f"a tunnel over REST ({megabytes} MiB)", "MB/s", statistics.median(through["rest"]), min(through["rest"]),
                            "the same tunnel, local", statistics.median(through["local"]), min(through["local"]), 3, 0.5, True,
                            "p99 column: slowest run"))
            for made in tunneled.values():
                await made.stop()

            async def cycle(which: boxlite.Boxlite) -> None:
                made = await which.create(boxlite.BoxOptions())
                await (await made.exec("true")).wait()
                await which.remove(made.id, force=True)

            burst_ms = {}
            for name, which in (("rest", remote), ("local", runtime)):
                started = time.perf_counter()
                await asyncio.gather(*(cycle(which) for _ in range(burst)))
                burst_ms[name] = (time.perf_counter() - started) * 1e3
            rows.append(Row(f"{burst} concurrent create+exec+remove over REST", "ms", burst_ms["rest"], burst_ms["rest"], "the same burst, local", burst_ms["local"], burst_ms["local"], 1))
            for made in boxes.values():
                await made.stop()
        finally:
            remote.close()
    return rows
