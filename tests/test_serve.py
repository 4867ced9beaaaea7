"""``boxlite serve``: BoxLite's REST API, spoken by a real server process over real boxes, driven
as a remote client would (HTTP on loopback, WebSocket attach)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from .serve_client import KEY, Server, follow, serving, tar_of

@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    with serving(home) as running:
        yield running


def test_only_the_config_is_public_and_keys_are_checked(server: Server) -> None:
    status, config = server.request("GET", "/v1/config", key=None)
    assert status == 200 and config["capabilities"]["snapshots_enabled"] is True
    for key in (None, "wrong", KEY[:-1], KEY + "x", ""):
        status, answer = server.request("GET", "/v1/boxes", key=key)
        assert status == 401, key
        assert answer == {"error": {"message": "invalid or missing API key", "type": "AuthError", "code": "unauthenticated"}}
    assert server.ok("GET", "/v1/boxes") == {"boxes": [], "next_page_token": None}
    assert server.ok("GET", "/v1/me")["path_prefix"] is None


def test_without_a_key_only_clients_that_are_not_web_pages_get_in(home: Path) -> None:
    with serving(home, api_key=None) as server:
        assert server.request("GET", "/v1/boxes", key=None)[0] == 200
        status, refused = server.request("POST", "/v1/boxes", {"name": "x"}, key=None, headers={"Origin": "http://evil.example"})
        assert status == 403 and refused["error"]["code"] == "permission_denied"
        status, refused = server.request("GET", "/v1/boxes", key=None, headers={"Host": "evil.example:8100"})
        assert status == 403 and "Host" in refused["error"]["message"], "a rebound name is not this server"
        assert server.ok("GET", "/v1/boxes")["boxes"] == []


def test_a_box_lives_its_whole_life_over_rest(server: Server) -> None:
    box = server.create(name="web")
    assert (box["name"], box["status"], box["image"], box["labels"]) == ("web", "configured", "host://", {})
    assert "exit_code" not in box
    status, duplicate = server.request("POST", "/v1/boxes", {"name": "web"})
    assert status == 409 and duplicate["error"]["code"] == "already_exists"
    assert server.ok("GET", "/v1/boxes/web")["box_id"] == box["box_id"]
    assert server.ok("GET", f"/v1/team-42/boxes/{box['box_id']}")["name"] == "web", "a path prefix routes the same"
    assert server.request("HEAD", "/v1/boxes/web")[0] == 204
    assert server.request("HEAD", "/v1/boxes/nope")[0] == 404
    assert server.ok("POST", "/v1/boxes/web/start")["status"] == "running"
    assert [listed["name"] for listed in server.ok("GET", "/v1/boxes?status=running")["boxes"]] == ["web"]
    assert server.ok("GET", "/v1/boxes?status=stopped")["boxes"] == []
    status, refused = server.request("DELETE", "/v1/boxes/web")
    assert status == 409 and refused["error"]["code"] == "invalid_state", "a running box is removed only with force"
    assert server.ok("POST", "/v1/boxes/web/stop", {"timeout_seconds": 2})["status"] == "stopped"
    server.ok("DELETE", "/v1/boxes/web", status=204)
    for name in ("one", "two", "three"):
        server.create(name=name)
    first = server.ok("GET", "/v1/boxes?pageSize=2")
    second = server.ok("GET", f"/v1/boxes?pageSize=2&pageToken={first['next_page_token']}")
    assert [box["name"] for box in first["boxes"] + second["boxes"]] == ["three", "two", "one"] and second["next_page_token"] is None
    assert server.request("GET", "/v1/boxes?pageSize=0")[0] == 400
    assert server.request("GET", "/v1/boxes?colour=blue")[0] == 400, "an unknown query parameter is refused"
    status, missing = server.request("GET", "/v1/boxes/web")
    assert status == 404 and missing["error"] == {"message": "not found: box not found: web", "type": "NotFoundError", "code": "not_found"}


def test_bad_requests_get_typed_errors_and_make_nothing(server: Server, tmp_path: Path) -> None:
    cases = [
        ({"security": {"privileged": True}}, 400, "invalid_argument"),
        ({"cpus": "many"}, 400, "invalid_argument"),
        ({"secrets": [{"name": "token", "value": "hunter2-value"}]}, 400, "invalid_argument"),
        ({"secrets": [{"name": "token", "value": "hunter2-value\r\nX: 1", "hosts": ["api.example.com"]}]}, 400, "invalid_argument"),
        ({"auto_stop": -1}, 400, "invalid_argument"),
        ({"network": {"mode": "disabled", "allow_net": ["example.com"]}}, 400, "invalid_argument"),
        ({"rootfs_path": str(tmp_path / "no-such-layout")}, None, None),
    ]
    for body, status, code in cases:
        got, answer = server.request("POST", "/v1/boxes", body)
        assert got >= 400 and set(answer["error"]) >= {"message", "type", "code"}, (body, got, answer)
        if status is not None:
            assert (got, answer["error"]["code"]) == (status, code), (body, answer)
        assert "hunter2-value" not in answer["error"]["message"]
    got, answer = server.request("POST", "/v1/boxes", raw=b"{not json")
    assert got == 400 and answer["error"]["type"] == "InvalidArgumentError"
    assert server.request("GET", "/v1/no/such/route")[0] == 404
    assert server.ok("GET", "/v1/boxes")["boxes"] == [], "no half-made box"


async def test_exec_streams_output_takes_stdin_and_reports_the_exit(server: Server) -> None:
    server.create(name="shell")
    stdout, stderr, code = await server.run("shell", "sh", "-c", "echo out; echo err >&2; cat; exit 3", stdin=b"typed\n")
    assert (stdout, stderr, code) == (b"out\ntyped\n", b"err\n", 3)
    stdout, _, code = await server.run("shell", "cat", stdin=b"")
    assert (stdout, code) == (b"", 0)
    execution_id = server.exec("shell", "sh", "-c", "read line; echo got $line", stdin="given\n")
    async with await server.attach("shell", execution_id) as socket:
        assert await follow(socket) == (b"got given\n", b"", 0)
    ended = server.ok("GET", f"/v1/boxes/shell/executions/{execution_id}")
    assert (ended["status"], ended["exit_code"]) == ("completed", 0) and ended["duration_ms"] >= 0
    status, missing = server.request("GET", f"/v1/boxes/nope/executions/{execution_id}")
    assert status == 404 and missing["error"]["code"] == "not_found"
    stdout, _, code = await server.run("shell", "sh", "-c", "echo $GREETING; pwd", env={"GREETING": "hi"}, working_dir="/tmp")
    assert (stdout, code) == (b"hi\n/tmp\n", 0)
    status, failed = server.request("POST", "/v1/boxes/shell/exec", {"command": "no-such-program"})
    assert status == 404 and failed["error"]["code"] == "not_found"
    metrics = server.ok("GET", "/v1/boxes/shell/metrics")
    assert metrics["commands_executed_total"] >= 4 and metrics["bytes_received_total"] > 0
    assert server.ok("GET", "/v1/metrics")["num_running_boxes"] == 1
    stopped = server.ok("GET", "/v1/metrics")["boxes_stopped_total"]
    server.ok("POST", "/v1/boxes/shell/stop")
    server.ok("POST", "/v1/boxes/shell/stop")  # a stopped box stops no more
    assert server.ok("GET", "/v1/metrics")["boxes_stopped_total"] == stopped + 1


async def test_the_main_process_is_followed_over_rest(server: Server) -> None:
    server.create(name="service", cmd=["sh", "-c", "echo up; read line; echo got $line; exit 4"])
    url = f"ws://{server.address}/v1/boxes/service/attach"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as socket:
        assert socket.response is not None
        execution_id = socket.response.headers["x-boxlite-execution-id"]
        server.ok("POST", "/v1/boxes/service/start")  # attached before the start: from its first byte
        assert await socket.recv() == b"\x01up\n"
        await socket.send(b"there\n")
        assert await follow(socket) == (b"got there\n", b"", 4)
    assert server.ok("GET", f"/v1/boxes/service/executions/{execution_id}")["exit_code"] == 4
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as replay:
        assert await follow(replay) == (b"up\ngot there\n", b"", 4), "an ended run is replayed"


async def test_a_main_process_on_a_terminal_is_followed_and_resized_over_rest(server: Server) -> None:
    server.create(name="console", cmd=["sh", "-c", "stty size; read line; stty size; exit 2"], tty=True)
    url = f"ws://{server.address}/v1/boxes/console/attach"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as socket:
        server.ok("POST", "/v1/boxes/console/start")
        assert await socket.recv() == b"\x0124 80\r\n"
        await socket.send(json.dumps({"type": "resize", "rows": 50, "cols": 132}))
        await socket.send(b"go\n")
        stdout, stderr, code = await follow(socket)
    assert stdout.endswith(b"50 132\r\n") and (stderr, code) == (b"", 2), stdout


async def test_a_child_left_running_does_not_hold_the_exit_back(server: Server) -> None:
    server.create(name="parent")
    stdout, _, code = await asyncio.wait_for(server.run("parent", "sh", "-c", "sleep 1000 & echo started"), 30)
    assert (stdout, code) == (b"started\n", 0)


async def test_timeouts_signals_and_kills(server: Server) -> None:
    server.create(name="jobs")
    execution_id = server.exec("jobs", "sleep", "100", timeout_seconds=0.3)
    async with await server.attach("jobs", execution_id) as socket:
        _, _, code = await follow(socket)
    assert code == -signal.SIGTERM
    assert server.ok("GET", f"/v1/boxes/jobs/executions/{execution_id}")["status"] == "timed_out"

    trap = "trap 'echo got usr1; exit 5' USR1; echo ready; while :; do sleep 0.05; done"
    execution_id = server.exec("jobs", "sh", "-c", trap)
    async with await server.attach("jobs", execution_id) as socket:
        assert await socket.recv() == b"\x01ready\n"
        status, refused = server.request("POST", f"/v1/boxes/jobs/executions/{execution_id}/signal", {"signal": 65})
        assert status == 400 and "between 1 and 64" in refused["error"]["message"]
        server.ok("POST", f"/v1/boxes/jobs/executions/{execution_id}/signal", {"signal": signal.SIGUSR1}, status=204)
        assert await follow(socket) == (b"got usr1\n", b"", 5)

    execution_id = server.exec("jobs", "sh", "-c", trap)
    async with await server.attach("jobs", execution_id) as socket:
        assert await socket.recv() == b"\x01ready\n"
        await socket.send(json.dumps({"type": "signal", "sig": 99}))
        assert json.loads(await socket.recv())["type"] == "error", "a refused signal is a note; the socket stays"
        await socket.send(json.dumps({"type": "signal", "sig": signal.SIGUSR1}))
        assert await follow(socket) == (b"got usr1\n", b"", 5)

    execution_id = server.exec("jobs", "sleep", "100")
    async with await server.attach("jobs", execution_id) as socket:
        server.ok("DELETE", f"/v1/boxes/jobs/executions/{execution_id}", status=204)
        assert (await follow(socket))[2] == -signal.SIGKILL
    assert server.request("GET", f"/v1/boxes/jobs/executions/{execution_id}")[0] == 404, "a killed execution is forgotten"


async def test_a_terminal_over_rest_takes_its_size_and_resizes(server: Server) -> None:
    server.create(name="term")
    execution_id = server.exec("term", "sh", "-c", "stty size; read line; stty size", tty=True, tty_rows=30, tty_cols=100)
    async with await server.attach("term", execution_id) as socket:
        assert await socket.recv() == b"\x0130 100\r\n"
        server.ok("POST", f"/v1/boxes/term/executions/{execution_id}/resize", {"rows": 40, "cols": 120}, status=204)
        await socket.send(json.dumps({"type": "resize", "rows": 50, "cols": 132}))
        await socket.send(b"go\n")
        stdout, stderr, code = await follow(socket)
    assert stdout.endswith(b"50 132\r\n") and (stderr, code) == (b"", 0), stdout
    status, refused = server.request("POST", f"/v1/boxes/term/executions/{server.exec('term', 'true')}/resize", {"rows": 1, "cols": 1})
    assert status in (404, 409), "no terminal to resize"


async def test_a_read_only_client_sees_output_and_cannot_write(server: Server) -> None:
    server.create(name="watched")
    execution_id = server.exec("watched", "sh", "-c", "echo hello; read line; echo got $line")
    url = f"ws://{server.address}/v1/boxes/watched/executions/{execution_id}/attach?stdin=false"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as watcher:
        assert await watcher.recv() == b"\x01hello\n"
        await watcher.send(b"sneaky\n")
        assert json.loads(await watcher.recv())["type"] == "error"
    # One client at a time: the watcher's claim comes back once the server saw it leave.
    async with await attach_once_free(server, "watched", execution_id) as writer:
        await writer.send(b"typed\n")
        assert await follow(writer) == (b"got typed\n", b"", 0)


async def attach_once_free(server: Server, box: str, execution_id: str) -> ClientConnection:
    """Attaches as soon as the server has taken back the last client's claim (409 until then)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await server.attach(box, execution_id)
        except websockets.InvalidStatus as refused:
            assert refused.response.status_code == 409 and time.monotonic() < deadline, "the claim never came back"
        await asyncio.sleep(0.01)


