"""Boxes' networks, with real traffic to a fake internet on this machine (``fake_internet``):
the default outbound network, loopback-only boxes, every allow-list form, the addresses no box
reaches unlisted, the bypasses a box might try, and what is left behind."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import boxlite

from .conftest import checked_runtime, collect, wait_until
from .leftovers import box_processes
from .fake_internet import CLOSED_UDP_PORT, DNS, ECHO_PORT, OTHER_WEB, PROBE, PROBE_GREETING, SERVED_VARIABLE, WEB, FakeInternet, fake_internet, served

BODY = "hello from the fake internet"


@pytest.fixture(scope="module")
def internet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeInternet]:
    if os.geteuid() != 0:
        net = served()
        if net is None:
            pytest.skip(f"only root builds the fake internet: as root, run `python -m tests.fake_internet --serve DIR` and set {SERVED_VARIABLE}=DIR")
        yield net
        return
    with fake_internet(tmp_path_factory.mktemp("internet")) as net:
        yield net


@pytest.fixture
async def net_runtime(home: Path, internet: FakeInternet, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[boxlite.Boxlite]:
    """A runtime whose boxes' queries go to the fake internet's DNS server."""
    monkeypatch.setenv("BOXLITE_DNS_SERVERS", DNS)
    async with checked_runtime(home) as rt:
        yield rt


async def run(box: boxlite.Box, *argv: str) -> tuple[int, str]:
    stdout, stderr, status = await collect(await box.exec(argv[0], list(argv[1:])))
    return status.exit_code, (stdout + stderr).decode()


async def fetch(box: boxlite.Box, url: str) -> tuple[int, str]:
    return await run(box, "wget", "-q", "-O", "-", url)


async def make_box(runtime: boxlite.Boxlite, image: str, network: boxlite.NetworkSpec | None = None, **options: object) -> boxlite.Box:
    return await runtime.create(boxlite.BoxOptions(rootfs_path=image, network=network, **options))  # type: ignore[arg-type]


async def test_default_network_reaches_the_internet_by_address_and_name(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await make_box(net_runtime, busybox_image)
    code, resolv = await run(box, "cat", "/etc/resolv.conf")
    assert (code, resolv) == (0, "nameserver 10.0.2.3\n")
    assert await fetch(box, f"http://{WEB}/index.html") == (0, BODY + "\n")
    code, answer = await run(box, "nslookup", "allowed.test")
    assert code == 0 and WEB in answer, answer
    assert await fetch(box, "http://other.test/index.html") == (0, BODY + "\n")
    info = await box.info()
    assert info.network is not None and info.network.outbound.mode == "enabled" and info.network.allow_net == []
    metrics = await box.metrics()
    assert metrics.network_tcp_connections == 2 and metrics.network_tcp_errors == 0
    assert metrics.network_bytes_received is not None and metrics.network_bytes_received > len(BODY)
    await box.stop()


@pytest.mark.parametrize("spec", ["disabled", "security"])
async def test_a_box_without_network_has_loopback_only(net_runtime: boxlite.Boxlite, busybox_image: str, spec: str) -> None:
    if spec == "disabled":
        box = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(mode="disabled"))
    else:
        security = boxlite.SecurityOptions(network_enabled=False)
        box = await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, advanced=boxlite.AdvancedBoxOptions(security=security)))
    code, links = await run(box, "ip", "-o", "link")
    assert code == 0 and [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
    assert (await fetch(box, f"http://{WEB}/"))[0] != 0
    assert (await box.info()).network.outbound.mode == "disabled"  # type: ignore[union-attr]
    assert (await box.metrics()).network_tcp_connections is None
    await box.stop()


async def test_host_services_metadata_and_the_box_link_are_out_of_reach(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    # A service on the host, on every address, that greets whoever connects: no box hears it.
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"host-secret\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "0.0.0.0", 0)
    port = server.sockets[0].getsockname()[1]
    host_addresses = {"127.0.0.1", "198.51.100.1"}
    host_addresses.update(address for address in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split() if ":" not in address)
    async with server:
        box = await make_box(net_runtime, busybox_image)
        for address in sorted(host_addresses) + ["169.254.169.254", "10.0.2.2"]:
            _, output = await run(box, "nc", "-w", "3", address, str(port))
            assert "host-secret" not in output, f"the box reached {address}:{port}"
        # 127.0.0.1 is the box's own loopback, which never leaves the box.
        assert (await box.metrics()).network_tcp_errors == len(host_addresses) + 1
        # Listed by IP, the host is reachable.
        listed = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=["198.51.100.1"]))
        _, output = await run(listed, "nc", "-w", "3", "198.51.100.1", str(port))
        assert "host-secret" in output
        await asyncio.gather(box.stop(), listed.stop())


async def test_ip_and_cidr_rules(net_runtime: boxlite.Boxlite, busybox_image: str, internet: FakeInternet) -> None:
    box = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=[WEB]))
    assert await fetch(box, f"http://{WEB}/") == (0, BODY + "\n")
    assert (await fetch(box, f"http://{OTHER_WEB}/"))[0] != 0
    # Only IPs are listed: no name resolves, and none reached the upstream server.
    before = len(internet.queried())
    code, _ = await run(box, "nslookup", "allowed.test")
    assert code != 0 and len(internet.queried()) == before
    cidr = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=["203.0.113.0/24"]))
    assert await fetch(cidr, f"http://{OTHER_WEB}/") == (0, BODY + "\n")
    assert (await fetch(cidr, f"http://{WEB}/"))[0] != 0
    await asyncio.gather(box.stop(), cidr.stop())


async def test_a_listed_name_reaches_only_what_it_resolved_to(net_runtime: boxlite.Boxlite, busybox_image: str, internet: FakeInternet) -> None:
    box = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=["allowed.test"]))
    # Before the name is resolved its address is as unlisted as any.
    assert (await fetch(box, f"http://{WEB}/"))[0] != 0
    assert await fetch(box, "http://allowed.test/") == (0, BODY + "\n")
    # Unlisted names do not resolve, and their queries never leave, whichever server is asked.
    before = len(internet.queried())
    for argv in (["nslookup", "other.test"], ["nslookup", "other.test", DNS]):
        code, answer = await run(box, *argv)
        assert code != 0 and OTHER_WEB not in answer, answer
    assert len(internet.queried()) == before
    # An allowed name in the Host header does not open another address.
    code, _ = await run(box, "wget", "-q", "-O", "-", "--header", "Host: allowed.test", f"http://{OTHER_WEB}/")
    assert code != 0
    # DNS over TCP to the upstream server reaches the runtime's resolver too: NXDOMAIN.
    query = "\\000\\034\\022\\064\\001\\000\\000\\001\\000\\000\\000\\000\\000\\000\\005other\\004test\\000\\000\\001\\000\\001"
    code, answer = await run(box, "sh", "-c", f"printf '{query}' | nc -w 3 {DNS} 53 | od -An -tx1")
    assert answer.split()[:6] == ["00", "1c", "12", "34", "81", "83"], answer
    assert len(internet.queried()) == before
    await box.stop()


async def test_wildcards_and_ports(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=["*.example.test", "allowed.test:8080"]))
    assert await fetch(box, "http://www.example.test/") == (0, BODY + "\n")
    code, _ = await run(box, "nslookup", "example.test")
    assert code != 0, "a wildcard covers names below the suffix only"
    assert await fetch(box, "http://allowed.test:8080/") == (0, BODY + "\n")
    await box.stop()
    # allowed.test and www.example.test share an address: port rules are per rule, so a box
    # listing allowed.test on 8080 only cannot reach its port 80.
    only_port = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=["allowed.test:8080"]))
    assert await fetch(only_port, "http://allowed.test:8080/") == (0, BODY + "\n")
    assert (await fetch(only_port, "http://allowed.test/"))[0] != 0
    await only_port.stop()


# Sends SIZE bytes to ADDRESS:PORT over UDP and prints what came back ("echo <bytes>", if it
# is what was sent) or the error the box's socket got.
UDP_PROBE = """
import socket, sys
address, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = bytes(index % 251 for index in range(size))
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.settimeout(5)
probe.connect((address, port))
probe.send(payload)
try:
    answer = probe.recv(65536)
    print("echo", len(answer) if answer == payload else answer[:20])
