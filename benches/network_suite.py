"""A box's network against the host's own (suite 9 of ``python -m benches``)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boxlite
from tests import images

from .harness import Row, available_mib, latency_row, open_runtime, run_quietly, side_by_side


async def network(megabytes: int, connections: int, samples: int, burst: int, idle: int) -> list[Row]:
    """9. A box's network against the host's own, to the fake internet of the tests (a network
    namespace behind a veth pair, `tests/fake_internet.py`), with the same client (busybox
    wget) on both sides: throughput of one download, the cost of a connection (a loop of small
    downloads), and create + start + first exec with the default network against a box without
    one, one at a time and `burst` at once; an HTTPS request that carries a secret (the
    runtime completes it) against the same request relayed untouched, from one box with curl;
    a download through a published port against one on the host's loopback; the host
    memory `idle` idle boxes hold with a network against without; and how soon, and at what
    memory, a keeper serves a detached box once its program is gone, against a new program."""
    from tests.fake_internet import DNS, WEB, fake_internet

    busybox = shutil.which("busybox")
    if busybox is None:
        print("network: skipped: busybox is not installed")
        return []
    layout = str(images.busybox_layout())
    rows = []
    with tempfile.TemporaryDirectory() as scratch, fake_internet(Path(scratch) / "internet") as internet:
        site = Path(scratch) / "internet" / "site"
        with (site / "big").open("wb") as big:
            big.truncate(megabytes << 20)
        os.environ["BOXLITE_DNS_SERVERS"] = DNS
        with contextlib.ExitStack() as cleanup, open_runtime(f"{scratch}/home") as runtime:
            cleanup.callback(os.environ.pop, "BOXLITE_DNS_SERVERS", None)
            box = await runtime.create(boxlite.BoxOptions(rootfs_path=layout))
            download = ["wget", "-q", "-O", "/dev/null", f"http://{WEB}/big"]
            await run_quietly(busybox, *download)  # the file in the server's page cache, for both sides alike
            ours_rates, host_rates = [], []
            for _ in range(3):
                started = time.perf_counter()
                execution = await box.exec(download[0], download[1:])
                assert (await execution.wait()).exit_code == 0
                ours_rates.append(megabytes / (time.perf_counter() - started))
                started = time.perf_counter()
                await run_quietly(busybox, *download)
                host_rates.append(megabytes / (time.perf_counter() - started))
            rows.append(Row(f"box -> fake internet, one download ({megabytes} MiB)", "MiB/s", statistics.median(ours_rates), min(ours_rates),
                            "busybox wget on the host", statistics.median(host_rates), min(host_rates), 3, 0.8, True,
                            "the host's path is a veth pair; the box's adds the runtime's relay"))
            loop = f"i=0; while [ $i -lt {connections} ]; do wget -q -O /dev/null http://{WEB}/index.html || exit 1; i=$((i+1)); done"
            started = time.perf_counter()
            execution = await box.exec("sh", ["-c", loop])
            assert (await execution.wait()).exit_code == 0
            ours_each = (time.perf_counter() - started) * 1e6 / connections
            started = time.perf_counter()
            await run_quietly(busybox, "sh", "-c", loop.replace("wget", f"{busybox} wget"))
            host_each = (time.perf_counter() - started) * 1e6 / connections
            rows.append(Row("connection + small download, each", "us", ours_each, ours_each, "busybox wget on the host", host_each, host_each,
                            connections, 1.5, False, f"{connections} in a loop, each a new process, connection and HTTP request"))
            await box.stop()

            async def start(network: boxlite.NetworkSpec | None) -> None:
                created = await runtime.create(boxlite.BoxOptions(rootfs_path=layout, network=network))
                execution = await created.exec("/bin/true")
                await execution.wait()
                await created.stop()

            with_network, without = await side_by_side(lambda: start(None), lambda: start(boxlite.NetworkSpec(mode="disabled")), samples, 2)
            rows.append(latency_row("create + start + first exec + stop, network on", "the same, network disabled", with_network, without, 1.2))

            async def timed(network: boxlite.NetworkSpec | None) -> float:
                started = time.perf_counter()
                await start(network)
                return (time.perf_counter() - started) * 1e6

            bursts: dict[str, list[float]] = {"on": [], "off": []}
            for _ in range(2):
                for mode, spec in (("on", None), ("off", boxlite.NetworkSpec(mode="disabled"))):
                    bursts[mode] += await asyncio.gather(*(timed(spec) for _ in range(burst)))
            rows.append(latency_row(f"{burst} at once: create + start + first exec + stop, network on", "the same, network disabled", bursts["on"], bursts["off"], 1.2,
                                    "two bursts of each, alternated"))
            rows += await _secrets(runtime, internet.authority, connections)
            rows += await _udp_round_trips(runtime, WEB, connections)
            rows += await _published_port(runtime, layout, busybox, megabytes)
            rows += await _idle_memory(runtime, idle)
        rows += await _served_once_its_program_ends(Path(scratch) / "kept", layout, 3 if megabytes < 1024 else 10)
    return rows


# Opens a runtime on HOME; with MODE "create", starts a detached box whose main process serves
# HTTP on its port 8080, published on a port the host picks (printed); otherwise adopts the
# home's boxes ("open" printed). Closes its runtime once its stdin ends ("closing" printed).
HOLDS_THE_HOME = """
import asyncio, sys, boxlite

