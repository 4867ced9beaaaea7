"""cgroup limits of real boxes: memory, cpu and pids; usage in metrics; groups removed on stop."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import boxlite
import pytest

from .conftest import collect, wait_until
from .leftovers import cgroup_parent, v2_parent

MEMORY = cgroup_parent("memory")
PIDS = cgroup_parent("pids")
CPU = cgroup_parent("cpu")


def cgroup_file(box_id: str, *candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise AssertionError(f"no cgroup file for box {box_id} among {candidates}")


async def test_memory_cpu_and_pids_limits_are_applied(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(memory_mib=64, cpus=2))
    await box.start()
    v2 = v2_parent() / box.id
    memory = cgroup_file(box.id, MEMORY / box.id / "memory.limit_in_bytes", v2 / "memory.max")
    assert int(memory.read_text()) == 64 << 20
    pids = cgroup_file(box.id, PIDS / box.id / "pids.max", v2 / "pids.max")
    assert pids.read_text().strip() == "4096"
    quota = cgroup_file(box.id, CPU / box.id / "cpu.cfs_quota_us", v2 / "cpu.max")
    assert quota.read_text().split()[0] == "200000"
    await box.stop()
    assert not (MEMORY / box.id).exists() and not v2.exists(), "the box's cgroups are removed with it"


async def test_a_box_over_its_memory_limit_is_oom_killed_inside_and_carries_on(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(memory_mib=64))
    hog = await box.exec("python3", ["-c", "blocks = [bytearray(1 << 20) for _ in range(512)]; print('survived')"])
    stdout, _, status = await collect(hog)
    assert status.exit_code == -9 and stdout == b""
    stdout, _, status = await collect(await box.exec("echo", ["still here"]))
    assert (stdout, status.exit_code) == (b"still here\n", 0)


async def test_metrics_report_usage_from_the_cgroup(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    sleeper = await box.exec("sleep", ["100"])
    busy = await box.exec("sh", ["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
    await busy.wait()
    metrics = await box.metrics()
    assert metrics.memory_bytes is not None and metrics.memory_bytes > 0
    assert metrics.processes is not None and metrics.processes >= 2  # the init and sleep
    assert metrics.cpu_time_ns is not None and metrics.cpu_time_ns > 0
    assert metrics.cpu_percent is not None and metrics.cpu_percent > 0
    assert metrics.guest_boot_duration_ms is not None and metrics.total_create_duration_ms is not None
    assert metrics.network_bytes_sent == 0 and metrics.stage_guest_rootfs_ms is None
    echo = await box.exec("cat")
    stdin = echo.stdin()
    await stdin.send_input(b"12345")
    await stdin.close()
    assert (await collect(echo))[0] == b"12345"
    after = await box.metrics()
    assert after.bytes_sent_total == 5 and after.bytes_received_total >= 5
    sleeper.close()


def security(**limits: int) -> boxlite.BoxOptions:
    return boxlite.BoxOptions(advanced=boxlite.AdvancedBoxOptions(security=boxlite.SecurityOptions(**limits)))  # type: ignore[arg-type]


async def test_a_fork_bomb_stops_at_the_process_limit_and_the_box_recovers(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(security(max_processes=64))
    await box.start()
    v2 = v2_parent() / box.id
    assert cgroup_file(box.id, PIDS / box.id / "pids.max", v2 / "pids.max").read_text().strip() == "64"
    events = cgroup_file(box.id, PIDS / box.id / "pids.events", v2 / "pids.events")
    # Each call forks two more; past 64 processes the pids cgroup refuses the forks, and the
    # branches that cannot fork die out. The timeout bounds the test should the bomb persist.
    bomb = await box.exec("sh", ["-c", "bomb() { bomb | bomb & }; bomb; wait"], timeout_secs=20)
    await collect(bomb)
    refused = int(dict(line.split() for line in events.read_text().splitlines())["max"])
    assert refused > 0, "forks were refused at the limit"
    # The bomb's own shell has ended; branches it left may still hold every slot a moment.
    current = cgroup_file(box.id, PIDS / box.id / "pids.current", v2 / "pids.current")
    await wait_until(lambda: int(current.read_text()) < 64, timeout=30, what="the bomb's branches never died out")
    stdout, _, status = await collect(await box.exec("echo", ["alive"]))
    assert (stdout, status.exit_code) == (b"alive\n", 0)
    await box.stop()


async def test_security_options_limit_every_box_process(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(security(max_open_files=64, max_file_size=1 << 20, max_cpu_time=30))
    script = "ulimit -n; ulimit -t; head -c 2097152 /dev/zero > /tmp/big; wc -c < /tmp/big"
    stdout, _, status = await collect(await box.exec("sh", ["-c", script]))
    assert stdout.decode().split() == ["64", "30", str(1 << 20)], "writes stop at max_file_size"
    await box.stop()


async def test_a_runtime_may_open_as_many_descriptors_as_the_host_allows(runtime: boxlite.Boxlite) -> None:
    """Each running box holds descriptors in the runtime's process: the soft limit is raised to
    the hard one (or the kernel's most, `fs.nr_open`) when a runtime opens, and boxes start
    with the hard limit the process had."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    most = int(Path("/proc/sys/fs/nr_open").read_text())
    assert soft == (most if hard == resource.RLIM_INFINITY else min(hard, most))
    box = await runtime.create(boxlite.BoxOptions())
    stdout, _, _ = await collect(await box.exec("sh", ["-c", "ulimit -n; ulimit -Hn"]))
    assert [int(limit) for limit in stdout.split()] == [min(hard, most)] * 2
    await box.stop()


async def test_a_start_with_no_room_for_its_descriptors_is_refused_and_loses_nothing(runtime: boxlite.Boxlite) -> None:
    """A start that would leave the runtime's process no descriptor is refused with a typed
    error before anything of the box is made; once there is room, the box starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    box = await runtime.create(boxlite.BoxOptions())
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
    try:
        with pytest.raises(boxlite.ResourceExhaustedError, match="RLIMIT_NOFILE"):
            await box.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    info = await box.info()
    assert info.state.status == "configured" and info.state.pid is None
    stdout, _, status = await collect(await box.exec("echo", ["room"]))
    assert (stdout, status.exit_code) == (b"room\n", 0)
    await box.stop()