except OSError as error:
    print(type(error).__name__, error.errno)
"""


async def udp(box: boxlite.Box, address: str, port: int = ECHO_PORT, size: int = 5) -> str:
    code, output = await run(box, "python3", "-c", UDP_PROBE, address, str(port), str(size))
    assert code == 0, output
    return output.strip()


async def test_udp_goes_where_the_policy_allows_and_is_refused_at_once_elsewhere(net_runtime: boxlite.Boxlite) -> None:
    """UDP follows the policy TCP does: an open list reaches any address but the ones no box
    reaches unlisted, IP rules reach theirs, and a listed name the addresses it resolved to. A
    refused datagram is answered at once (EHOSTUNREACH), as is one to a closed port
    (ECONNREFUSED); a datagram larger than any link's MTU goes and comes back whole."""
    host_image = boxlite.HOST_IMAGE
    box = await net_runtime.create(boxlite.BoxOptions(image=host_image))
    assert await udp(box, WEB) == "echo 5"
    assert await udp(box, OTHER_WEB, size=60_000) == "echo 60000"
    assert await udp(box, WEB, CLOSED_UDP_PORT) == "ConnectionRefusedError 111"
    for unlisted in ("198.51.100.1", "169.254.169.254", "10.0.2.2", "127.0.0.53"):
        expected = "ConnectionRefusedError 111" if unlisted.startswith("127.") else "OSError 113"
        assert await udp(box, unlisted) == expected, unlisted
    metrics = await box.metrics()
    assert metrics.network_bytes_sent >= 60_010 and metrics.network_bytes_received >= 60_005
    listed = await net_runtime.create(boxlite.BoxOptions(image=host_image, network=boxlite.NetworkSpec(allow_net=[WEB])))
    assert await udp(listed, WEB) == "echo 5"
    assert await udp(listed, OTHER_WEB) == "OSError 113"
    named = await net_runtime.create(boxlite.BoxOptions(image=host_image, network=boxlite.NetworkSpec(allow_net=["other.test"])))
    assert await udp(named, OTHER_WEB) == "OSError 113", "before the name is resolved, its address is as unlisted as any"
    code, output = await run(named, "python3", "-c", "import socket; print(socket.gethostbyname('other.test'))")
    assert (code, output.strip()) == (0, OTHER_WEB)
    assert await udp(named, OTHER_WEB) == "echo 5"
    assert await udp(named, WEB) == "OSError 113"
    await asyncio.gather(box.stop(), listed.stop(), named.stop())


