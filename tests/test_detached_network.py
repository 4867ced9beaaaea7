"""A detached box's network while no program's runtime holds its home (``rust/core/src/keeper.rs``):
once the runtime that started the box is gone, closed or killed, a keeper serves the box's way
out and its published ports (on the host port the box had) until a runtime opens the home
again, which takes over; what the box sends while nobody serves it waits for the next server;
and a keeper leaves on its own once no such box runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import boxlite

from .conftest import wait_until
from .fake_internet import DNS, FakeInternet
from .leftovers import guardians, keepers
from .test_network import http_get, internet  # noqa: F401  (the fake internet, one per module)

SERVE_AND_FETCH = r"""
mkdir -p /www && echo served from the box > /www/index.html
httpd -p 8080 -h /www
while true; do
    if wget -q -O /dev/null http://allowed.test/; then echo "$(date +%s) ok"; else echo "$(date +%s) failed"; fi >> /fetches
    sleep 0.2
done
"""

PROGRAM = """
import asyncio, sys, boxlite

async def main() -> None:
    home, image, main, end = sys.argv[1:]
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=home))
    options = boxlite.BoxOptions(rootfs_path=image, detach=True, auto_remove=False, ports=[(0, 8080)], entrypoint=["sh", "-c", main])
    box = await runtime.create(options, name="lasting")
    await box.start()
    print((await box.info()).network.published_ports[0].host_port, flush=True)
    if end == "close":
        runtime.close()
        return
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def served_from_the_box(port: int, timeout: float = 30.0) -> None:
    """Returns once the box's server answers on host port ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await http_get(port)).endswith(b"served from the box\n"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the box's server is not reached on host port {port}"
        await asyncio.sleep(0.05)


def fetched_since(home: Path, since: float) -> bool:
    """Whether the box's loop fetched from the fake internet after ``since`` (its log, read
    from the host in the box's writable layer: no runtime needed)."""
    for log in (home / "boxes").glob("*/upper/fetches"):
        if any(line.endswith(" ok") and int(line.split()[0]) > since + 1 for line in log.read_text().splitlines()):
            return True
    return False


def run_program(home: Path, image: str, main: str, end: str) -> int:
    """Runs a program that starts a detached box with ``main`` and then closes its runtime or,
    with ``end="kill"``, is killed; returns the box's published host port."""
    with subprocess.Popen([sys.executable, "-c", PROGRAM, str(home), image, main, end], stdout=subprocess.PIPE, text=True) as program:
        assert program.stdout is not None
        port = int(program.stdout.readline())
        if end == "kill":
            program.kill()
        program.wait(timeout=30)
    return port


@pytest.mark.parametrize("end", ["close", "kill"])
async def test_a_keeper_serves_a_detached_boxs_network_once_its_runtime_is_gone(home: Path, busybox_image: str, internet: FakeInternet, monkeypatch: pytest.MonkeyPatch, end: str) -> None:
    monkeypatch.setenv("BOXLITE_DNS_SERVERS", DNS)
    port = await asyncio.to_thread(run_program, home, busybox_image, SERVE_AND_FETCH, end)
    gone = time.time()
    # No program holds the home now: its keeper serves the box, on the host port it had.
    await served_from_the_box(port)
    await wait_until(lambda: fetched_since(home, gone), timeout=30, what="no fetch went out while the keeper served the box")
    assert len(keepers(home)) == 1
    asked = time.time()
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        await wait_until(lambda: keepers(home) == [], what="the keeper did not leave for the runtime that opened the home")
        box = await runtime.get("lasting")
        assert box is not None
        # The runtime that took over serves the box: its way out, and the port where it was.
        await wait_until(lambda: fetched_since(home, asked), timeout=30, what="no fetch went out once the runtime took over")
        await served_from_the_box(port)
        await box.stop()
        await runtime.remove("lasting")
    finally:
        runtime.close()
    assert guardians() == [] and keepers(home) == []


FETCH_WITH_START_TIMES = r"""
while true; do
    start=$(cut -d' ' -f1 /proc/uptime)
    if wget -q -O /dev/null http://allowed.test/; then echo "$start ok"; else echo "$start failed"; fi >> /fetches
    sleep 0.2
done
"""


def uptime() -> float:
    """The host's uptime, the clock the box's loop stamps its fetches with (the box has no time
    namespace)."""
    return float(Path("/proc/uptime").read_text().split()[0])


def fetches_started_after(home: Path, since: float) -> list[str]:
    """The outcomes of the box's fetches (``ok`` or ``failed``) that started after ``since``."""
    outcomes = []
    for log in (home / "boxes").glob("*/upper/fetches"):
        for line in log.read_text().splitlines():
            start, outcome = line.split()
            if float(start) > since:
                outcomes.append(outcome)
    return outcomes


async def test_a_boxs_connections_wait_while_nobody_serves_it(home: Path, busybox_image: str, internet: FakeInternet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_DNS_SERVERS", DNS)
    await asyncio.to_thread(run_program, home, busybox_image, FETCH_WITH_START_TIMES, "close")
    ended = uptime()
    await wait_until(lambda: len(keepers(home)) == 1 and "ok" in fetches_started_after(home, ended), timeout=30, what="the keeper served no fetch")
    # Nobody serves the box now: its keeper is gone, killed, and no runtime holds the home.
    [keeper] = keepers(home)
    os.kill(keeper, signal.SIGKILL)
    killed = uptime()
    await wait_until(lambda: keepers(home) == [], what="the killed keeper stayed")
    await asyncio.sleep(1.0)  # the gap in which the box's next fetch waits
    opened = uptime()
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        box = await runtime.get("lasting")
        assert box is not None
        await wait_until(lambda: "ok" in fetches_started_after(home, opened), timeout=30, what="no fetch went out once a runtime adopted the box")
        # The fetch the box started while nobody served it waited (DNS query and connection)
        # and was served by the runtime that adopted the box; none failed.
        waited = fetches_started_after(home, killed)
        assert "failed" not in waited, waited
        assert len(waited) > len(fetches_started_after(home, opened)), "no fetch started while nobody served the box"
        await box.stop()
        await runtime.remove("lasting")
    finally:
        runtime.close()


async def test_a_keeper_leaves_when_its_last_box_stops(home: Path, busybox_image: str, internet: FakeInternet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_DNS_SERVERS", DNS)
    await asyncio.to_thread(run_program, home, busybox_image, "sleep 4", "close")
    await wait_until(lambda: len(keepers(home)) == 1, timeout=30, what="no keeper started")
    # The box's main process ends: the keeper settles the box, and leaves.
    await wait_until(lambda: keepers(home) == [], timeout=30, what="the keeper stayed with no box to serve")
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        info = await runtime.get_info("lasting")
        assert info is not None and info.state.status == "stopped" and info.state.exit_code == 0, info
        await runtime.remove("lasting")
    finally:
        runtime.close()


async def test_a_runtime_closed_with_no_detached_box_running_leaves_no_guardian_or_keeper(home: Path, busybox_image: str) -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, detach=True, auto_remove=False))
        await box.start()
        assert len(guardians()) == 1  # a detached box with a network runs
        await box.stop()
    finally:
        runtime.close()
    assert guardians() == [] and keepers(home) == []
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        await runtime.remove((await runtime.list_info())[0].id)
    finally:
        runtime.close()
