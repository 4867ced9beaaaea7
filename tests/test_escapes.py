"""Escapes that worked against other runtimes, tried from inside a real box (root of the box,
default options). Each must fail, and leave the host as it was. docs/security.md says what
stops each one."""

from __future__ import annotations

import ast
import ctypes
import hashlib
import os
from pathlib import Path

import pytest

import boxlite

from .conftest import collect


# What the root of a box holds (the default image); the host's root holds more (e.g. /work).
BOX_ROOT_NAMES = {"bin", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin", "sys", "tmp", "usr", "var", "run", "mnt", "opt", "srv", "media", "boot"}


@pytest.fixture
async def box(runtime: boxlite.Boxlite) -> boxlite.Box:
    return await runtime.create(boxlite.BoxOptions())


async def python(box: boxlite.Box, script: str, cwd: str | None = None) -> tuple[str, int]:
    stdout, stderr, status = await collect(await box.exec("python3", ["-c", script], cwd=cwd))
    return (stdout + stderr).decode(), status.exit_code


# Opens every /proc/<pid>/exe it can see for writing, over and over, while the host starts
# processes in the box: a process between the init's fork and its exec still runs the shim's
# binary (CVE-2019-5736 overwrote runc's this way). Prints what it could open.
OVERWRITE_EXE = """
import os, time
opened = set()
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        for path in (f"/proc/{pid}/exe",):
            try:
                fd = os.open(path, os.O_WRONLY)
            except OSError:
                try:
                    handle = os.open(path, os.O_PATH)
                except OSError:
                    continue
                try:
                    fd = os.open(f"/proc/self/fd/{handle}", os.O_WRONLY)
                except OSError:
                    continue
                finally:
                    os.close(handle)
            opened.add(os.readlink(f"/proc/self/fd/{fd}"))
            os.close(fd)
print(sorted(opened))
"""


async def test_the_shim_binary_cannot_be_overwritten_through_proc_exe(runtime: boxlite.Boxlite, home: Path, box: boxlite.Box) -> None:
    [shim] = (home / "bin").glob("boxlite-shim-*")
    before = hashlib.sha256(shim.read_bytes()).hexdigest()
    attacker = await box.exec("python3", ["-c", OVERWRITE_EXE])
    for _ in range(60):  # executions forked by the init while the attacker looks
        await collect(await box.exec("true"))
    stdout, stderr, status = await collect(attacker)
    assert status.exit_code == 0, stderr
    assert stdout.strip() == b"[]", f"opened for writing: {stdout!r}"
    assert hashlib.sha256(shim.read_bytes()).hexdigest() == before


async def test_a_working_directory_through_an_inherited_descriptor_stays_in_the_box(runtime: boxlite.Boxlite, home: Path, box: boxlite.Box) -> None:
    # CVE-2024-21626: runc let a process start in /proc/self/fd/N, a directory of the host it
    # had left open. Nothing of the host is open in the init's executions: every such
    # directory is refused or leads back into the box.
    (home / "host-marker").write_text("host")
    for descriptor in range(3, 16):
        try:
            listing, code = await python(box, "import os; print(sorted(os.listdir('.') + os.listdir('..')))", cwd=f"/proc/self/fd/{descriptor}")
        except boxlite.ExecutionError as refused:
            assert "working directory" in str(refused), refused
            continue
        assert code != 0 or not set(ast.literal_eval(listing)) & {"host-marker", "boxes", "bin", "layers"} - BOX_ROOT_NAMES, (descriptor, listing)


async def test_other_processes_roots_and_cwds_lead_only_into_the_box(box: boxlite.Box) -> None:
    script = "import os; print(sorted({e for p in os.listdir('/proc') if p.isdigit() for d in ('root', 'cwd') for e in (os.listdir(f'/proc/{p}/{d}') if os.path.isdir(f'/proc/{p}/{d}') else [])}))"
    listing, code = await python(box, script)
    assert code == 0
    names = set(ast.literal_eval(listing))
    assert names and not names & set(os.listdir("/")) - BOX_ROOT_NAMES, "a directory of the host's root shows"
    assert "work" not in names, names


async def test_no_host_device_can_be_opened_or_made(box: boxlite.Box) -> None:
    script = """
import os
for path in ("/dev/kvm", "/dev/mem", "/dev/port", "/dev/net/tun", "/dev/fuse", "/dev/sda", "/dev/vda"):
    try:
        os.close(os.open(path, os.O_RDWR))
        print("opened", path)
    except OSError as error:
        print(path, error.errno)
for name, major, minor in (("kvm", 10, 232), ("mem", 1, 1), ("tun", 10, 200), ("fuse", 10, 229)):
    try:
        os.mknod(f"/root/{name}", 0o600 | 0o020000, os.makedev(major, minor))
        print("made", name)
    except OSError as error:
        print(name, error.errno)
"""
    result, code = await python(box, script)
    assert code == 0 and "opened" not in result and "made" not in result, result


async def test_the_terminal_of_the_runtime_is_out_of_reach(box: boxlite.Box) -> None:
    # TIOCSTI pushes keystrokes into a terminal's input (bubblewrap's CVE-2017-5226 let a
    # sandbox type commands into the user's shell). A box's processes have no controlling
    # terminal and no terminal of the host's on any descriptor.
    script = """
import fcntl, os, termios
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        print("injected", fd)
    except OSError as error:
        print(fd, error.errno)
try:
    os.open("/dev/tty", os.O_RDWR)
    print("opened /dev/tty")
except OSError as error:
    print("tty", error.errno)
"""
    result, code = await python(box, script)
    assert code == 0 and "injected" not in result and "opened" not in result, result


async def test_cgroups_cannot_be_mounted_joined_or_raised(box: boxlite.Box) -> None:
    # CVE-2022-0492 wrote a cgroup v1 release_agent from a cgroup hierarchy mounted in the box.
    script = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/root/cg", exist_ok=True)
for options in (b"rdma", b"memory", b"none,name=x"):
    print("mount", options.decode(), libc.mount(b"cgroup", b"/root/cg", b"cgroup", 0, options), ctypes.get_errno())
print("cgroup2", libc.mount(b"cgroup2", b"/root/cg", b"cgroup2", 0, None), ctypes.get_errno())
agents = [os.path.join(d, "release_agent") for d, _, files in os.walk("/sys/fs/cgroup") if "release_agent" in files]
for agent in agents:
    try:
        open(agent, "w").write("/evil")
        print("wrote", agent)
    except OSError as error:
        print(agent, error.errno)
for name in ("cgroup.procs", "memory.max", "pids.max"):
    for d, _, files in os.walk("/sys/fs/cgroup"):
        if name in files:
            try:
                open(os.path.join(d, name), "w").write("1" if name == "cgroup.procs" else "max")
                print("wrote", os.path.join(d, name))
            except OSError as error:
                print(name, error.errno)
"""
    result, code = await python(box, script)
    assert code == 0, result
    assert "wrote" not in result, result
    mounts = [line for line in result.splitlines() if line.startswith(("mount", "cgroup2"))]
    assert len(mounts) == 4 and all(line.split()[-2] == "-1" for line in mounts), result


# Takes inotify instances until the kernel refuses one, says how many, and holds them.
HOARD_INOTIFY = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < 100000:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    held.append(fd)
print(len(held), ctypes.get_errno(), flush=True)
sys.stdin.read()
"""


@pytest.mark.root_only("each box is a host user of its own, which only root may hand out")
async def test_a_box_that_drains_a_per_user_kernel_quota_drains_only_its_own(runtime: boxlite.Boxlite) -> None:
    # The kernel counts inotify instances (and keys, namespaces) per user: each box being a
    # user of its own, one that takes them all leaves every other box and the host theirs.
    hoarder, neighbour = [await runtime.create(boxlite.BoxOptions()) for _ in range(2)]
    hoarding = await hoarder.exec("python3", ["-c", HOARD_INOTIFY])
    try:
        count, errno_value = (await hoarding.stdout().__anext__()).split()
        assert 0 < int(count) <= int(Path("/proc/sys/fs/inotify/max_user_instances").read_text()) and int(errno_value) == 24
        result, code = await python(neighbour, "import ctypes; libc = ctypes.CDLL(None); print(sum(libc.inotify_init1(0) >= 0 for _ in range(20)))")
        assert (result.strip(), code) == ("20", 0), "another box has its own quota"
        libc = ctypes.CDLL(None, use_errno=True)
        made = [libc.inotify_init1(0) for _ in range(5)]
        assert all(fd >= 0 for fd in made), "the host has its own"
        for fd in made:
            os.close(fd)
    finally:
        await hoarding.kill()


async def test_a_box_out_of_descriptors_hurts_only_itself(runtime: boxlite.Boxlite, box: boxlite.Box) -> None:
    result, code = await python(box, "import os\nn = 0\ntry:\n    while True:\n        os.open('/dev/null', os.O_RDONLY); n += 1\nexcept OSError as error:\n    print(n, error.errno)")
    count, errno_value = result.split()
    assert code == 0 and int(count) > 100 and int(errno_value) == 24, result
    assert (await python(box, "print('still answering')"))[0].strip() == "still answering"
