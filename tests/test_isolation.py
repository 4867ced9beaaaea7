"""What a box process cannot do: each check runs inside a real box, as root in the box."""

from __future__ import annotations

from pathlib import Path

import pytest

import boxlite

from .conftest import checked_runtime, collect
from .leftovers import ID_RANGE_CLAIMS

# Runs one raw syscall with integer arguments and prints its errno name (or "ok").
SYSCALL = """
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
number, *arguments = (int(value, 0) for value in sys.argv[1:])
result = libc.syscall(number, *arguments)
print("ok" if result >= 0 else errno.errorcode[ctypes.get_errno()])
"""

# Docker's default capability set without MKNOD (boxes have no device cgroup).
BOX_CAPABILITIES = 0xA80425FB & ~(1 << 27)


@pytest.fixture
async def box(runtime: boxlite.Boxlite) -> boxlite.Box:
    return await runtime.create(boxlite.BoxOptions())


async def output(box: boxlite.Box, command: str, *args: str) -> str:
    stdout, stderr, _ = await collect(await box.exec(command, list(args)))
    return (stdout + stderr).decode()


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("mount", ["165", "0", "0", "0", "0", "0"]),
        ("unshare(CLONE_NEWNS)", ["272", "0x20000"]),
        ("unshare(CLONE_NEWUSER)", ["272", "0x10000000"]),
        ("setns", ["308", "0", "0"]),
        ("keyctl", ["250", "0", "0"]),
        ("bpf", ["321", "0", "0", "0"]),
        ("ptrace(ATTACH, init)", ["101", "16", "1", "0", "0"]),
        ("init_module", ["175", "0", "0", "0"]),
        ("reboot", ["169", "0xfee1dead", "672274793", "0x4321fedc", "0"]),
        ("perf_event_open", ["298", "0", "0", "-1", "-1", "0"]),
        ("clone(CLONE_NEWNET)", ["56", "0x40000011", "0", "0", "0", "0"]),
        ("io_uring_setup", ["425", "8", "0"]),
        ("io_uring_enter", ["426", "0", "0", "0", "0", "0", "0"]),
        ("mbind", ["237", "0", "0", "0", "0", "0", "0"]),
        ("set_mempolicy", ["238", "0", "0", "0"]),
        ("userfaultfd", ["323", "0"]),
        ("open_by_handle_at", ["304", "0", "0", "0"]),
        ("quotactl_fd", ["443", "0", "0", "0", "0"]),
        ("pidfd_getfd", ["438", "0", "0", "0"]),
        ("sethostname", ["170", "0", "0"]),
        ("personality(READ_IMPLIES_EXEC)", ["135", "0x400000"]),
        ("x32 ABI getpid", [str(0x40000000 + 39)]),
    ],
)
async def test_host_wide_syscalls_are_refused(box: boxlite.Box, name: str, call: list[str]) -> None:
    assert (await output(box, "python3", "-c", SYSCALL, *call)).strip() == "EPERM", name


@pytest.mark.parametrize(("family", "number"), [("AF_VSOCK", "40"), ("AF_ALG", "38")])
async def test_sockets_that_reach_past_the_box_are_refused(box: boxlite.Box, family: str, number: str) -> None:
    assert (await output(box, "python3", "-c", SYSCALL, "41", number, "1", "0")).strip() == "EAFNOSUPPORT", family
    assert (await output(box, "python3", "-c", SYSCALL, "41", "2", "1", "0")).strip() == "ok", "AF_INET stays"


async def test_personality_keeps_dockers_values(box: boxlite.Box) -> None:
    assert (await output(box, "python3", "-c", SYSCALL, "135", "0xffffffff")).strip() == "ok"
    assert (await output(box, "python3", "-c", SYSCALL, "135", "0x8")).strip() == "ok"


# Runs `int 0x80` (the 32-bit syscall ABI) with eax = 26, i386's ptrace.
INT_0X80 = """
import ctypes, mmap
code = bytes([0xb8, 26, 0, 0, 0, 0xcd, 0x80, 0xc3])  # mov eax, 26; int 0x80; ret
memory = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
memory.write(code)
address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
ctypes.CFUNCTYPE(ctypes.c_long)(address)()
print("survived")
"""