async def main() -> None:
    home, image, mode = sys.argv[1:]
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=home))
    if mode == "create":
        serve = "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www"
        options = boxlite.BoxOptions(rootfs_path=image, detach=True, auto_remove=False, ports=[(0, 8080)], entrypoint=["sh", "-c", serve])
        box = await runtime.create(options, name="kept")
        await box.start()
        print((await box.info()).network.published_ports[0].host_port, flush=True)
    else:
        print("open", flush=True)
    sys.stdin.read()
    print("closing", flush=True)
    runtime.close()

asyncio.run(main())
"""


async def _answers(port: int) -> None:
    """Returns once the box's server answers on host port ``port``."""
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            answer = await reader.read()
            writer.close()
            if answer.endswith(b"served\n"):
                return
        assert time.monotonic() < deadline, f"nothing answered on port {port}"
        await asyncio.sleep(0.005)


def _resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no resident size")


async def _served_once_its_program_ends(home: Path, layout: str, rounds: int) -> list[Row]:
    """A detached box's published port once the program that held its home closes its
    runtime: from that moment until the port answers again, served by the home's keeper
    (`python -m boxlite._keeper`, started by the runtime's guardian), against a user's way
    without one: from a new program's start (the keeper killed first, so nothing serves the
    box) until its runtime serves the port. Alternated, `rounds` of each; and the memory each
    holds while it serves (its resident size)."""
    from tests.leftovers import keepers

    async def holder(mode: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDS_THE_HOME, str(home), layout, mode, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    by_keeper, by_program = [], []
    keeper_mb, program_mb = [], []
    program = await holder("create")
    assert program.stdout is not None and program.stdin is not None
    port = int(await program.stdout.readline())
    try:
        await _answers(port)
        for _ in range(rounds):
            program.stdin.close()
            assert await program.stdout.readline() == b"closing\n"
            closing = time.perf_counter()
            await _answers(port)
            by_keeper.append((time.perf_counter() - closing) * 1e3)
            await program.wait()
            [keeper] = keepers(home)
            keeper_mb.append(_resident_mb(keeper))
            os.kill(keeper, signal.SIGKILL)
            while keepers(home):
                await asyncio.sleep(0.005)
            starting = time.perf_counter()
            program = await holder("adopt")
            assert program.stdout is not None and program.stdin is not None
            await _answers(port)
            by_program.append((time.perf_counter() - starting) * 1e3)
            assert await program.stdout.readline() == b"open\n"
            program_mb.append(_resident_mb(program.pid))
    finally:
        if program.stdin is not None and not program.stdin.is_closing():
            program.stdin.close()
        await program.wait()
        with contextlib.suppress(AssertionError):
            await _answers(port)  # served by the last program's keeper, which leaves for the runtime below
        with open_runtime(str(home)) as runtime:
            await runtime.remove("kept", force=True)
    return [
        Row("detached box's port served again once its program closed its runtime", "ms", statistics.median(by_keeper), max(by_keeper),
            "a new program that opens the home", statistics.median(by_program), max(by_program), rounds, None, False,
            "the home's keeper against the program a user would start; each a Python interpreter's start-up; p99 column: slowest"),
        Row("memory of what serves a detached box once its program ended", "MB", statistics.median(keeper_mb), max(keeper_mb),
            "a program with a runtime open on the home", statistics.median(program_mb), max(program_mb), rounds, None, False,
            "resident size while it serves; p99 column: largest"),
    ]


# Times COUNT round trips of a 100-byte datagram to the UDP echo server at ADDRESS:PORT, one
# after another from one socket, and prints each in microseconds.
UDP_ROUND_TRIPS = """
import socket, sys, time
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.settimeout(5)
probe.connect((sys.argv[1], int(sys.argv[2])))
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    probe.send(bytes(100))
    probe.recv(200)
    print((time.perf_counter() - started) * 1e6)
"""


async def _udp_round_trips(runtime: boxlite.Boxlite, address: str, count: int) -> list[Row]:
    """UDP round trips from a box (`host://`, for its python3) to the fake internet's echo
    server, against the same script on the host."""
    from tests.fake_internet import ECHO_PORT

    arguments = [UDP_ROUND_TRIPS, address, str(ECHO_PORT), str(count)]
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE))
    execution = await box.exec("python3", ["-c", *arguments])
    output = b"".join([chunk async for chunk in execution.stdout(text=False)])
    assert (await execution.wait()).exit_code == 0
    ours = [float(line) for line in output.split()]
    host = await asyncio.create_subprocess_exec(sys.executable, "-c", *arguments, stdout=asyncio.subprocess.PIPE)
    theirs = [float(line) for line in (await host.communicate())[0].split()]
    await box.stop()
    return [latency_row("UDP round trip to the fake internet, 100 bytes", "the same from the host", ours, theirs, None, f"{count} one after another from one socket")]


