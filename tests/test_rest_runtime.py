"""``Boxlite.rest()``: the same Python API over a real ``boxlite serve`` on loopback. The box,
execution and file tests run on both kinds of runtime (the ``any_runtime`` fixture); here is
what only a remote runtime has: credentials, a server that dies mid-stream, cancellation and
close over the wire, reattaching by id, BoxLite's lifecycle knobs, and what a REST runtime
refuses."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import boxlite

from .conftest import checked, checked_runtime, collect, wait_until
from .serve_client import KEY, Server, serving
from .test_execution import processes_with_command_line
from .box_ports import connect_when_listening


def connect(server: Server, credential: boxlite.Credential | None = None, *, key: str | None = KEY) -> boxlite.Boxlite:
    if credential is None and key is not None:
        credential = boxlite.ApiKeyCredential(key)
    return boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(f"http://{server.address}", credential))


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    with serving(home) as running:
        yield running


@pytest.fixture
async def remote(server: Server) -> AsyncIterator[boxlite.Boxlite]:
    async with checked(lambda: connect(server)) as runtime:
        yield runtime


async def test_the_key_is_checked_and_never_shown(server: Server) -> None:
    for runtime in (connect(server, key=None), connect(server, key="blk_wrong-key-0123")):
        with pytest.raises(boxlite.ConfigError, match="refused the credential") as refused:
            await runtime.list_info()
        assert "blk_wrong-key-0123" not in str(refused.value)
        runtime.close()
    runtime = connect(server)
    assert await runtime.list_info() == []
    assert KEY not in repr(runtime) and "rest=" in repr(runtime)
    assert KEY not in repr(boxlite.BoxliteRestOptions(f"http://{server.address}", boxlite.ApiKeyCredential(KEY)))
    runtime.close()


def test_a_rest_url_is_a_servers_root_without_secrets_or_a_query() -> None:
    for url in ("ftp://host", "http://", "http://user:pw-secret@host:1", "http://host:1/?token=tok-secret", "http://host:1/#frag"):
        with pytest.raises(boxlite.ConfigError) as refused:
            boxlite.BoxliteRestOptions(url)
        assert "secret" not in str(refused.value)
    assert boxlite.BoxliteRestOptions("https://host:1/base/").url == "https://host:1/base"


async def test_a_server_nobody_listens_on_is_a_network_error() -> None:
    runtime = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions("http://127.0.0.1:9"))  # discard: closed
    with pytest.raises(boxlite.NetworkError, match="cannot be reached"):
        await runtime.list_info()
    runtime.close()


async def test_a_credential_is_asked_for_a_token_when_the_last_one_is_due(server: Server) -> None:
    class Expiring(boxlite.Credential):
        def __init__(self, lifetime: float | None) -> None:
            self.lifetime, self.issued = lifetime, 0

        def get_token(self) -> boxlite.AccessToken:
            self.issued += 1
            return boxlite.AccessToken(KEY, None if self.lifetime is None else time.time() + self.lifetime)

    for lifetime, issued in ((None, 1), (5.0, 3)):  # renewed when it expires within 30 s
        credential = Expiring(lifetime)
        runtime = connect(server, credential)
        assert credential.issued == 0, "making the runtime contacts nobody"
        for _ in range(3):
            assert await runtime.list_info() == []
        assert credential.issued == issued
        runtime.close()


async def test_a_server_killed_mid_stream_ends_the_execution_with_an_error_not_a_hang(home: Path) -> None:
    with serving(home) as server:
        runtime = connect(server)
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="cut")
        execution = await box.exec("sh", ["-c", "echo started; sleep 1000"])
        stdout = execution.stdout()
        assert await stdout.__anext__() == "started\n"
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        status = await asyncio.wait_for(execution.wait(), 60)  # a guard against a hang, not a measure
        assert status.exit_code == -1 and status.error_message and "REST server" in status.error_message
        assert [chunk async for chunk in stdout] == []
        with pytest.raises(boxlite.NetworkError):
            await box.info()
        runtime.close()
    with serving(home) as again:  # the next server takes the box over; the fixture removes it
        assert [found["name"] for found in again.ok("GET", "/v1/boxes")["boxes"]] == ["cut"]


async def test_a_hundred_concurrent_remote_execs(remote: boxlite.Boxlite) -> None:
    box = await remote.create(boxlite.BoxOptions())

    async def one(number: int) -> tuple[bytes, bytes, int]:
        stdout, stderr, status = await collect(await box.exec("sh", ["-c", f"echo {number}; echo {number} >&2; exit {number % 7}"]))
        return stdout, stderr, status.exit_code

    results = await asyncio.gather(*(one(number) for number in range(100)))
    assert results == [(f"{number}\n".encode(), f"{number}\n".encode(), number % 7) for number in range(100)]


async def test_ended_executions_make_room_for_new_ones(remote: boxlite.Boxlite, server: Server) -> None:
    """Past the 4096 executions a server keeps, the ones that ended and that nobody is attached
    to are forgotten first: a client that waits for each of its commands is never refused."""
    box = await remote.create(boxlite.BoxOptions())
    gate = asyncio.Semaphore(50)

    async def one() -> int:
        async with gate:
            execution = await box.exec("true")
            return (await execution.wait()).exit_code

    descriptors = len(os.listdir(f"/proc/{server.process.pid}/fd"))
    assert await asyncio.gather(*(one() for _ in range(4300))) == [0] * 4300
    held = len(os.listdir(f"/proc/{server.process.pid}/fd")) - descriptors
    print(f"descriptors held for 4096 ended executions: {held}")
    assert held <= 4096 + 100, "an ended execution holds at most one descriptor"


async def test_a_cancelled_exec_or_create_leaves_nothing_on_the_server(remote: boxlite.Boxlite, server: Server) -> None:
    box = await remote.create(boxlite.BoxOptions())
    await box.start()
    for _ in range(3):
        task = asyncio.ensure_future(box.exec("sleep", ["987657"]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_until(lambda: not processes_with_command_line(b"sleep\x00987657\x00"), what="a cancelled remote exec left its process")
    creating = asyncio.ensure_future(remote.create(boxlite.BoxOptions(), name="never-received"))
    await asyncio.sleep(0)
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating
    # The request runs on after the cancellation: the box is made, then removed.
    await wait_until(lambda: server.logged(r"DELETE /v1/boxes/[0-9A-Za-z]+ -> 204"), what="a box made for a cancelled create stayed on the server")
    assert await remote.get_info("never-received") is None


async def test_close_fails_pending_calls_and_ends_what_the_runtime_started(server: Server) -> None:
    runtime = connect(server)
    box = await runtime.create(boxlite.BoxOptions())
    execution = await box.exec("sleep", ["987658"])
    waiting = asyncio.ensure_future(execution.wait())
    await asyncio.sleep(0)
    runtime.close()
    with pytest.raises(boxlite.RuntimeClosedError):
        await waiting
    with pytest.raises(boxlite.RuntimeClosedError):
        await runtime.list_info()
    del execution, waiting
    await wait_until(lambda: not processes_with_command_line(b"sleep\x00987658\x00"), what="an execution outlived its closed runtime")


async def test_a_create_pending_at_close_leaves_no_box_on_the_server(server: Server) -> None:
    """The request runs on while the runtime drains; the box it made reaches nobody and is removed."""
    runtime = connect(server)
    creating = asyncio.ensure_future(runtime.create(boxlite.BoxOptions()))
    await asyncio.sleep(0)
    runtime.close()
    with pytest.raises(boxlite.RuntimeClosedError):
        await creating
    await wait_until(lambda: server.logged(r"POST /v1/boxes -> 201"), what="the create never reached the server: this test would prove nothing")
    await wait_until(lambda: server.ok("GET", "/v1/boxes")["boxes"] == [], what="a box made for a create pending at close stayed on the server")


async def test_an_execution_the_server_keeps_is_reattached_by_id(remote: boxlite.Boxlite, server: Server) -> None:
    box = await remote.create(boxlite.BoxOptions())
    await box.start()
    execution_id = server.exec(box.id, "sh", "-c", "echo first; read line; echo got $line")
    attached = await box.attach(execution_id=execution_id)
    stdin = attached.stdin()
    await stdin.send_input(b"this\n")
    await stdin.close()
    stdout, _, status = await collect(attached)
    assert (stdout, status.exit_code) == (b"first\ngot this\n", 0)
    with pytest.raises(boxlite.NotFoundError):
        await box.attach(execution_id="no-such-execution")


async def test_boxlites_lifecycle_knobs_reach_the_server(remote: boxlite.Boxlite, server: Server) -> None:
    box = await remote.create(
        boxlite.BoxOptions(auto_stop=60, auto_resume=False, auto_remove=False, network=boxlite.NetworkSpec(allow_net=["example.com"])), name="kept"
    )
    shown = server.ok("GET", "/v1/boxes/kept")
    assert (shown["auto_stop"], shown["auto_delete"], shown["auto_resume"]) == (60, 0, False)
    # The client's BoxInfo says what the server does.
    info = await box.info()
    assert (info.auto_stop, info.auto_delete, info.auto_resume) == (60, 0, False)
    assert info.network is not None and (info.network.outbound.mode, info.network.allow_net) == ("enabled", ["example.com"])
    await box.start()
    await box.stop()
    again = await remote.get("kept")
    assert again is not None
    with pytest.raises(boxlite.InvalidStateError, match="auto_resume"):
        await again.exec("true")  # a stopped box is started by exec only with auto_resume
    await remote.remove("kept")


async def test_an_open_tunnel_keeps_its_box_in_use(remote: boxlite.Boxlite, server: Server, busybox_image: str) -> None:
    # The box's own main process serves the port: no execution the server keeps uses the box.
    options = boxlite.BoxOptions(rootfs_path=busybox_image, cmd=["nc", "-ll", "-p", "7000", "-e", "cat"], network=boxlite.NetworkSpec(mode="disabled"), auto_stop=1, auto_remove=False)
    box = await remote.create(options)
    await box.start()
    connection = await connect_when_listening(box, 7000)
    await asyncio.sleep(3)  # three of the server's lifecycle ticks, each past auto_stop
    assert server.ok("GET", f"/v1/boxes/{box.id}")["status"] == "running"
    await connection.write(b"still here\n")
    assert await connection.read(100) == b"still here\n"
    await connection.close()
    await wait_until(lambda: server.ok("GET", f"/v1/boxes/{box.id}")["status"] == "stopped", what="the box outlived its auto_stop once its tunnel closed")
    await remote.remove(box.id)


async def test_what_a_rest_runtime_cannot_do_is_refused_and_makes_nothing(remote: boxlite.Boxlite, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"  # the server's home is beside it
    tmp_path.mkdir()
    with pytest.raises(boxlite.UnsupportedError, match="host directory"):
        await remote.create(boxlite.BoxOptions(volumes=[(str(tmp_path), "/data")]))
    with pytest.raises(boxlite.UnsupportedError, match="published ports"):
        await remote.create(boxlite.BoxOptions(ports=[(8080, 80)]))
    box = await remote.create(boxlite.BoxOptions())
    with pytest.raises(boxlite.UnsupportedError, match="REST runtime"):
        await box.network.update_outbound(boxlite.OutboundNetworkSpec(allow_net=["example.test"]))
    with pytest.raises(boxlite.UnsupportedError, match="REST runtime"):
        await remote.volumes.list()
    assert [info.id for info in await remote.list_info()] == [box.id]
    assert list(tmp_path.iterdir()) == []


async def test_a_tunnel_takes_the_key_an_upgrade_and_a_port_that_answers(remote: boxlite.Boxlite, server: Server, busybox_image: str) -> None:
    box = await remote.create(boxlite.BoxOptions(rootfs_path=busybox_image, network=boxlite.NetworkSpec(mode="disabled")))
    path = f"/v1/boxes/{box.id}/network/tunnel"
    status, refused = server.request("POST", f"{path}?port=7000")
    assert status == 409 and refused["error"]["code"] == "invalid_state", "a box that is not running has no port"
    await box.start()
    upgrade = {"Connection": "Upgrade", "Upgrade": "boxlite-tunnel"}
    assert server.request("POST", f"{path}?port=7000", key=None)[0] == 401
    assert server.request("GET", f"{path}?port=7000", key="wrong", headers=upgrade)[0] == 401
    for port in ("0", "65536", "x", ""):
        assert server.request("POST", f"{path}?port={port}")[0] == 400, port
    status, descriptor = server.request("POST", f"{path}?port=7000")
    assert status == 200 and descriptor == {"uri": f"http://{server.address}{path}?port=7000"}
    status, refused = server.request("GET", f"{path}?port=7000")
    assert status == 400 and "Upgrade: boxlite-tunnel" in refused["error"]["message"]
    # The connection into the box is made before the answer: nothing listens, so no upgrade.
    status, refused = server.request("GET", f"{path}?port=7000", headers=upgrade)
    assert status == 503 and refused["error"]["code"] == "network_unavailable" and "port 7000" in refused["error"]["message"]
    # Through the client, a half-close reaches the box's server, whose answer still comes back.
    echo = await box.exec("nc", ["-l", "-p", "7000", "-e", "sh", "-c", "cat; echo end"])
    connection = await connect_when_listening(box, 7000)
    await connection.write(b"sent\n")
    await connection.shutdown_write()
    received = b""
    while chunk := await connection.read(65536):
        received += chunk
    assert received == b"sent\nend\n"
    await connection.close()
    assert (await echo.wait()).exit_code == 0
    await box.stop()


async def test_boxes_travel_as_archives_through_the_server(remote: boxlite.Boxlite, tmp_path: Path) -> None:
    out = tmp_path / "out"  # the server's home is beside it
    out.mkdir()
    box = await remote.create(boxlite.BoxOptions(auto_remove=False), name="traveller")
    _, _, status = await collect(await box.exec("sh", ["-c", "echo packed > /root/note"]))
    assert status.exit_code == 0
    # Stopped: a running box is exported frozen, which an ordinary user's runtime may not do
    # (test_archives.py covers that locally).
    await box.stop()
    box = await remote.get("traveller")
    assert box is not None
    archive = Path(await box.export(dest=str(out)))
    assert archive == out / "traveller.boxlite" and archive.stat().st_size > 0
    with pytest.raises(boxlite.AlreadyExistsError):
        await box.export(dest=str(archive))  # an export never replaces a file
    assert sorted(path.name for path in out.iterdir()) == ["traveller.boxlite"]
    back = await remote.import_box(str(archive), name="back")
    stdout, _, _ = await collect(await back.exec("cat", ["/root/note"]))
    assert stdout == b"packed\n"
    damaged = out / "damaged.boxlite"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(boxlite.InvalidArgumentError):
        await remote.import_box(str(damaged), name="never")
    assert sorted(info.name or "" for info in await remote.list_info()) == ["back", "traveller"]


async def test_a_server_imports_every_archive_as_untrusted(remote: boxlite.Boxlite, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    async with checked_runtime(tmp_path / "local") as local:
        box = await local.create(boxlite.BoxOptions(auto_remove=False, volumes=[(str(shared), "/shared")]), name="mounts")
        archive = await box.export(dest=str(tmp_path / "mounts.boxlite"))
        await local.remove("mounts", force=True)
    with pytest.raises(boxlite.UnsupportedError):
        await remote.import_box(archive)
    assert await remote.list_info() == []


async def test_snapshots_clones_and_images_over_rest(remote: boxlite.Boxlite) -> None:
    box = await remote.create(boxlite.BoxOptions(auto_remove=False))
    _, _, status = await collect(await box.exec("sh", ["-c", "echo one > /root/v"]))
    assert status.exit_code == 0
    await box.stop()
    again = await remote.get(box.id)
    assert again is not None
    taken = await again.snapshot.create(name="first")
    assert (taken.name, [found.name for found in await again.snapshot.list()]) == ("first", ["first"])
    clone = await again.clone_box(name="twin")
    _, _, status = await collect(await again.exec("sh", ["-c", "echo two > /root/v"]))
    await again.stop()
    again = await remote.get(box.id)
    assert again is not None
    await again.snapshot.restore("first")
    for found in (again, clone):
        stdout, _, _ = await collect(await found.exec("cat", ["/root/v"]))
        assert stdout == b"one\n"
    assert any(image.reference for image in await remote.images.list()) or await remote.images.list() == []
    metrics = await remote.metrics()
    assert metrics.boxes_created_total >= 2


def test_the_sync_api_drives_a_remote_runtime_too(server: Server) -> None:
    runtime = boxlite.SyncBoxlite.rest(boxlite.BoxliteRestOptions(f"http://{server.address}", boxlite.ApiKeyCredential(KEY)))
    try:
        box = runtime.create(boxlite.BoxOptions())
        execution = box.exec("sh", ["-c", "echo synced"])
        assert ("".join(execution.stdout()), execution.wait().exit_code) == ("synced\n", 0)
    finally:
        runtime.close()
    # The runtime it opened closes with it, and later calls say so with the runtime's error.
    assert "open=false" in repr(runtime.runtime)
    with pytest.raises(boxlite.RuntimeClosedError):
        runtime.list_info()