async def test_the_32_bit_syscall_abi_kills_the_process(box: boxlite.Box) -> None:
    stdout, _, status = await collect(await box.exec("python3", ["-c", INT_0X80]))
    assert (stdout, status.signal) == (b"", 31), "SIGSYS: seccomp killed it before the syscall ran"


async def test_clone3_falls_back_so_threads_and_forks_still_work(box: boxlite.Box) -> None:
    assert (await output(box, "python3", "-c", SYSCALL, "435", "0", "0")).strip() == "ENOSYS"
    script = "import threading, subprocess; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join(); subprocess.run(['echo', 'child'])"
    assert sorted((await output(box, "python3", "-c", script)).split()) == ["child", "thread"]


async def test_capabilities_are_dockers_default_less_mknod_with_no_new_privs_and_seccomp(box: boxlite.Box) -> None:
    status = dict(line.split(":\t", 1) for line in (await output(box, "cat", "/proc/self/status")).splitlines() if ":\t" in line)
    assert int(status["CapBnd"], 16) == BOX_CAPABILITIES
    assert int(status["CapEff"], 16) == BOX_CAPABILITIES
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


async def test_proc_and_sys_are_read_only_and_masked(box: boxlite.Box) -> None:
    result = await output(box, "sh", "-c", "echo x > /proc/sys/kernel/domainname 2>&1; echo x > /sys/kernel/uevent_helper 2>&1; cat /proc/timer_list | wc -c")
    assert result.count("Read-only file system") == 2
    assert result.split()[0] == "0", "/proc/timer_list is masked"


async def test_device_nodes_cannot_be_made(box: boxlite.Box) -> None:
    result = await output(box, "sh", "-c", "for at in /root /dev /dev/shm; do mknod $at/disk b 8 0 2>&1; done; mkfifo /root/fifo && echo fifo-ok")
    assert result.count("Operation not permitted") == 3
    assert "fifo-ok" in result


SHARED_MEMORY = """
import os, stat
from multiprocessing import shared_memory
made = shared_memory.SharedMemory(create=True, size=1 << 20)
made.buf[:5] = b"hello"
opened = shared_memory.SharedMemory(made.name)
shm, dev = os.stat("/dev/shm"), os.stat("/dev")
print(bytes(opened.buf[:5]).decode(), oct(stat.S_IMODE(shm.st_mode)), shm.st_uid, shm.st_dev == dev.st_dev)
opened.close()
made.close()
made.unlink()
"""


async def test_posix_shared_memory_works_in_a_dev_shm_that_is_part_of_dev(box: boxlite.Box) -> None:
    # Box root's sticky directory, open to every user of the box, in /dev's file system: a box
    # mounts no file system of its own for it (jail.rs says why).
    assert (await output(box, "python3", "-c", SHARED_MEMORY)).split() == ["hello", "0o1777", "0", "True"]
    _, _, status = await collect(await box.exec("sh", ["-c", "echo x > /dev/shm/nobodys"], user="nobody"))
    assert status.exit_code == 0
    assert (await output(box, "stat", "-c", "%u", "/dev/shm/nobodys")).strip() == "65534"


async def test_an_unreadable_passwd_does_not_wedge_the_box(box: boxlite.Box) -> None:
    await output(box, "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd")
    assert (await output(box, "echo", "still answering")).strip() == "still answering"


async def test_the_init_cannot_be_read_or_traced(box: boxlite.Box) -> None:
    result = await output(box, "sh", "-c", "cat /proc/1/environ 2>&1 >/dev/null; ls -l /proc/1/exe 2>&1 | grep -c denied || true")
    assert "Permission denied" in result


async def test_host_processes_and_files_are_invisible(box: boxlite.Box) -> None:
    listing = await output(box, "sh", "-c", "ps -eo comm= 2>/dev/null || ls /proc")
    assert "pytest" not in listing and "python" not in listing.replace("python3 -c", "")
    assert (await output(box, "sh", "-c", "ls /work /etc/shadow 2>&1")).count("No such file") == 2