async def test_one_client_at_a_time_and_a_second_attach_continues(server: Server) -> None:
    server.create(name="talk")
    execution_id = server.exec("talk", "sh", "-c", "read a; echo first $a; read b; echo second $b")
    first = await server.attach("talk", execution_id)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await server.attach("talk", execution_id)
    assert refused.value.response.status_code == 409
    await first.send(b"x\n")
    assert await first.recv() == b"\x01first x\n"
    await first.close()
    async with await attach_once_free(server, "talk", execution_id) as second:
        await second.send(b"y\n")
        assert await follow(second) == (b"second y\n", b"", 0), "stdin and output carry on with the next client"


async def test_a_client_that_goes_after_the_output_ended_frees_the_execution(server: Server) -> None:
    server.create(name="quiet")
    execution_id = server.exec("quiet", "sh", "-c", "exec >&- 2>&-; read line; exit 7")
    first = await server.attach("quiet", execution_id)
    await first.close()  # the output has ended, the process runs on: the claim still goes back
    async with await attach_once_free(server, "quiet", execution_id) as second:
        await second.send(b"go\n")
        assert await follow(second) == (b"", b"", 7)


async def test_large_output_arrives_whole(server: Server) -> None:
    server.create(name="bulk")
    _, _, code = await server.run("bulk", "sh", "-c", "head -c 33554432 /dev/urandom > /tmp/blob")
    assert code == 0
    stdout, _, code = await server.run("bulk", "cat", "/tmp/blob")
    digest, _, _ = await server.run("bulk", "sha256sum", "/tmp/blob")
    assert (len(stdout), code) == (33554432, 0)
    assert hashlib.sha256(stdout).hexdigest() == digest.split()[0].decode()


