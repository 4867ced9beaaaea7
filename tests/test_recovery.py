"""A runtime whose process is killed (kill -9) in the middle of its work, and the next runtime on
its home: dead boxes are settled, stale records, cgroups and sockets cleaned, live detached boxes
kept and usable; a child the program forked holds nothing of the runtime's."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import boxlite

from .conftest import collect, logged, wait_until
from .leftovers import box_cgroups, box_processes, guardians
from .test_network import UDP_ECHO

SETUP = """
import asyncio, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    removed = await runtime.create(boxlite.BoxOptions(), name="removed-on-stop")
    kept = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="kept")
    lasting = await runtime.create(boxlite.BoxOptions(detach=True, auto_remove=False), name="lasting")
    for box in (removed, kept, lasting):
        await box.start()
    await lasting.exec("sh", ["-c", "echo survived > /root/proof"])
    await removed.exec("sleep", ["600"])  # in the middle of a command
    await kept.exec("sh", ["-c", "trap '' TERM; sleep 600"])  # one that would outlast a graceful end
    print("ready", flush=True)
    while True:  # and of creating and starting boxes, when the kill comes
        box = await runtime.create(boxlite.BoxOptions())
        await box.start()
        print("started", flush=True)

asyncio.run(main())
"""


def run_until_killed(home: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", SETUP, str(home)], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        for _ in range(3):  # killed while it goes on creating and starting boxes
            assert process.stdout.readline().strip() == "started"
        process.send_signal(signal.SIGKILL)


async def test_the_next_runtime_reconciles_after_a_kill_9(home: Path) -> None:
    cgroups_before = box_cgroups()
    runtime: boxlite.Boxlite | None = None
    try:
        # Inside the `try`: the detached box lives on whatever fails from here.
        run_until_killed(home)
        runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
        infos = {info.name: info for info in await runtime.list_info()}
        assert "removed-on-stop" not in infos
        assert infos["kept"].state.status == "stopped"
        assert infos["lasting"].state.status == "running"
        for name, info in infos.items():
            if name != "lasting":
                assert info.state.status in ("configured", "stopped"), (name, info.state.status)
        # Only the box that lives on keeps its cgroups and its init's socket.
        lasting_id = infos["lasting"].id
        assert {group.name for group in box_cgroups() - cgroups_before} == {lasting_id}
        sockets = {path.parent.name for path in (home / "boxes").glob("*/init.sock")}
        assert sockets == {lasting_id}
        lasting = await runtime.get("lasting")
        assert lasting is not None
        stdout, _, status = await collect(await lasting.exec("cat", ["/root/proof"]))
        assert (stdout, status.exit_code) == (b"survived\n", 0)
        kept = await runtime.get("kept")
        assert kept is not None
        stdout, _, _ = await collect(await kept.exec("echo", ["restarted"]))
        assert stdout == b"restarted\n"
        await kept.stop()
        await lasting.stop()
        for info in await runtime.list_info():
            await runtime.remove(info.id, force=True)
    finally:
        if runtime is not None:
            runtime.close()
        for pid in box_processes(home):
            os.kill(pid, signal.SIGKILL)


async def test_what_a_killed_create_or_start_left_goes_and_an_unreadable_record_is_reported(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="whole")
    runtime.close()
    # What a runtime killed in the middle of a create leaves (the record is written last), and a
    # record that a disk fault made unreadable.
    half_made = home / "boxes" / "HalfMade0000"
    (half_made / "upper").mkdir(parents=True)
    garbled = home / "boxes" / "Garbled00000"
    garbled.mkdir()
    (garbled / "box.json").write_text('{"id": "Garbled00000", "sta')
    # And a start cut short: the init's socket made, the record not yet saying it runs.
    stale_socket = home / "boxes" / box.id / "init.sock"
    stale_socket.touch()
    caplog.set_level(logging.INFO, logger="boxlite")
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        assert [info.name for info in await runtime.list_info()] == ["whole"]
        await logged(caplog, "Garbled00000 is left out")
        assert not half_made.exists()
        assert not stale_socket.exists()
        assert (garbled / "box.json").exists(), "an unreadable record is kept for whoever can mend it"
        whole = await runtime.get(box.id)
        assert whole is not None
        stdout, _, _ = await collect(await whole.exec("echo", ["carried on"]))
        assert stdout == b"carried on\n"
        await runtime.remove(box.id, force=True)
    finally:
        runtime.close()


FORKS_THEN_WAITS = """
import asyncio, multiprocessing, sys, time, boxlite

