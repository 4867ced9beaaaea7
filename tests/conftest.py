"""Fixtures shared by the whole suite: a runtime per test on a fresh home directory, test images,
and leak checks (no box process may outlive its test)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import select
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import boxlite
from boxlite._native import _testing

from . import images
from .leftovers import box_cgroups, box_processes, guardians, keepers
from .serve_client import KEY, serving


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition never became true") -> None:
    """Polls a condition the runtime will make true; fails the test if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.001)


def runtime_processes(runtime: boxlite.Boxlite) -> set[int]:
    """The runtime's own processes, which belong to no box: its spawner of shims, the box
    made ahead of need (its init, and the box's pid 1 it made) and the guardian of its detached
    boxes' networks."""
    found = set(guardians())
    spawner = _testing.spawner_pid(runtime)
    if spawner is not None:
        found.add(spawner)
    for init in _testing.warm_inits(runtime):
        found.add(init)
        try:
            found.update(int(pid) for pid in Path(f"/proc/{init}/task/{init}/children").read_text().split())
        except OSError:
            pass
    return found


def layer_store(home: Path) -> Path:
    """The runtime's store of unpacked layers (``layers/sha256``, or ``layers/idmap-<base>``
    when boxes run in a user namespace)."""
    stores = [path for path in (home / "layers").iterdir() if path.name != "tmp"]
    assert len(stores) == 1, stores
    return stores[0]


def parent_of(pid: int) -> int | None:
    """The process's parent (None once it is gone)."""
    try:
        return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("PPid:")))
    except (OSError, StopIteration):
        return None


def describe_processes(pids: list[int]) -> list[str]:
    """Each process's pid, parent and command line, for a failure's message."""
    described = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        described.append(f"{pid} (parent {parent_of(pid)}): {command}")
    return described


def kill_and_reap(pids: list[int]) -> None:
    """Kills the processes and returns once they are gone (a killed process takes a moment to
    exit, longer on a loaded machine)."""
    pidfds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            pidfds.append(os.pidfd_open(pid))
            os.kill(pid, signal.SIGKILL)
    try:
        for pidfd in pidfds:
            ready, _, _ = select.select([pidfd], [], [], 10.0)
            assert ready, "a killed box process did not exit within 10 s"
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def assert_no_leftovers(home: Path, cgroups_before: set[Path] | None = None) -> None:
    leftovers = box_processes(home)
    # A runtime the test killed (kill -9) leaves its shim spawner, and a shim it was starting
    # ahead of need, to finish what they were doing: orphans, which leave once they find their
    # runtime gone. Anything else, or an orphan still here after that, is a leftover.
    deadline = time.monotonic() + 10
    while leftovers and all(parent_of(pid) in {None, 1, *leftovers} for pid in leftovers) and time.monotonic() < deadline:
        time.sleep(0.05)
        leftovers = box_processes(home)
    described = describe_processes(leftovers)
    kill_and_reap(leftovers)  # the test fails, and leaves nothing running on the machine
    assert leftovers == [], f"box processes outlived their test: {described}"
    # A keeper leaves once no detached box with a network runs (it may have been serving one
    # that the test's runtime closed on, and the boxes' processes just went).
    deadline = time.monotonic() + 15
    while keepers(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    lingering = keepers(home)
    kill_and_reap(lingering)
    assert lingering == [], "a keeper outlived the boxes it served"
    if cgroups_before is not None:
        assert box_cgroups() - cgroups_before == set(), "box cgroups outlived their test"
    boxes = home / "boxes"
    if boxes.exists():
        for box_dir in boxes.iterdir():
            assert not (box_dir / "init.sock").exists(), f"stale control socket in {box_dir}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``root_only(why)`` are about what only a runtime that runs as root does (its
    boxes' per-box host ids, loop devices, host root's files), and ``ordinary_user_only(why)``
    about what differs for one that runs as an ordinary user: each is skipped, saying why, when
    the suite runs as the other (CI runs it as both)."""
    as_root = os.geteuid() == 0
    for item in items:
        marker = item.get_closest_marker("ordinary_user_only" if as_root else "root_only")
        if marker is not None:
            needs = "an ordinary user" if as_root else "root"
            item.add_marker(pytest.mark.skip(reason=f"needs a runtime that runs as {needs}: {marker.args[0]}"))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    cgroups = box_cgroups()
    yield path
    assert_no_leftovers(path, cgroups)


@contextlib.asynccontextmanager
async def checked(open_runtime: Callable[[], boxlite.Boxlite]) -> AsyncIterator[boxlite.Boxlite]:
    """The runtime ``open_runtime`` gives; once it is closed, every descriptor it opened must be
    too."""
    descriptors = open_descriptors()
    rt = open_runtime()
    try:
        yield rt
    finally:
        rt.close()
    del rt
    await no_descriptor_leak(descriptors)


def checked_runtime(home: Path) -> contextlib.AbstractAsyncContextManager[boxlite.Boxlite]:
    """A local runtime on ``home``, checked as ``checked`` does."""
    return checked(lambda: boxlite.Boxlite(boxlite.Options(home_dir=str(home))))


@pytest.fixture
async def runtime(home: Path) -> AsyncIterator[boxlite.Boxlite]:
    async with checked_runtime(home) as rt:
        yield rt


@pytest.fixture(params=["local", "rest"])
async def any_runtime(request: pytest.FixtureRequest, home: Path) -> AsyncIterator[boxlite.Boxlite]:
    """The tests of what both kinds of runtime do, run on each: a local runtime on ``home``, and
    a REST runtime (``Boxlite.rest``) driving a real ``boxlite serve`` on ``home`` over
    loopback. Either way, nothing may be left behind (the ``home`` fixture), and the client
    opens no descriptor it keeps after ``close()``."""
    if request.param == "local":
        async with checked_runtime(home) as rt:
            yield rt
        return
    with serving(home) as server:
        options = boxlite.BoxliteRestOptions(f"http://{server.address}", boxlite.ApiKeyCredential(KEY))
        async with checked(lambda: boxlite.Boxlite.rest(options)) as rt:
            yield rt


def open_descriptors() -> set[str]:
    """What this process's open descriptors lead to (paths, pipes, sockets)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return found