async def test_files_go_in_and_out_as_tar_streams(server: Server) -> None:
    server.create(name="files")
    upload = tar_of({"run.sh": b"#!/bin/sh\necho ran\n", "data": None, "data/notes.txt": b"notes"}, links={"data/latest": "notes.txt"})
    status, _ = server.request("PUT", "/v1/boxes/files/files?path=/root/project", raw=upload, content_type="application/x-tar")
    assert status == 204
    stdout, _, code = await server.run("files", "sh", "-c", "/root/project/run.sh; cat /root/project/data/latest; stat -c %a /root/project/run.sh")
    assert (stdout, code) == (b"ran\nnotes750\n", 0)
    status, archive = server.request("GET", "/v1/boxes/files/files?path=/root/project")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(archive)) as downloaded:
        names = set(downloaded.getnames())
        assert {"project", "project/run.sh", "project/data/notes.txt", "project/data/latest"} <= names, names
        notes = downloaded.extractfile("project/data/notes.txt")
        assert notes is not None and notes.read() == b"notes"
        assert downloaded.getmember("project/data/latest").issym()
    status, archive = server.request("GET", "/v1/boxes/files/files?path=/root/project/run.sh")
    with tarfile.open(fileobj=io.BytesIO(archive)) as downloaded:
        assert downloaded.getnames() == ["run.sh"]
    status, missing = server.request("GET", "/v1/boxes/files/files?path=/root/nothing")
    assert status == 404 and missing["error"]["code"] == "not_found"
    status, kept = server.request("PUT", "/v1/boxes/files/files?path=/root/project&overwrite=false", raw=tar_of({"run.sh": b"x"}))
    assert status == 409 and kept["error"]["code"] == "already_exists"