PUBLISHED_PORT_ROUNDS = 9


async def _published_port(runtime: boxlite.Boxlite, layout: str, busybox: str, megabytes: int) -> list[Row]:
    """One download from busybox httpd in a box through its published port (the runtime
    relays it) against the same download from busybox httpd on the host's loopback, with the
    same client (busybox wget on the host), alternated. The box gets as many CPUs as the host
    has, as the host's server does: the comparison is of the two paths, not of a box's default
    CPU limit (1). Downloads on this VM swing by 2× from one to the next, so the figure is the
    median of several rounds. In the same rounds, the floor of any relay: the host's download
    through a second loopback connection, joined to the first by splice(2) in two threads
    (``_splice_relay``), with no box."""
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=layout, ports=[(0, 8080)], cpus=os.cpu_count()))
    await box.start()
    made = await box.exec("sh", ["-c", f"mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={megabytes} 2>/dev/null"])
    assert (await made.wait()).exit_code == 0
    server = await box.exec("httpd", ["-f", "-p", "8080", "-h", "/www"])
    network = (await box.info()).network
    assert network is not None and network.published_ports
    published = network.published_ports[0].host_port
    with tempfile.TemporaryDirectory() as www:
        with (Path(www) / "big").open("wb") as big:
            big.truncate(megabytes << 20)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            direct = probe.getsockname()[1]
        host_server = subprocess.Popen([busybox, "httpd", "-f", "-p", f"127.0.0.1:{direct}", "-h", www])
        floor_listener = _splice_relay(direct)
        floor = floor_listener.getsockname()[1]

        async def download(port: int) -> bool:
            process = await asyncio.create_subprocess_exec(busybox, "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/big")
            return await process.wait() == 0

        try:
            for port in (published, direct, floor):  # untimed: until each server answers, and with its file in the page cache
                deadline = time.monotonic() + 10
                while not await download(port):
                    assert time.monotonic() < deadline, f"nothing answered on port {port}"
                    await asyncio.sleep(0.05)
            rates: dict[int, list[float]] = {published: [], direct: [], floor: []}
            for _ in range(PUBLISHED_PORT_ROUNDS):
                for port in (published, direct, floor):
                    started = time.perf_counter()
                    assert await download(port), f"a download from port {port} failed"
                    rates[port].append(megabytes / (time.perf_counter() - started))
        finally:
            floor_listener.close()
            host_server.kill()
            host_server.wait()
    await server.kill()
    await box.stop()
    name, ours = f"published port -> box, one download ({megabytes} MiB)", (statistics.median(rates[published]), min(rates[published]))
    return [Row(name, "MiB/s", *ours, "busybox httpd on the host's loopback", statistics.median(rates[direct]), min(rates[direct]), PUBLISHED_PORT_ROUNDS, 0.8, True,
                f"busybox wget on the host both ways, the box with {os.cpu_count()} CPUs; p99 column: slowest of {PUBLISHED_PORT_ROUNDS}"),
            Row(name, "MiB/s", *ours, "host's download relayed, splice(2)", statistics.median(rates[floor]), min(rates[floor]), PUBLISHED_PORT_ROUNDS, None, True,
                "a second loopback connection joined to the first, as any relay must, with no box: the floor of a published port")]


