"""Tunnels: ``box.network.tunnel(port)``, its ``connect()`` and ``forward()``, on local and REST
runtimes and through the sync API. A tunnel needs no way out of the box: these boxes have
loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import boxlite

from .box_ports import connect_when_listening
from .serve_client import KEY, serving
from .test_network import BODY, http_get, make_box, run


async def serve_www(box: boxlite.Box, address: str) -> boxlite.Execution:
    """busybox httpd in the box at ``address`` ([ip:]port), serving BODY."""
    assert (await run(box, "sh", "-c", f"mkdir -p /www && echo '{BODY}' > /www/index.html"))[0] == 0
    return await box.exec("httpd", ["-f", "-p", address, "-h", "/www"])


async def get_through(connection: boxlite.BoxConnection) -> bytes:
    await connection.write(b"GET /index.html HTTP/1.0\r\n\r\n")
    chunks = []
    while chunk := await connection.read(65536):
        chunks.append(chunk)
    await connection.close()
    return b"".join(chunks)


async def test_tunnels_connect_and_forward_to_a_port_of_the_box(any_runtime: boxlite.Boxlite, busybox_image: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # A tunnel needs no way out: this box has loopback only, and its server listens there. On a
    # REST runtime the server makes the connections, and the forwarders listen here.
    box = await make_box(any_runtime, busybox_image, boxlite.NetworkSpec(mode="disabled"))
    await box.start()
    server = await serve_www(box, "127.0.0.1:8080")
    response = await get_through(await connect_when_listening(box, 8080))
    assert response.startswith(b"HTTP/1.") and response.endswith(BODY.encode() + b"\n")
    tunnel = await box.network.tunnel(8080)
    if request.node.callspec.params["any_runtime"] == "rest":
        uri = tunnel.uri()
        assert uri is not None and uri.endswith(f"/v1/boxes/{box.id}/network/tunnel?port=8080")
    else:
        assert tunnel.uri() is None
    await (await tunnel.connect()).close()
    with pytest.raises(boxlite.InvalidStateError, match="consumed"):
        await tunnel.connect()

    forwarder = await (await box.network.tunnel(8080)).forward(boxlite.SocketAddress.tcp())
    local = forwarder.local_addr()
    assert local.kind == "tcp" and local.host == "127.0.0.1" and local.port and str(local) == f"tcp://127.0.0.1:{local.port}"
    responses = await asyncio.gather(*(http_get(local.port) for _ in range(20)))
    assert all(response.endswith(BODY.encode() + b"\n") for response in responses)
    path = tmp_path / "box.sock"
    over_unix = await (await box.network.tunnel(8080)).forward(boxlite.SocketAddress.unix(str(path)))
    assert over_unix.local_addr() == boxlite.SocketAddress.unix(str(path))
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
    assert (await reader.read()).endswith(BODY.encode() + b"\n")
    writer.close()

    # Revoking the port ends its forwarders and the connections they carry; closing again is
    # nothing.
    live_reader, live_writer = await asyncio.open_connection("127.0.0.1", local.port)
    live_writer.write(b"GET /index.html HTTP/1.0\r\n")  # unfinished: the server waits for more
    await live_writer.drain()
    await box.network.revoke_tunnel(8080)
    await asyncio.wait_for(asyncio.gather(forwarder.wait(), over_unix.wait()), 5)
    try:
        assert await asyncio.wait_for(live_reader.read(), 5) == b"", "a revoked forwarder's connection ends"
    except ConnectionResetError:
        pass
    live_writer.close()
    assert not path.exists()
    with pytest.raises(OSError):
        await http_get(local.port)
    await forwarder.close()
    # A forwarder ends with the box's run.
    lasting = await (await box.network.tunnel(8080)).forward(boxlite.SocketAddress.tcp())
    await server.kill()
    await box.stop()
    await asyncio.wait_for(lasting.wait(), 5)


async def test_a_forwarder_ends_when_its_box_is_removed(any_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    options = boxlite.BoxOptions(rootfs_path=busybox_image, network=boxlite.NetworkSpec(mode="disabled"), auto_remove=False)
    box = await any_runtime.create(options, name="forwarded")
    await box.start()
    forwarder = await (await box.network.tunnel(8080)).forward(boxlite.SocketAddress.tcp())
    await any_runtime.remove("forwarded", force=True)
    await asyncio.wait_for(forwarder.wait(), 5)
    with pytest.raises(OSError):
        await http_get(forwarder.local_addr().port or 0)


async def test_bad_tunnels_are_refused_by_name(any_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    with pytest.raises(ValueError, match="numeric IP"):
        boxlite.SocketAddress.tcp("localhost", 80)
    with pytest.raises(ValueError, match="absolute"):
        boxlite.SocketAddress.unix("relative.sock")
    box = await make_box(any_runtime, busybox_image, boxlite.NetworkSpec(mode="disabled"))
    with pytest.raises(boxlite.InvalidStateError, match="not running"):
        await box.network.tunnel(8080)
    await box.start()
    with pytest.raises(boxlite.NetworkError, match="port 9"):
        await (await box.network.tunnel(9)).connect()
    connection_refused = await box.network.tunnel(9)
    forwarder = await connection_refused.forward(boxlite.SocketAddress.tcp())
    port = forwarder.local_addr().port
    assert port is not None
    try:
        answer = await http_get(port)
    except ConnectionResetError:
        answer = b""
    assert answer == b"", "a forwarded connection that the box refuses is closed"
    await box.stop()


@contextlib.contextmanager
def sync_runtime(kind: str, home: Path) -> Iterator[boxlite.SyncBoxlite]:
    """A sync runtime on ``home``: local, or a REST runtime driving ``boxlite serve`` there."""
    if kind == "local":
        with boxlite.SyncBoxlite(boxlite.Options(home_dir=str(home))) as runtime:
            yield runtime
        return
    with serving(home) as server, boxlite.SyncBoxlite.rest(boxlite.BoxliteRestOptions(f"http://{server.address}", boxlite.ApiKeyCredential(KEY))) as runtime:
        yield runtime


@pytest.mark.parametrize("kind", ["local", "rest"])
def test_tunnels_from_the_sync_api(home: Path, busybox_image: str, kind: str) -> None:
    with sync_runtime(kind, home) as runtime:
        box = runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, network=boxlite.NetworkSpec(mode="disabled")))
        box.start()
        server = box.exec("sh", ["-c", f"mkdir -p /www && echo '{BODY}' > /www/index.html && exec httpd -f -p 8080 -h /www"])
        for _ in range(200):
            try:
                connection = box.network.tunnel(8080).connect()
                break
            except boxlite.NetworkError:
                time.sleep(0.02)
        connection.write(b"GET /index.html HTTP/1.0\r\n\r\n")
        connection.shutdown_write()
        response = b""
        while chunk := connection.read(65536):
            response += chunk
        connection.close()
        assert response.endswith(BODY.encode() + b"\n")
        forwarder = box.tunnel(8080).forward(boxlite.SocketAddress.tcp())
        port = forwarder.local_addr().port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            assert client.makefile("rb").read().endswith(BODY.encode() + b"\n")
        forwarder.close()
        forwarder.wait()
        server.kill()
        box.stop()


async def test_a_tunnel_ends_with_the_run_and_close_ends_a_waiting_read(any_runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await make_box(any_runtime, busybox_image, boxlite.NetworkSpec(mode="disabled"))
    await box.start()
    server = await box.exec("sh", ["-c", "(echo ready; sleep 60) | nc -l -p 7000"])
    connection = await connect_when_listening(box, 7000)
    assert await connection.read(100) == b"ready\n"
    # Nothing more comes from the server: the next read waits, until the close ends it.
    waiting = asyncio.ensure_future(connection.read(100))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), 0.2)
    await asyncio.wait_for(connection.close(), 5)
    assert await asyncio.wait_for(waiting, 5) == b""
    taken_before_the_end = await box.network.tunnel(7000)
    await server.kill()
    await box.stop()
    with pytest.raises(boxlite.InvalidStateError, match="run ended"):
        await taken_before_the_end.forward(boxlite.SocketAddress.tcp())