async def test_hostile_tars_are_refused_and_touch_nothing(server: Server, home: Path) -> None:
    server.create(name="target")
    outside = Path("/tmp/boxlite-serve-escape")
    hostile = [
        tar_of({"../../../../../../tmp/boxlite-serve-escape": b"escaped"}),
        tar_of({"link/boxlite-serve-escape": b"escaped"}, links={"link": "/tmp"}),
        tar_of({}, devices=["null-device"]),
        b"this is not a tar archive" * 100,
    ]
    for archive in hostile:
        status, refused = server.request("PUT", "/v1/boxes/target/files?path=/root/in", raw=archive, content_type="application/x-tar")
        assert status == 400 and refused["error"]["code"] == "invalid_argument", refused
        assert str(home) not in refused["error"]["message"], "the server's paths stay its own"
    assert not outside.exists()
    stdout, _, _ = await server.run("target", "sh", "-c", "ls -A /root/in /tmp 2>&1; ls -A /root")
    assert b"escape" not in stdout and b"null-device" not in stdout
    assert list((home / "serve-scratch").iterdir()) == [], "staged uploads are cleaned up"


def test_uploads_over_the_limit_are_413(home: Path) -> None:
    with serving(home, "--upload-limit", "16384") as server:  # a tar of one small file takes 10 KiB
        server.create(name="small")
        status, refused = server.request("PUT", "/v1/boxes/small/files?path=/root", raw=tar_of({"big": b"x" * 32768}))
        assert status == 413 and refused["error"]["code"] == "payload_too_large"
        assert server.request("PUT", "/v1/boxes/small/files?path=/root", raw=tar_of({"fits": b"x"}))[0] == 204