def linger() -> None:
    time.sleep(600)

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    tied = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="tied")
    lasting = await runtime.create(boxlite.BoxOptions(detach=True, auto_remove=False, ports=[(0, 8080)]), name="lasting")
    for box in (tied, lasting):
        await box.start()
    await lasting.exec("sleep", ["600"])  # a command that ends with its runtime
    # A child forked without exec: a copy of every descriptor of the program's, as it forks.
    child = multiprocessing.get_context("fork").Process(target=linger)
    child.start()
    print(child.pid, (await lasting.info()).network.published_ports[0].host_port, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_forked_child_that_outlives_its_program_holds_nothing_of_its_runtime(home: Path) -> None:
    """The child's copies of the runtime's descriptors are closed as it is forked
    (``rust/core/src/fork.rs``): once the program is killed, its home opens, its tied box and
    its command in the detached box end, its guardian hands the detached box to a keeper, and
    the box's port is published again where it was, while the child lives on."""
    with subprocess.Popen([sys.executable, "-c", FORKS_THEN_WAITS, str(home)], stdout=subprocess.PIPE, text=True) as program:
        assert program.stdout is not None
        child, port = map(int, program.stdout.readline().split())
        [guardian] = guardians()
        program.kill()
    runtime: boxlite.Boxlite | None = None
    try:
        assert os.path.exists(f"/proc/{child}"), "the forked child lives on"
        await wait_until(lambda: guardian not in guardians(), what="the guardian still waits: the child holds the runtime's end of its socket")
        runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))  # the child holds no lock
        tied = await runtime.get_info("tied")
        assert tied is not None and tied.state.status == "stopped", tied
        lasting = await runtime.get("lasting")
        assert lasting is not None
        assert (await lasting.info()).network.published_ports[0].host_port == port, "the child holds the port's listener"

        async def commands() -> bytes:
            stdout, _, _ = await collect(await lasting.exec("sh", ["-c", "cat /proc/[0-9]*/cmdline"]))
            return stdout

        deadline = time.monotonic() + 10
        while b"sleep\x00600" in await commands():
            assert time.monotonic() < deadline, "the dead program's command lives on in the detached box"
            await asyncio.sleep(0.05)
        await lasting.stop()
        for info in await runtime.list_info():
            await runtime.remove(info.id, force=True)
    finally:
        os.kill(child, signal.SIGKILL)
        if runtime is not None:
            runtime.close()
        for pid in box_processes(home):
            os.kill(pid, signal.SIGKILL)