async def test_the_box_sees_its_own_interfaces_only(box: boxlite.Box) -> None:
    # eth0 leads to the runtime only (test_network); the host's interfaces are not the box's.
    interfaces = await output(box, "ls", "/sys/class/net")
    assert interfaces.split() == ["eth0", "lo"]
    echo = "import socket; s = socket.create_server(('127.0.0.1', 0)); c = socket.create_connection(s.getsockname()); a, _ = s.accept(); c.sendall(b'hi'); print(a.recv(2).decode())"
    assert (await output(box, "python3", "-c", echo)).strip() == "hi"


async def test_inheritable_host_descriptors_do_not_reach_the_box(runtime: boxlite.Boxlite) -> None:
    import os

    leaked = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leaked, True)
    try:
        box = await runtime.create(boxlite.BoxOptions())
        descriptors = (await output(box, "ls", "/proc/self/fd")).split()
        assert sorted(int(fd) for fd in descriptors) == [0, 1, 2, 3], descriptors  # 3: ls's own listing
    finally:
        os.close(leaked)


def bounding_set(status: bytes) -> int:
    line = next(line for line in status.decode().splitlines() if line.startswith("CapBnd:"))
    return int(line.split()[1], 16)


async def test_capabilities_can_be_dropped_and_safe_ones_added(runtime: boxlite.Boxlite) -> None:
    changes = boxlite.ContainerCapabilities(add=["NET_ADMIN"], drop=["CHOWN", "CAP_NET_RAW"])
    box = await runtime.create(boxlite.BoxOptions(advanced=boxlite.AdvancedBoxOptions(capabilities=changes)))
    stdout, _, _ = await collect(await box.exec("cat", ["/proc/self/status"]))
    capabilities = bounding_set(stdout)
    assert capabilities & (1 << 12), "NET_ADMIN added"
    assert not capabilities & (1 << 0) and not capabilities & (1 << 13), "CHOWN and NET_RAW dropped"
    assert capabilities & (1 << 5), "KILL kept"
    _, _, status = await collect(await box.exec("chown", ["nobody", "/tmp"]))
    assert status.exit_code != 0
    await box.stop()
    # The options hold their lists, as BoxLite's do: changed in place, they are what applies.
    options = boxlite.BoxOptions(advanced=boxlite.AdvancedBoxOptions())
    assert options.advanced is not None
    options.advanced.capabilities.drop.append("ALL")
    bare = await runtime.create(options)
    stdout, _, _ = await collect(await bare.exec("cat", ["/proc/self/status"]))
    assert bounding_set(stdout) == 0
    await bare.stop()
    options.advanced.capabilities.add.append(12)  # type: ignore[arg-type]
    with pytest.raises(boxlite.InvalidArgumentError, match="holds 12, not a capability name"):
        await runtime.create(options)
    assert await runtime.list_info() == []


LAYERS_BASE = 0x7000_0000  # the host ids image layers are stored with
RANGE = 65536


async def box_base(box: boxlite.Box) -> int:
    stdout, _, _ = await collect(await box.exec("cat", ["/proc/self/uid_map", "/proc/self/gid_map"]))
    maps = [line.split() for line in stdout.decode().splitlines()]
    assert len(maps) == 2 and maps[0] == maps[1] and maps[0][0] == "0" and maps[0][2] == str(RANGE), maps
    return int(maps[0][1])