async def test_snapshots_and_clones_over_rest(server: Server) -> None:
    server.create(name="origin")
    await server.run("origin", "sh", "-c", "echo one > /root/state")
    server.ok("POST", "/v1/boxes/origin/stop")
    snapshot = server.ok("POST", "/v1/boxes/origin/snapshots", {"name": "first"}, status=201)
    assert (snapshot["name"], snapshot["box_id"]) == ("first", server.ok("GET", "/v1/boxes/origin")["box_id"])
    assert [listed["name"] for listed in server.ok("GET", "/v1/boxes/origin/snapshots")["snapshots"]] == ["first"]
    await server.run("origin", "sh", "-c", "echo two > /root/state")
    server.ok("POST", "/v1/boxes/origin/stop")
    server.ok("POST", "/v1/boxes/origin/snapshots/first/restore", status=204)
    assert (await server.run("origin", "cat", "/root/state"))[0] == b"one\n"
    server.ok("POST", "/v1/boxes/origin/stop")
    clone = server.ok("POST", "/v1/boxes/origin/clone", {"name": "copy"}, status=201)
    assert clone["name"] == "copy"
    assert (await server.run("copy", "cat", "/root/state"))[0] == b"one\n"
    server.ok("DELETE", "/v1/boxes/origin/snapshots/first", status=204)
    assert server.request("GET", "/v1/boxes/origin/snapshots/first")[0] == 404


async def wait_for_status(server: Server, box: str, wanted: int | str, timeout: float = 20) -> None:
    """Polls the box until it has status ``wanted`` (or, for an int, until GET answers that)."""
    deadline = time.monotonic() + timeout
    while True:
        code, answer = server.request("GET", f"/v1/boxes/{box}")
        if (code if isinstance(wanted, int) else answer["status"]) == wanted:
            return
        assert time.monotonic() < deadline, f"box {box} never became {wanted}: {code} {answer}"
        await asyncio.sleep(0.1)