async def test_pip_installs_from_a_package_index_on_the_allow_list(net_runtime: boxlite.Boxlite, internet: FakeInternet) -> None:
    """The first thing an agent does in a box: a venv (Debian's Python, from the host's /usr)
    and ``pip install`` from an index the box may reach by name, resolving a dependency."""
    box = await net_runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, network=boxlite.NetworkSpec(allow_net=["pypi.test"])))
    script = (
        "/usr/bin/python3 -m venv /tmp/venv && "
        f"/tmp/venv/bin/pip install -q --disable-pip-version-check --no-cache-dir --index-url http://pypi.test/simple/ --trusted-host pypi.test {PROBE} && "
        "/tmp/venv/bin/python -c 'import boxlite_probe; print(boxlite_probe.GREETING)'"
    )
    assert await run(box, "sh", "-c", script) == (0, PROBE_GREETING + "\n")
    assert "pypi.test" in internet.queried()
    download = ["download", "-q", "--disable-pip-version-check", "--retries", "0", "--no-deps", "-d", "/tmp/d"]
    code, output = await run(box, "/tmp/venv/bin/pip", *download, "--index-url", f"http://{OTHER_WEB}/simple/", "--trusted-host", OTHER_WEB, PROBE)
    assert code != 0, f"an index the allow-list does not name stays out of reach: {output}"
    await box.stop()