def _splice_relay(target: int) -> socket.socket:
    """A listener on the host's loopback whose connections are each joined, by splice(2)
    through a 1 MiB pipe each way in two threads, to one to ``target``: the least a relay
    does. Serves one connection at a time until the listener is closed."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, sink: socket.socket) -> None:
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
            while taken := os.splice(source.fileno(), write_end, 1 << 20):
                while taken:
                    taken -= os.splice(read_end, sink.fileno(), taken)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            os.close(read_end)
            os.close(write_end)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            with client, socket.create_connection(("127.0.0.1", target)) as server:
                pumps = [threading.Thread(target=pump, args=(client, server)), threading.Thread(target=pump, args=(server, client))]
                for each in pumps:
                    each.start()
                for each in pumps:
                    each.join()

    threading.Thread(target=serve, daemon=True).start()
    return listener


async def _settled_available_mib() -> float:
    """MemAvailable once it holds still (the kernel frees a stopped box's namespaces a while
    later), with the page cache dropped first (as root), so files read or written meanwhile
    do not move it."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    last = available_mib()
    for _ in range(20):
        await asyncio.sleep(0.5)
        now, last = last, available_mib()
        if abs(now - last) < 0.25:
            break
    return last


async def _idle_memory(runtime: boxlite.Boxlite, count: int) -> list[Row]:
    """Host memory each idle box holds (MemAvailable's drop, so the kernel's share of its
    network namespace, links and rules counts too) with the default network against the same
    boxes with networking disabled; twice each, alternated."""
    drops: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(2):
        for mode, spec in (("on", None), ("off", boxlite.NetworkSpec(mode="disabled"))):
            await (await runtime.create(boxlite.BoxOptions(network=spec))).stop()  # what one box leaves made ahead of need
            before = await _settled_available_mib()
            boxes = [await runtime.create(boxlite.BoxOptions(network=spec)) for _ in range(count)]
            for box in boxes:
                await box.start()
            drops[mode].append((before - await _settled_available_mib()) * 1024 / count)
            for box in boxes:
                await box.stop()
    extra = statistics.median(drops["on"]) - statistics.median(drops["off"])
    return [Row(f"host memory per idle box, network on ({count} boxes)", "KiB", statistics.median(drops["on"]), max(drops["on"]),
                "the same boxes, network disabled", statistics.median(drops["off"]), max(drops["off"]), 2, None, False,
                f"MemAvailable's drop; the network's share {extra:+.0f} KiB per box (target: <= 1 MB more); p99 column: larger of 2")]


async def _secrets(runtime: boxlite.Boxlite, authority: Path, requests: int) -> list[Row]:
    """HTTPS requests from a box's curl that carry a secret (its header's placeholder replaced
    by the runtime, over TLS the runtime makes both ways) against the same requests to another
    name of the same server, which the runtime relays untouched; each a new process and
    connection. Needs the fake internet and curl on the host (the box is `host://`)."""
    if shutil.which("curl") is None:
        print("network: secrets rows skipped: curl is not installed")
        return []
    os.environ["SSL_CERT_FILE"] = str(authority)
    try:
        secret = boxlite.Secret("bench", "sk-bench-value", hosts=["api.secret.test"])
        box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[secret]))
        await box.start()  # the runtime reads its trust store as the box starts
    finally:
        os.environ.pop("SSL_CERT_FILE", None)
    # Both verify against a bundle of the same size: the box's, which holds its authority, and
    # the same bundle with the fake internet's authority added (OpenSSL's loading of a bundle
    # is a good part of each request).
    await box.copy_in(str(authority), "/root/internet.pem")
    made = await box.exec("sh", ["-c", "cat /etc/ssl/certs/ca-certificates.crt /root/internet.pem > /root/bundle.pem"])
    assert (await made.wait()).exit_code == 0
    each = {}
    for name, options in (("secret", "https://api.secret.test/x"), ("relayed", "--cacert /root/bundle.pem https://plain.secret.test/x")):
        loop = f'i=0; while [ $i -lt {requests} ]; do curl -sf -o /dev/null -H "Authorization: Bearer $BOXLITE_SECRET_BENCH" {options} || exit 1; i=$((i+1)); done'
        started = time.perf_counter()
        execution = await box.exec("sh", ["-c", loop])
        assert (await execution.wait()).exit_code == 0
        each[name] = (time.perf_counter() - started) * 1e6 / requests
    await box.stop()
    return [Row("HTTPS request carrying a secret, each", "us", each["secret"], each["secret"], "the same request relayed untouched", each["relayed"], each["relayed"],
                requests, None, False, f"{requests} in a loop, each a new curl, connection and TLS handshake")]