STARTS_THEN_WAITS = """
import asyncio, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    lasting = await runtime.create(boxlite.BoxOptions(detach=True, auto_remove=False), name="lasting")
    tied = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="tied")
    for box in (lasting, tied):
        await box.start()
    print("started", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_ctrl_c_ends_the_program_and_its_tied_boxes_never_a_detached_one(home: Path) -> None:
    """Ctrl-C (or coreutils' ``timeout``) signals the terminal's foreground process group: the
    program's, which no box's processes belong to. The program ends, and its tied box with it;
    the detached box runs on."""
    with subprocess.Popen([sys.executable, "-c", STARTS_THEN_WAITS, str(home)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True) as program:
        assert program.stdout is not None
        assert program.stdout.readline() == "started\n"
        os.killpg(program.pid, signal.SIGINT)
        program.wait(timeout=60)
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        tied = await runtime.get_info("tied")
        assert tied is not None and tied.state.status == "stopped", tied
        lasting = await runtime.get("lasting")
        assert lasting is not None and (await lasting.info()).state.status == "running"
        stdout, _, _ = await collect(await lasting.exec("echo", ["still here"]))
        assert stdout == b"still here\n"
        for info in await runtime.list_info():
            await runtime.remove(info.id, force=True)
    finally:
        runtime.close()


FORKS_WHILE_AN_EXECUTION_RUNS = """
import asyncio, multiprocessing, sys, time, boxlite

def linger() -> None:
    time.sleep(60)

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    box = await runtime.create(boxlite.BoxOptions())
    execution = await box.exec("cat")
    stdin = execution.stdin()
    await stdin.send_input(b"hello\\n")
    # A child forked without exec while the execution runs: a copy of every descriptor.
    child = multiprocessing.get_context("fork").Process(target=linger)
    child.start()
    print(child.pid, flush=True)
    await stdin.close()
    chunks = [chunk async for chunk in execution.stdout(text=False)]
    print(repr(b"".join(chunks)), (await execution.wait()).exit_code, child.is_alive(), flush=True)
    child.kill()
    await runtime.remove(box.id, force=True)
    runtime.close()

asyncio.run(main())
"""


async def test_a_forked_child_keeps_no_end_of_an_executions_pipes(home: Path) -> None:
    """The runtime's ends of an execution's pipes are its own (``rust/core/src/fork.rs``): a
    child forked while the execution runs closes its copies at once, so the box's ``cat``
    reads the end of its stdin when the program closes it, while the child lives on (with the
    child's copy it would wait for the child's end)."""
    with subprocess.Popen([sys.executable, "-c", FORKS_WHILE_AN_EXECUTION_RUNS, str(home)], stdout=subprocess.PIPE, text=True) as program:
        assert program.stdout is not None
        child = int(program.stdout.readline())
        try:
            # `cat` ends with its stdin, long before the child's 60 s (were the child to hold
            # the pipe, `cat` would end with the child, no longer alive then).
            assert program.stdout.readline().split() == ["b'hello\\n'", "0", "True"]
            assert program.wait(timeout=60) == 0
        finally:
            program.kill()
            if os.path.exists(f"/proc/{child}"):
                os.kill(child, signal.SIGKILL)


FORKS_WHILE_A_CONNECTION_IS_RELAYED = """
import asyncio, multiprocessing, socket, sys, time, boxlite

# Echoes a byte, then resets the connection at the next one (SO_LINGER 0).
SERVER = '''
import socket, struct
server = socket.socket()
server.bind(("0.0.0.0", 8080))
server.listen()
print("listening", flush=True)
connection, _ = server.accept()
connection.sendall(connection.recv(1))
connection.recv(1)
connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
connection.close()
'''

def linger() -> None:
    time.sleep(60)

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    box = await runtime.create(boxlite.BoxOptions(ports=[(0, 8080)]))
    await box.start()
    server = await box.exec("python3", ["-c", SERVER])
    said = ""
    async for chunk in server.stdout(text=True):
        said += chunk
        if "listening" in said:
            break
    port = (await box.info()).network.published_ports[0].host_port
    client = socket.create_connection(("127.0.0.1", port), timeout=20)
    client.sendall(b"a")
    assert client.recv(1) == b"a"  # the runtime relays the connection both ways
    # A child forked without exec while the connection is relayed.
    child = multiprocessing.get_context("fork").Process(target=linger)
    child.start()
    client.sendall(b"b")
    try:
        outcome = "closed" if client.recv(1) == b"" else "data"
    except ConnectionResetError:
        outcome = "closed"
    except socket.timeout:
        outcome = "open"
    print(outcome, child.is_alive(), flush=True)
    child.kill()
    await runtime.remove(box.id, force=True)
    runtime.close()

asyncio.run(main())
"""


async def test_a_forked_child_keeps_no_relayed_connection(home: Path) -> None:
    """The runtime's sockets of a relayed connection are its own too: when the box resets its
    end, the runtime closes the host's end, and the host's client sees it at once, while a
    child forked during the connection lives on (with the child's copy, it would see nothing
    until the child's end)."""
    result = subprocess.run([sys.executable, "-c", FORKS_WHILE_A_CONNECTION_IS_RELAYED, str(home)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["closed", "True"], result.stdout


#: For a program run as a script: waits until a box's command has printed ``word`` (a line
#: may come in more than one chunk).
SAID = """
async def said(execution, word: str) -> None:
    output = ""
    async for chunk in execution.stdout(text=True):
        output += chunk
        if word in output:
            return
    raise AssertionError(f"the box's command ended without saying {word!r}: {output!r}")
"""


FORKS_WHILE_A_BOX_HAS_A_NETWORK = """
import asyncio, multiprocessing, os, socket, sys, boxlite

SO_NETNS_COOKIE = 71  # asm-generic/socket.h

def netns_cookie(fd: int) -> bytes:
    with socket.socket(fileno=os.dup(fd)) as held:
        return held.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)

def holdings() -> None:
    with socket.socket() as own:
        try:
            ours = netns_cookie(own.fileno())
        except OSError as error:  # before Linux 5.14
            print("unsupported", error, flush=True)
            return
    foreign, tun = [], []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target == "/dev/net/tun":
            tun.append(target)
        elif target.startswith("socket:") and netns_cookie(int(name)) != ours:
            foreign.append(target)
    print("foreign", len(foreign), "tun", len(tun), flush=True)

""" + SAID + """
async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    box = await runtime.create(boxlite.BoxOptions(ports=[(0, 5353, "udp")]))
    await box.start()
    server = await box.exec("python3", ["-c", sys.argv[2]])  # a UDP echo server on the box's port 5353
    await said(server, "listening")
    # A datagram flow into the box, and a connection out of it (DNS over TCP, which the
    # runtime answers), both live while the child is forked.
    port = (await box.info()).network.published_ports[0].host_port
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(20)
    client.sendto(b"ping", ("127.0.0.1", port))
    assert client.recvfrom(100)[0].startswith(b"PING")
    out = await box.exec("python3", ["-c", "import socket, time; c = socket.create_connection(('10.0.2.3', 53), timeout=10); print('connected', flush=True); time.sleep(60)"])
    await said(out, "connected")
    # And a tunnel's connection, which the program holds.
    accepting = await box.exec("python3", ["-c", "import socket, time; s = socket.create_server(('127.0.0.1', 8081)); print('listening', flush=True); c, _ = s.accept(); time.sleep(60)"])
    await said(accepting, "listening")
    connection = await (await box.network.tunnel(8081)).connect()
    child = multiprocessing.get_context("fork").Process(target=holdings)
    child.start()
    child.join()
    await connection.close()
    await runtime.remove(box.id, force=True)
    runtime.close()

asyncio.run(main())
"""


async def test_a_forked_child_holds_nothing_of_a_boxs_network(home: Path) -> None:
    """The box's interface, the listener its connections out are diverted to, a connection
    being served, the sockets a published UDP port's flows use in the box and a tunnel's
    connection are the runtime's process's alone: a child forked while they live holds no descriptor of the box's network
    namespace (which would keep it, its interface and its listener after the box's end) and
    no tun device. A socket's namespace is told by its ``SO_NETNS_COOKIE``."""
    result = subprocess.run([sys.executable, "-c", FORKS_WHILE_A_BOX_HAS_A_NETWORK, str(home), UDP_ECHO], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if result.stdout.startswith("unsupported"):
        pytest.skip(f"this kernel tells no socket's network namespace (SO_NETNS_COOKIE, Linux 5.14): {result.stdout.strip()}")
    assert result.stdout.split() == ["foreign", "0", "tun", "0"], result.stdout