async def test_box_root_with_net_admin_cannot_change_its_network(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    capabilities = boxlite.ContainerCapabilities(add=["NET_ADMIN"])
    options = boxlite.BoxOptions(rootfs_path=busybox_image, network=boxlite.NetworkSpec(allow_net=[WEB]), advanced=boxlite.AdvancedBoxOptions(capabilities=capabilities))
    box = await net_runtime.create(options)
    for argv in (["ip", "addr", "add", "203.0.113.99/24", "dev", "eth0"], ["ip", "route", "del", "default"], ["ip", "link", "set", "eth0", "down"], ["ip", "link", "add", "x", "type", "dummy"]):
        code, output = await run(box, *argv)
        assert code != 0, f"{argv} succeeded in the box: {output}"
    assert (await fetch(box, f"http://{OTHER_WEB}/"))[0] != 0
    assert await fetch(box, f"http://{WEB}/") == (0, BODY + "\n")
    await box.stop()


@pytest.mark.parametrize("entry", ["300.1.1.1", "10.0.0.0/33", "exa mple.test", "*.", "host:0", "host:http", "a..b"])
async def test_bad_allow_net_entries_are_refused_and_leave_nothing(net_runtime: boxlite.Boxlite, busybox_image: str, home: Path, entry: str) -> None:
    with pytest.raises(boxlite.InvalidArgumentError, match="allow_net"):
        await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=[entry]))
    assert await net_runtime.list_info() == []
    assert list((home / "boxes").iterdir()) == []


# A box's rules as `nft list ruleset` prints them (docs/network.md shows them too).
RULES = """\
table ip boxlite {
	chain divert {
		type nat hook output priority -100; policy accept;
		oif "lo" return
		meta l4proto tcp redirect to :1
	}

	chain egress {
		type filter hook output priority filter; policy accept;
		oif "lo" accept
		ct status dnat accept
		meta l4proto udp accept
		reject with tcp reset
		reject
	}
}
"""