async def no_descriptor_leak(before: set[str]) -> None:
    """Every descriptor a runtime opened is closed once it is closed and gone. Tasks finish on
    its threads after close() returns, so give them a moment."""
    import gc

    leaked: set[str] = set()
    for _ in range(100):
        gc.collect()
        leaked = {target for target in open_descriptors() - before if not target.startswith(("anon_inode:[eventpoll]", "anon_inode:[eventfd]"))}
        if not leaked:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"descriptors outlived the runtime: {sorted(leaked)}")


@pytest.fixture(scope="session")
def busybox_image() -> str:
    return str(images.busybox_layout())


@pytest.fixture(scope="session", autouse=True)
def no_box_cgroups_left_by_the_run() -> Iterator[None]:
    """Every box group made during the run is gone at its end, made by tests with the ``home``
    fixture (which checks its own) or without."""
    before = box_cgroups()
    yield
    assert box_cgroups() - before == set(), "box cgroups outlived the test run"


@pytest.fixture(autouse=True)
def no_gil_on_workers() -> Iterator[None]:
    """Rule 1 of the async core, checked around every test."""
    before = _testing.gil_on_worker_violations()
    yield
    assert _testing.gil_on_worker_violations() == before


async def collect(execution: boxlite.Execution) -> tuple[bytes, bytes, boxlite.ExitStatus]:
    """stdout and stderr as bytes, read concurrently, then the exit status."""

    async def read(stream: boxlite.ExecStream) -> bytes:
        chunks = []
        async for chunk in stream:
            assert isinstance(chunk, bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    stdout, stderr = await asyncio.gather(read(execution.stdout(text=False)), read(execution.stderr(text=False)))
    return stdout, stderr, await execution.wait()


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    """The first record of logger ``boxlite`` containing ``text``, once the runtime's log thread
    delivered it."""
    for _ in range(200):
        for record in caplog.records:
            if record.name == "boxlite" and text in record.getMessage():
                return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"no boxlite log record contains {text!r}: {[record.getMessage() for record in caplog.records]}")


def subordinate_ids() -> tuple[int, int, int]:
    """This user's first ranges in /etc/subuid and /etc/subgid, as boxes get them: (first uid,
    first gid, count); the test is skipped, saying why, where the user has none or newuidmap is
    missing (CI installs uidmap and gives its user ranges)."""
    names = {pwd.getpwuid(os.getuid()).pw_name, str(os.getuid())}
    ranges = []
    for file in ("/etc/subuid", "/etc/subgid"):
        lines = Path(file).read_text().splitlines() if Path(file).exists() else []
        fields = [line.split(":") for line in lines if line.count(":") == 2]
        found = next(((int(first), int(count)) for name, first, count in fields if name in names and int(count) > 0), None)
        if found is None:
            pytest.skip(f"this user has no range in {file} (as root: usermod --add-subuids/--add-subgids)")
        ranges.append(found)
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.skip("newuidmap and newgidmap are not installed (Debian's uidmap)")
    (first_uid, uid_count), (first_gid, gid_count) = ranges
    return first_uid, first_gid, min(uid_count, gid_count, 65535)