async def test_auto_stop_auto_delete_and_auto_resume_hold_and_outlive_the_server(home: Path) -> None:
    with serving(home) as server:
        box = server.create(name="napper", auto_stop=1, auto_delete=1)
        assert (box["auto_stop"], box["auto_delete"], box["auto_resume"]) == (1, 1, True)
        assert (await server.run("napper", "true"))[2] == 0
        await wait_for_status(server, "napper", "stopped")
        await wait_for_status(server, "napper", 404)

        server.create(name="busy", auto_stop=1)
        execution_id = server.exec("busy", "sleep", "3")
        async with await server.attach("busy", execution_id) as socket:
            await asyncio.sleep(2.5)
            assert server.ok("GET", "/v1/boxes/busy")["status"] == "running", "a box running an execution is in use"
            assert (await follow(socket))[2] == 0
        await wait_for_status(server, "busy", "stopped")

        server.create(name="manual", auto_resume=False)
        assert (await server.run("manual", "true"))[2] == 0
        server.ok("POST", "/v1/boxes/manual/stop")
        assert server.stop() == 0  # stopped here, the server leaves its boxes
    with serving(home) as again:
        assert again.ok("GET", "/v1/boxes/manual")["auto_resume"] is False, "the next server keeps the settings"
        status, refused = again.request("POST", "/v1/boxes/manual/exec", {"command": "true"})
        assert status == 409 and "auto_resume" in refused["error"]["message"]
        again.ok("POST", "/v1/boxes/manual/start")
        assert (await again.run("manual", "true"))[2] == 0


async def test_executions_nobody_attaches_to_are_killed(home: Path) -> None:
    with serving(home, environment={"BOXLITE_RECONNECT_GRACE": "0.5"}) as server:
        server.create(name="orphans")
        execution_id = server.exec("orphans", "sh", "-c", "echo $$ > /tmp/pid; exec sleep 1000")
        deadline = time.monotonic() + 20
        while server.request("GET", f"/v1/boxes/orphans/executions/{execution_id}")[0] == 200:
            assert time.monotonic() < deadline, "the orphaned execution was never reaped"
            await asyncio.sleep(0.1)
        _, _, code = await server.run("orphans", "sh", "-c", "kill -0 $(cat /tmp/pid)")
        assert code != 0, "the orphaned process is gone"


async def test_sigterm_closes_clients_and_the_boxes_stay_for_the_next_server(home: Path) -> None:
    with serving(home) as server:
        box = server.create(name="durable")
        execution_id = server.exec("durable", "sleep", "1000")
        socket = await server.attach("durable", execution_id)
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert server.stop() == 0
        assert any("stopped" in line for line in server.log)
    with serving(home) as again:
        listed = again.ok("GET", "/v1/boxes")["boxes"]
        assert [(found["box_id"], found["status"]) for found in listed] == [(box["box_id"], "running")]
        assert (await again.run("durable", "echo", "still here"))[0] == b"still here\n"


async def test_a_killed_server_ends_the_stream_with_an_error_not_a_hang(home: Path) -> None:
    with serving(home) as server:
        server.create(name="cut")
        socket = await server.attach("cut", server.exec("cut", "sleep", "1000"))
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        with pytest.raises(websockets.ConnectionClosedError):
            await asyncio.wait_for(socket.recv(), 30)
    with serving(home) as again:  # the next server takes the boxes over; the fixture removes them
        assert len(again.ok("GET", "/v1/boxes")["boxes"]) == 1


async def test_a_hundred_concurrent_remote_execs(server: Server) -> None:
    server.create(name="busy")

    async def one(number: int) -> tuple[bytes, bytes, int]:
        execution_id = await asyncio.to_thread(server.exec, "busy", "sh", "-c", f"echo {number}; echo {number} >&2; exit {number % 7}")
        async with await server.attach("busy", execution_id) as socket:
            return await follow(socket)

    results = await asyncio.gather(*(one(number) for number in range(100)))
    assert results == [(f"{number}\n".encode(), f"{number}\n".encode(), number % 7) for number in range(100)]
