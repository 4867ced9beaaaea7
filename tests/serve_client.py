"""A small client of ``boxlite serve`` for the tests and the benches: the server as a process on a
free loopback port, its JSON routes over ``http.client`` and its attach WebSocket over
``websockets``."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

KEY = "blk_test_5ecret-key-for-the-suite"


class Server:
    """A ``boxlite serve`` process on a free loopback port, and a small client of its API."""

    def __init__(self, home: Path, *arguments: str, environment: dict[str, str] | None = None, api_key: str | None = KEY) -> None:
        key = ["--api-key", api_key] if api_key is not None else []
        command = [sys.executable, "-m", "boxlite", "--home", str(home), "serve", "--port", "0", *key, *arguments]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, **(environment or {})})
        assert self.process.stderr is not None
        self.log: list[str] = []
        while not (listening := re.search(r"listening on http://(\S+:\d+)$", line := self.process.stderr.readline())):
            assert line, f"the server did not start: {''.join(self.log)}"
            self.log.append(line)  # the runtime's own lines (a box adopted) may come first
        self.address = listening.group(1)
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def logged(self, pattern: str) -> bool:
        """Whether a line of the server's log so far matches ``pattern`` (a regular expression)."""
        return any(re.search(pattern, line) for line in self.log)

    def request(self, method: str, path: str, body: Any = None, *, key: str | None = KEY, raw: bytes | None = None,
                content_type: str = "application/json", headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """The status and the body (JSON decoded when it is JSON)."""
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        headers = {**({"Authorization": f"Bearer {key}"} if key is not None else {}), **(headers or {})}
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if payload is not None:
            headers["Content-Type"] = content_type
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        if response.getheader("content-type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, data

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = self.request(method, path, body)
        assert got == status, f"{method} {path}: {got} {answer}"
        return answer

    def create(self, **body: Any) -> dict[str, Any]:
        box: dict[str, Any] = self.ok("POST", "/v1/boxes", body, status=201)
        return box

    def exec(self, box: str, command: str, *args: str, **settings: Any) -> str:
        created = self.ok("POST", f"/v1/boxes/{box}/exec", {"command": command, "args": list(args), **settings}, status=201)
        execution_id: str = created["execution_id"]
        return execution_id

    async def attach(self, box: str, execution_id: str) -> ClientConnection:
        url = f"ws://{self.address}/v1/boxes/{box}/executions/{execution_id}/attach"
        return await websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None)

    async def run(self, box: str, command: str, *args: str, stdin: bytes | None = None, **settings: Any) -> tuple[bytes, bytes, int]:
        """stdout, stderr and the exit code of a command run through exec and attach."""
        execution_id = self.exec(box, command, *args, **settings)
        async with await self.attach(box, execution_id) as socket:
            if stdin is not None:
                await socket.send(stdin)
                await socket.send(json.dumps({"type": "stdin_eof"}))
            return await follow(socket)

    def stop(self, signal_number: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal_number)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not stop within 60 s of signal {signal_number}") from None
        finally:
            self._drain.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def remove_all(self) -> None:
        for box in self.ok("GET", "/v1/boxes")["boxes"]:
            self.ok("DELETE", f"/v1/boxes/{box['box_id']}?force=true", status=204)


async def follow(socket: ClientConnection) -> tuple[bytes, bytes, int]:
    """Reads an attached execution to its exit frame: stdout, stderr, exit code."""
    streams: dict[int, list[bytes]] = {1: [], 2: []}
    async for message in socket:
        if isinstance(message, bytes):
            streams[message[0]].append(message[1:])
            continue
        note = json.loads(message)
        if note["type"] == "exit":
            return b"".join(streams[1]), b"".join(streams[2]), int(note["exit_code"])
    raise AssertionError("the socket closed without an exit frame")


@contextlib.contextmanager
def serving(home: Path, *arguments: str, environment: dict[str, str] | None = None, api_key: str | None = KEY) -> Iterator[Server]:
    server = Server(home, *arguments, environment=environment, api_key=api_key)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            try:
                server.remove_all()
            finally:
                code = server.stop()
            assert code == 0
        assert not any(KEY in line for line in server.log), "the API key reached the log"


def tar_of(entries: dict[str, bytes | None], *, links: dict[str, str] | None = None, devices: list[str] | None = None) -> bytes:
    """A tar with the given files (None: a directory), symlinks and character devices."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size, info.mode = len(data), 0o750
                archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
        for name in devices or []:
            info = tarfile.TarInfo(name)
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            archive.addfile(info)
    return buffer.getvalue()