@pytest.mark.root_only("it reads a box's rules from the host with nft, which takes root")
async def test_a_boxs_rules_are_the_documented_ones(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await make_box(net_runtime, busybox_image)
    await box.start()
    init = (await box.info()).state.pid
    listed = subprocess.run(["nsenter", "-t", str(init), "-n", "nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    assert listed == RULES
    await box.stop()


async def test_box_processes_may_listen_on_any_port(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    """Box root holds no capability over the box's network namespace (the host's user namespace
    owns it): the shim lets every box process listen below 1024 (as Docker does)."""
    box = await make_box(net_runtime, busybox_image)
    code, output = await run(box, "sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; nc -l -p 80 </dev/null >/dev/null 2>&1 & sleep 0.3; kill $! && echo listening")
    assert (code, output.split()) == (0, ["0", "listening"]), output
    await box.stop()


async def test_nothing_is_left_on_the_host(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    def host_state() -> tuple[str, str]:
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        # Only root may read the host's rules (an ordinary user's runtime cannot change them).
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout if os.geteuid() == 0 else ""
        return "\n".join(sorted(line.split(":")[1] for line in links.splitlines())), tables

    before = host_state()
    boxes = await asyncio.gather(*(make_box(net_runtime, busybox_image) for _ in range(3)))
    for box in boxes:
        assert await fetch(box, f"http://{WEB}/") == (0, BODY + "\n")
    assert host_state() == before, "a box's network touched the host's interfaces or rules"
    await asyncio.gather(*(box.stop() for box in boxes))
    assert host_state() == before


DETACHED = """
import asyncio, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=sys.argv[2], detach=True, auto_remove=False), name="lasting")
    await box.start()
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_runtime_that_adopts_a_detached_box_serves_its_network(home: Path, busybox_image: str, internet: FakeInternet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_DNS_SERVERS", DNS)
    with subprocess.Popen([sys.executable, "-c", DETACHED, str(home), busybox_image], stdout=subprocess.PIPE, text=True) as first:
        assert first.stdout is not None and first.stdout.readline().strip() == "ready"
        first.kill()
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        box = await runtime.get("lasting")
        assert box is not None
        assert await fetch(box, "http://allowed.test/") == (0, BODY + "\n")
        await box.stop()
        await runtime.remove("lasting")
    finally:
        runtime.close()


async def http_get(port: int, host: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /index.html HTTP/1.0\r\nHost: box\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response


async def wait_for_server(port: int) -> None:
    for _ in range(200):
        try:
            if b"200 OK" in await http_get(port):
                return
        except OSError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing served on host port {port}")


async def test_published_ports_reach_servers_in_the_box(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    ports = [(0, 8080), {"guest_port": 8081, "host_ip": "127.0.0.1"}]
    box = await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=ports))  # type: ignore[arg-type]
    await box.start()
    network = (await box.info()).network
    assert network is not None and network.published_ports is not None
    published = {port.guest_port: port for port in network.published_ports}
    assert sorted(published) == [8080, 8081] and all(port.host_port > 0 and port.protocol == "tcp" for port in published.values())
    assert (published[8080].host_ip, published[8081].host_ip) == ("0.0.0.0", "127.0.0.1")
    assert (await run(box, "sh", "-c", "mkdir -p /www && echo served from the box > /www/index.html"))[0] == 0
    # One server on every address of the box, one on its loopback only: both are reached.
    servers = [await box.exec("httpd", ["-f", "-p", "8080", "-h", "/www"]), await box.exec("httpd", ["-f", "-p", "127.0.0.1:8081", "-h", "/www"])]
    for port in published.values():
        await wait_for_server(port.host_port)
    responses = await asyncio.gather(*(http_get(published[8080 + index % 2].host_port) for index in range(100)))
    assert all(response.endswith(b"served from the box\n") for response in responses)
    metrics = await box.metrics()
    assert metrics.network_bytes_sent is not None and metrics.network_bytes_sent > 100 * len("served from the box")
    for server in servers:
        await server.kill()
    await box.stop()
    # Released with the box: listening there works again (as any server would, past the
    # connections in TIME_WAIT).
    for port in published.values():
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind((port.host_ip, port.host_port))
            again.listen()


UDP_ECHO = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 5353))
print("listening", flush=True)
while True:
    data, peer = server.recvfrom(65536)
    server.sendto(data.upper() + f" from {peer[0]}".encode(), peer)
"""


async def test_a_published_udp_port_answers_each_peer(net_runtime: boxlite.Boxlite) -> None:
    box = await net_runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, ports=[(0, 5353, "UDP", "127.0.0.1")]))
    server = await box.exec("python3", ["-c", UDP_ECHO])
    assert await server.stdout().__anext__() == "listening\n"
    network = (await box.info()).network
    assert network is not None and network.published_ports is not None
    [port] = network.published_ports
    assert (port.protocol, port.guest_port, port.host_ip) == ("udp", 5353, "127.0.0.1") and port.host_port > 0
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for index, peer in enumerate(peers):
            peer.settimeout(5)
            for round_ in range(3):
                peer.sendto(f"peer {index} round {round_}".encode(), ("127.0.0.1", port.host_port))
                # Each peer gets its own answers, from a server that sees the box's loopback.
                assert peer.recvfrom(65536)[0] == f"PEER {index} ROUND {round_} from 127.0.0.1".encode()
        large = b"x" * 60_000
        peers[0].sendto(large, ("127.0.0.1", port.host_port))
        assert peers[0].recvfrom(65536)[0] == large.upper() + b" from 127.0.0.1", "a datagram crosses whole"
    finally:
        for peer in peers:
            peer.close()
    metrics = await box.metrics()
    assert metrics.network_bytes_received is not None and metrics.network_bytes_received >= 60_000
    await server.kill()
    await box.stop()
    # Released with the box.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port.host_port))


async def test_a_taken_host_port_fails_the_start_and_leaves_nothing(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        box = await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=[(port, 80)], auto_remove=False))
        with pytest.raises(boxlite.NetworkError, match=f"0.0.0.0:{port}"):
            await box.start()
    # Once the port is free, the same box starts.
    await box.start()
    await box.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        box = await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=[(port, 53, "udp", "127.0.0.1")], auto_remove=False))
        with pytest.raises(boxlite.NetworkError, match=f"53/udp on host 127.0.0.1:{port}"):
            await box.start()
    await box.start()
    await box.stop()


async def test_bad_ports_are_refused_by_name(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    with pytest.raises(boxlite.InvalidArgumentError, match="host_ip"):
        await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=[(0, 80, "tcp", "localhost")]))
    with pytest.raises(boxlite.InvalidArgumentError, match="guest_port"):
        await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=[(0, 0)]))
    with pytest.raises(boxlite.InvalidArgumentError, match="host port 18080/tcp is published twice"):
        await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=[(18080, 80), (18080, 81, "tcp", "127.0.0.1")]))
    # Not the same listener: another protocol, or ports the host picks.
    for ports in ([(18080, 80), (18080, 80, "udp")], [(0, 80), (0, 81)]):
        box = await net_runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, ports=ports, auto_remove=False))
        await net_runtime.remove(box.id)
    assert await net_runtime.list_info() == []