@pytest.mark.root_only("each box has host ids of its own, which only root may hand out")
async def test_box_root_is_an_unprivileged_host_user(runtime: boxlite.Boxlite, home: Path, tmp_path: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    base = await box_base(box)
    assert base > LAYERS_BASE and (base - LAYERS_BASE) % RANGE == 0, "a range of the box's own"
    stdout, _, status = await collect(await box.exec("sh", ["-c", "id -u; echo made > /root/made; stat -c %u /etc/passwd"]))
    assert (stdout, status.exit_code) == (b"0\n0\n", 0), "the image's files are box root's"
    # On the host, what box root made belongs to the shifted id, and box processes run as it.
    made = home / "boxes" / box.id / "upper" / "root" / "made"
    assert made.stat().st_uid == base
    sleeper = await box.exec("sleep", ["30"])
    init = (await box.info()).state.pid

    def host_uid(pid: int | str) -> str:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")).split()[1]

    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    assert children and all(host_uid(child) == str(base) for child in children)
    assert host_uid(init) == "0", "the init itself stays host root, outside the box's reach"
    sleeper.close()
    # A copied-in file belongs to the box's root.
    note = tmp_path / "note"
    note.write_text("n")
    await box.copy_in(str(note), "/root/")
    stdout, _, _ = await collect(await box.exec("stat", ["-c", "%u:%g", "/root/note"]))
    assert stdout == b"0:0\n"
    assert (home / "boxes" / box.id / "upper" / "root" / "note").stat().st_uid == base
    # Root of the box holds no power over its hostname, mounts or the host's files.
    _, _, status = await collect(await box.exec("hostname", ["elsewhere"]))
    assert status.exit_code != 0
    await box.stop()
    await runtime.remove(box.id)


@pytest.mark.root_only("each box has host ids of its own, which only root may hand out")
async def test_each_box_is_a_stranger_to_every_other(runtime: boxlite.Boxlite, home: Path) -> None:
    first, second = [await runtime.create(boxlite.BoxOptions(auto_remove=False)) for _ in range(2)]
    first_base, second_base = await box_base(first), await box_base(second)
    assert first_base != second_base and abs(first_base - second_base) >= RANGE
    # A file of the image changed in a box (copied up) keeps its owner, or takes the new one,
    # as the box sees it; on the host it is the box's own id.
    script = "chown 1000:1000 /etc/group && stat -c %u:%g /etc/group /etc/passwd && echo x >> /etc/passwd && stat -c %u /etc/passwd"
    stdout, _, status = await collect(await first.exec("sh", ["-c", script]))
    assert (stdout, status.exit_code) == (b"1000:1000\n0:0\n0\n", 0)
    upper = home / "boxes" / first.id / "upper" / "etc"
    assert ((upper / "group").stat().st_uid, (upper / "passwd").stat().st_uid) == (first_base + 1000, first_base)
    # The other box sees the image unchanged.
    stdout, _, _ = await collect(await second.exec("stat", ["-c", "%u:%g", "/etc/group"]))
    assert stdout == b"0:0\n"
    # The range stays with the box across a restart, and is claimed on the host until removal.
    claim = ID_RANGE_CLAIMS / str((first_base - LAYERS_BASE) // RANGE)
    assert claim.read_text() == str(home.resolve() / "boxes" / first.id)
    await first.stop()
    first = await runtime.get(first.id)
    assert first is not None
    await first.start()
    assert await box_base(first) == first_base
    await runtime.remove(first.id, force=True)
    assert not claim.exists(), "a removed box gives its range back"
    await runtime.remove(second.id, force=True)


@pytest.mark.root_only("a box without a user namespace is root's alone to make")
async def test_a_box_made_without_a_user_namespace_keeps_running_without_one(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_USER_NAMESPACES", "0")
    async with checked_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
        stdout, _, _ = await collect(await box.exec("cat", ["/proc/self/uid_map"]))
        assert stdout.split() == [b"0", b"0", b"4294967295"]
        await box.stop()
    monkeypatch.delenv("BOXLITE_USER_NAMESPACES")
    # A runtime whose boxes get user namespaces starts the old box as it was made.
    async with checked_runtime(home) as runtime:
        old = await runtime.get(box.id)
        assert old is not None
        await old.start()
        stdout, _, _ = await collect(await old.exec("cat", ["/proc/self/uid_map"]))
        assert stdout.split() == [b"0", b"0", b"4294967295"]
        new = await runtime.create(boxlite.BoxOptions())
        stdout, _, _ = await collect(await new.exec("cat", ["/proc/self/uid_map"]))
        assert stdout.split()[2] == b"65536", "new boxes get one"
        await new.stop()
        await runtime.remove(old.id, force=True)