async def test_a_running_box_takes_a_new_outbound_policy_at_once(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=[WEB]))
    assert await fetch(box, f"http://{WEB}/") == (0, BODY + "\n")
    assert (await fetch(box, f"http://{OTHER_WEB}/"))[0] != 0
    await box.network.update_outbound(boxlite.OutboundNetworkSpec(allow_net=[OTHER_WEB, "allowed.test"]))
    assert await fetch(box, f"http://{OTHER_WEB}/") == (0, BODY + "\n")
    assert (await fetch(box, f"http://{WEB}/"))[0] != 0, "the old list no longer applies"
    assert await fetch(box, "http://allowed.test/") == (0, BODY + "\n")
    network = (await box.info()).network
    assert network is not None and network.allow_net == [OTHER_WEB, "allowed.test"]
    # A bad list is refused whole, and the one in force stays.
    with pytest.raises(boxlite.InvalidArgumentError, match="exa mple"):
        await box.network.update_outbound(boxlite.OutboundNetworkSpec(allow_net=["exa mple"]))
    assert await fetch(box, f"http://{OTHER_WEB}/") == (0, BODY + "\n")
    # Turned off: nothing leaves, and no name resolves.
    await box.network.update_outbound(boxlite.OutboundNetworkSpec(mode="disabled"))
    assert (await fetch(box, f"http://{OTHER_WEB}/"))[0] != 0
    assert (await run(box, "nslookup", "allowed.test"))[0] != 0
    assert (await box.info()).network.outbound.mode == "disabled"  # type: ignore[union-attr]
    await box.stop()


async def test_a_box_made_without_a_network_gets_one_at_its_next_start(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await make_box(net_runtime, busybox_image, boxlite.NetworkSpec(mode="disabled"), auto_remove=False)
    await box.start()
    with pytest.raises(boxlite.InvalidStateError, match="starts again"):
        await box.network.update_outbound(boxlite.OutboundNetworkSpec(allow_net=[WEB]))
    await box.stop()
    again = await net_runtime.get(box.id)
    assert again is not None
    await again.network.update_outbound(boxlite.OutboundNetworkSpec(allow_net=[WEB]))
    assert await fetch(again, f"http://{WEB}/") == (0, BODY + "\n")
    assert (await fetch(again, f"http://{OTHER_WEB}/"))[0] != 0
    await again.stop()
    await net_runtime.remove(box.id)


async def test_a_hundred_boxes_with_networks_at_once(net_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    boxes = await asyncio.gather(*(make_box(net_runtime, busybox_image, boxlite.NetworkSpec(allow_net=["allowed.test"])) for _ in range(100)))
    results = await asyncio.gather(*(fetch(box, "http://allowed.test/") for box in boxes))
    assert results == [(0, BODY + "\n")] * 100
    metrics = await asyncio.gather(*(box.metrics() for box in boxes))
    assert [each.network_tcp_connections for each in metrics] == [1] * 100
    await asyncio.gather(*(box.stop() for box in boxes))


KILLED = """
import asyncio, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    boxes = [await runtime.create(boxlite.BoxOptions(rootfs_path=sys.argv[2], ports=[(0, 8080)])) for _ in range(3)]
    for box in boxes:
        await box.start()
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_nothing_of_a_killed_runtimes_networks_is_left(home: Path, busybox_image: str) -> None:
    links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    with subprocess.Popen([sys.executable, "-c", KILLED, str(home), busybox_image], stdout=subprocess.PIPE, text=True) as killed:
        assert killed.stdout is not None and killed.stdout.readline().strip() == "ready"
        listening = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=True).stdout
        assert f"pid={killed.pid}," in listening, "the runtime publishes the boxes' ports"
        killed.kill()
    # The boxes go with their runtime (they were not detached), their namespaces, interfaces
    # and sockets with them; the next runtime removes them, as they remove on stop.
    await wait_until(lambda: box_processes(home) == [], what="the killed runtime's boxes did not end")
    async with checked_runtime(home) as runtime:
        assert await runtime.list_info() == []
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout == links_before


def test_network_specs_cannot_be_changed_through_a_copy() -> None:
    spec = boxlite.NetworkSpec()
    with pytest.raises(AttributeError):
        spec.outbound.allow_net = ["example.test"]  # type: ignore[misc]
    spec.outbound = boxlite.OutboundNetworkSpec(allow_net=["example.test"])
    assert spec.outbound.allow_net == ["example.test"]
