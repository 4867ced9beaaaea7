"""The actors of a boxlite cluster: one host per node, which owns that node's local runtime and
does on it what drivers ask, and one registry of box names for the whole cluster.

Both are detached named actors in the runtime's Ray namespace: they outlive the driver that made
them, so boxes outlive it too, and any driver finds them by name. Every call answers with
``("ok", value)`` or ``("error", class name, message)`` (see ``_wire``); streams yield chunks, or
one such error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import pickle
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import ray

import boxlite

from . import _channel, _wire

#: Bytes in one chunk of a file copied between a driver and a host.
TRANSFER_CHUNK = 1 << 20

#: Chunks of a copy sent ahead of the driver's reader; past them the copy waits for it.
CHUNKS_AHEAD = 16

#: Bytes of one output stream that may be on their way to the driver or wait there unread;
#: past them the stream is not read until the driver's reader takes some.
OUTPUT_WINDOW = 1 << 20

#: How often a host with executions looks for drivers that are gone (``BoxHost._end_orphans``).
DRIVER_CHECK_SECONDS = 2.0

Answer = tuple[Any, ...]


def host_name(node_id: str) -> str:
    """The name of the host actor of a node."""
    return f"boxlite-host-{node_id}"


REGISTRY_NAME = "boxlite-names"


def node_home(node_id: str) -> str:
    """The directory of a node's runtime under the runtime's ``home_dir``: the node id's first
    12 hex digits (48 random bits; the whole id would make box socket paths too long)."""
    return node_id[:12]


async def _answer(work: Any) -> Answer:
    try:
        return ("ok", await work)
    except boxlite.BoxliteError as error:
        described = _wire.error_of(error)
        if described is None:
            raise
        return ("error", *described)


class _Running:
    """An execution the host started, until the driver lets go of it. What happens to it (its
    output, each stream's end, its exit) goes to the driver as events through ``run``'s
    generator. Each stream is read as a local user who took it reads it, and only while the
    driver has room for more (``credit``, granted back as the driver's reader takes output):
    a driver that falls behind holds the process back on its pipe, and nothing piles up here."""

    def __init__(self, box_id: str, execution: boxlite.Execution, driver: str | None) -> None:
        self.box_id = box_id
        #: The Ray job of the driver that follows it through Ray (None: on a connection).
        self.driver = driver
        self.execution = execution
        self.stdin: boxlite.ExecStdin | None = None
        self._events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._credit = {"stdout": OUTPUT_WINDOW, "stderr": OUTPUT_WINDOW}
        self._room = {"stdout": asyncio.Event(), "stderr": asyncio.Event()}
        readers: list[asyncio.Future[None]] = [asyncio.ensure_future(self._read(name, stream)) for name, stream in (("stdout", execution.stdout(text=False)), ("stderr", execution.stderr(text=False)))]
        self._tasks = [*readers, asyncio.ensure_future(self._exit(readers))]

    async def _read(self, name: str, stream: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in stream:
                while self._credit[name] <= 0:
                    self._room[name].clear()
                    await self._room[name].wait()
                self._credit[name] -= len(chunk)
                self._events.put_nowait(("out", name, chunk))
        except boxlite.BoxliteError as error:
            self._events.put_nowait(_failure(error))
        self._events.put_nowait(("end", name))

    async def _exit(self, readers: list[asyncio.Future[None]]) -> None:
        """The exit, after every byte of output (as a local ``wait()``)."""
        await asyncio.wait(readers)
        try:
            self._events.put_nowait(("exit", _wire.record(await self.execution.wait())))
        except boxlite.BoxliteError as error:
            self._events.put_nowait(_failure(error))

    def grant(self, name: str, size: int) -> None:
        self._credit[name] += size
        self._room[name].set()

    async def events(self) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The events in batches (as many as have come), until the exit or a failure."""
        while True:
            batch = [await self._events.get()]
            while not self._events.empty():
                batch.append(self._events.get_nowait())
            yield batch
            if any(event[0] in ("exit", "error") for event in batch):
                return

    def close(self, kill: bool) -> None:
        """Stops following the execution (the events end), and ends it with ``kill``."""
        for task in self._tasks:
            task.cancel()
        self._events.put_nowait(("error", "InvalidStateError", "the execution was let go of"))
        if kill:
            self.execution.close()


def _failure(error: boxlite.BoxliteError) -> tuple[str, str, str]:
    described = _wire.error_of(error)
    return ("error", *described) if described is not None else ("error", "EngineError", str(error))


class _Connection:
    """One driver's connection to a host (``_channel``). What the driver started on it ends
    with it: its executions, and the boxes made for it that it has not received (a box is the
    driver's once its create's caller got it, which the driver tells with ``claimed``)."""

    def __init__(self, host: BoxHost, writer: asyncio.StreamWriter) -> None:
        self.host = host
        self.writer = writer
        self.executions: set[str] = set()
        #: Boxes made for the driver and not yet received, by the key of their create.
        self.unclaimed: dict[str, str] = {}
        #: Executions being started and followed: cancelled when the connection ends.
        self.executing: set[asyncio.Task[None]] = set()
        #: Creates and releases in progress: never cancelled (a create cancelled after its box
        #: was made would leave it), but waited for when the connection ends.
        self.finishing: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def send(self, message: tuple[Any, ...]) -> None:
        self.writer.write(_channel.encode(message))

    async def run(self, key: str, request: tuple[Any, ...]) -> None:
        """Starts an execution and sends the driver its answer, then its events."""
        self.executions.add(key)
        answer = await self.host._start(key, request, None)
        self.send(("answer", key, answer))
        if answer[0] != "ok":
            self.executions.discard(key)
            return
        running = self.host._running.get(key)
        if running is None:  # released as it started
            return
        with contextlib.suppress(ConnectionError):  # the connection's end ends the execution
            async for batch in running.events():
                self.send(("events", key, batch))
                await self.writer.drain()

    async def create(self, key: str, options: Any, name: str | None) -> None:
        answer = await self.host.create(options, name)
        if answer[0] == "ok":
            if key in self.host._abandoned:  # the driver let go of it while it was made
                self.host._abandoned.discard(key)
                await self.host._remove_quietly(answer[1].id)
                return
            self.unclaimed[key] = answer[1].id
        self.send(("answer", key, answer))

    async def release(self, key: str, kill: bool) -> None:
        """The driver let go of an execution, or of a create (``kill``) it did not receive."""
        self.executions.discard(key)
        box_id = self.unclaimed.pop(key, None)
        if box_id is not None:
            await self.host._remove_quietly(box_id)
        else:
            await self.host.release(key, kill)

    async def end(self) -> None:
        """The driver is gone: what it ran ends (what was starting, by its cancellation), and
        the boxes made for it and not received are removed, once their creates are over."""
        for task in self.executing:
            task.cancel()
        await asyncio.gather(*self.finishing, return_exceptions=True)
        for key in self.executions:
            self.host._end(key)
        for box_id in self.unclaimed.values():
            await self.host._remove_quietly(box_id)
        self.writer.close()


class BoxHost:
    """Owns the boxlite runtime of one node, on ``<home_dir>/<node_home(node id)>``."""

    def __init__(self, node_id: str, home_dir: str | None, registries: list[Any], namespace: str) -> None:
        self._node_id = node_id
        self._namespace = namespace
        self._home = Path(home_dir or Path.home() / ".boxlite" / "ray") / node_home(node_id)
        self._registries = registries
        self._runtime: boxlite.Boxlite | None = None
        self._running: dict[str, _Running] = {}
        self._driver_watch: asyncio.Future[None] | None = None
        #: Executions the driver let go of before they started (a cancelled exec's release
        #: may overtake its start): they are ended as soon as they start.
        self._abandoned: set[str] = set()
        self._uploads: dict[str, Path] = {}
        #: Names of boxes being made here, each with how many makings want it.
        self._making: dict[str, int] = {}
        #: Where drivers connect for executions (``channel``), once one asked.
        self._channel: tuple[str, int, bytes] | None = None
        self._server: asyncio.Server | None = None

    # The runtime binds its awaitables to the running loop: it is opened on the actor's loop.
    def _local(self) -> boxlite.Boxlite:
        if self._runtime is None:
            self._home.mkdir(parents=True, exist_ok=True)
            options = boxlite.Options(home_dir=str(self._home), image_registries=_wire.build(self._registries))
            self._runtime = boxlite.Boxlite(options)
        return self._runtime

    async def _box(self, box_id: str) -> boxlite.Box:
        box = await self._local().get(box_id)
        if box is None:
            raise boxlite.NotFoundError(f"box {box_id} not found on node {self._node_id}")
        return box

    def _info(self, info: boxlite.BoxInfo | None) -> Any:
        return _wire.record(info, node=self._node_id) if info is not None else None

    def _transfers(self) -> Path:
        path = self._home / "transfers"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- the runtime's verbs -------------------------------------------------------------

    async def create(self, options: Any, name: str | None) -> Answer:
        async def work() -> Any:
            box = await self._local().create(_wire.build(options), name)
            return self._info(await box.info())

        return await _answer(self._named(name, work()))

    async def get_info(self, id_or_name: str) -> Answer:
        async def work() -> Any:
            return self._info(await self._local().get_info(id_or_name))

        return await _answer(work())

    async def list_info(self) -> Answer:
        async def work() -> Any:
            return [self._info(info) for info in await self._local().list_info()]

        return await _answer(work())

    async def remove(self, id_or_name: str, force: bool) -> Answer:
        async def work() -> None:
            info = await self._local().get_info(id_or_name)
            await self._local().remove(id_or_name, force)
            if info is not None:
                self._forget_box(info.id)

        return await _answer(work())

    async def metrics(self) -> Answer:
        async def work() -> Any:
            return _wire.record(await self._local().metrics())

        return await _answer(work())

    async def load(self) -> tuple[int, int]:
        """How busy this node is: its boxes that run or are about to (configured), then all its
        boxes."""
        infos = await self._local().list_info()
        return (sum(1 for info in infos if info.state.status in ("configured", "running")), len(infos))

    async def shutdown(self, timeout: int | None) -> Answer:
        """Stops the node's boxes that are not detached and closes its runtime; the actor is
        then killed by the driver."""

        async def work() -> None:
            for key in list(self._running):
                self._end(key)
            if self._server is not None:
                self._server.close()
                self._server, self._channel = None, None
            if self._runtime is not None:
                await self._runtime.shutdown(timeout)
                self._runtime.close()
                self._runtime = None
            shutil.rmtree(self._home / "transfers", ignore_errors=True)

        return await _answer(work())

    # --- a box's verbs -------------------------------------------------------------------

    async def box_info(self, box_id: str) -> Answer:
        async def work() -> Any:
            return self._info(await (await self._box(box_id)).info())

        return await _answer(work())

    async def start(self, box_id: str) -> Answer:
        async def work() -> None:
            await (await self._box(box_id)).start()

        return await _answer(work())

    async def stop(self, box_id: str) -> Answer:
        async def work() -> None:
            await (await self._box(box_id)).stop()
            self._forget_box(box_id)

        return await _answer(work())

    async def box_metrics(self, box_id: str) -> Answer:
        async def work() -> Any:
            return _wire.record(await (await self._box(box_id)).metrics())

        return await _answer(work())

    async def clone_box(self, box_id: str, name: str | None) -> Answer:
        async def work() -> Any:
            clone = await (await self._box(box_id)).clone_box(name=name)
            return self._info(await clone.info())

        return await _answer(self._named(name, work()))

    async def _named(self, name: str | None, making: Coroutine[Any, Any, Any]) -> Any:
        """Makes a box named ``name`` here: the name is marked as being made here, then reserved
        in the cluster (``NameRegistry``), the box made, and the reservation let go if it was
        not. The host, not the driver, does it, so a driver that dies meanwhile changes nothing."""
        if name is None:
            return await making
        self._making[name] = self._making.get(name, 0) + 1
        try:
            await self._reserve(name)
            try:
                return await making
            except BaseException:
                if not await self.name_in_use(name, making_here=1):
                    ray.get_actor(REGISTRY_NAME, namespace=self._namespace).release.remote(name, self._node_id)
                raise
        finally:
            making.close()
            self._making[name] -= 1
            if not self._making[name]:
                del self._making[name]

    async def _reserve(self, name: str) -> None:
        """Reserves ``name`` for a box here; a holder whose node has no such box and makes none
        (or is lost) gives way."""
        registry = ray.get_actor(REGISTRY_NAME, namespace=self._namespace)
        holder = await registry.reserve.remote(name, self._node_id, None)
        if holder is None:
            return
        if holder == self._node_id:
            in_use = await self.name_in_use(name, making_here=1)
        else:
            try:
                in_use = await ray.get_actor(host_name(holder), namespace=self._namespace).name_in_use.remote(name)
            except (ValueError, ray.exceptions.RayActorError):  # its host, or its node, is gone
                in_use = False
        if in_use or await registry.reserve.remote(name, self._node_id, holder) is not None:
            raise boxlite.InvalidArgumentError(f"box with name '{name}' already exists")

    async def name_in_use(self, name: str, making_here: int = 0) -> bool:
        """Whether a box named ``name`` is here or being made here (besides ``making_here`` of
        the caller's own)."""
        return self._making.get(name, 0) > making_here or await self._local().get_info(name) is not None

    async def snapshot(self, box_id: str, verb: str, *args: Any) -> Answer:
        """One of ``SnapshotHandle``'s verbs on the box's snapshots; what it gives, as records."""

        async def work() -> Any:
            snapshots = (await self._box(box_id)).snapshot
            if verb == "create":
                made = await snapshots.create(name=args[0])
                return _wire.record(made)
            if verb == "list":
                return [_wire.record(info) for info in await snapshots.list()]
            if verb == "get":
                found = await snapshots.get(args[0])
                return None if found is None else _wire.record(found)
            if verb == "remove":
                return await snapshots.remove(args[0])
            if verb == "restore":
                return await snapshots.restore(args[0])
            raise boxlite.InvalidArgumentError(f"snapshots have no verb {verb!r}")

        return await _answer(work())

    def _forget_box(self, box_id: str) -> None:
        for key in [key for key, running in self._running.items() if running.box_id == box_id]:
            self._end(key)

    # --- executions ----------------------------------------------------------------------

    async def _start(self, key: str, request: tuple[Any, ...], driver: str | None) -> Answer:
        """Starts a command (``request``: box id, command, args, env, tty, user, timeout, cwd)
        as the execution ``key``, which the driver chose; its answer: ``("ok", execution id)``
        or an error. ``driver``: the Ray job whose end ends the execution (``_end_orphans``),
        for one not followed on a connection (which ends it when it closes)."""
        box_id, command, args, env, tty, user, timeout_secs, cwd = request

        async def start() -> str:
            box = await self._box(box_id)
            execution = await box.exec(command, args, env, tty, user, timeout_secs, cwd)
            if key in self._abandoned:  # the driver let go of it while it started
                self._abandoned.discard(key)
                execution.close()
                raise boxlite.InvalidStateError(f"execution {key} was cancelled")
            self._running[key] = _Running(box_id, execution, driver)
            if driver is not None and (self._driver_watch is None or self._driver_watch.done()):
                self._driver_watch = asyncio.ensure_future(self._end_orphans())
            return execution.id()

        return await _answer(start())

    @ray.method(num_returns="streaming")
    async def run(self, driver: str, key: str, *request: Any) -> AsyncIterator[Any]:
        """Starts a command and follows it through Ray (where a driver has no connection,
        ``channel``): first its answer (``_start``), then lists of its events (``_Running``)
        up to its exit."""
        answer = await self._start(key, request, driver)
        if answer[0] != "ok":
            yield answer
            return
        try:
            yield answer
            async for batch in self._running[key].events():
                yield batch
        except (asyncio.CancelledError, GeneratorExit):
            # The driver cancelled the call (while it ran, or while an item was on its way):
            # nobody follows the execution any more, so it ends.
            self._end(key)
            raise

    def _end(self, key: str) -> None:
        running = self._running.pop(key, None)
        if running is not None:
            running.close(kill=True)

    async def channel(self) -> tuple[str, int, bytes]:
        """Where drivers connect for executions, and the token they show (``_channel``)."""
        if self._channel is None:
            token = secrets.token_bytes(_channel.TOKEN_BYTES)
            ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            server = await asyncio.start_server(lambda reader, writer: self._serve(reader, writer, token), host=ip, port=0)
            self._channel = (ip, server.sockets[0].getsockname()[1], token)
            self._server = server
        return self._channel

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: bytes) -> None:
        """One driver's connection (rules of ``_channel``)."""
        connection = _Connection(self, writer)
        try:
            if not hmac.compare_digest(await _channel.read_raw(reader, _channel.TOKEN_BYTES), token):
                return
            while True:
                kind, key, *rest = await _channel.read(reader)
                if kind == "run":
                    connection.spawn(connection.run(key, tuple(rest)), connection.executing)
                elif kind == "create":
                    connection.spawn(connection.create(key, *rest), connection.finishing)
                elif kind == "claimed":
                    connection.unclaimed.pop(key, None)
                elif kind == "grant":
                    await self.grant(key, *rest)
                elif kind == "release":  # may remove a box: the connection reads on meanwhile
                    connection.spawn(connection.release(key, *rest), connection.finishing)
        except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError, ValueError, TypeError):
            pass
        finally:
            await connection.end()

    async def _remove_quietly(self, box_id: str) -> None:
        """Removes a box nobody received (its create's caller is gone, or let go of it)."""
        with contextlib.suppress(boxlite.BoxliteError):
            await self._local().remove(box_id, True)
        self._forget_box(box_id)

    async def _end_orphans(self) -> None:
        """Ends the executions whose driver is gone, while there are executions: nobody can
        read them, wait for them or close them any more, and Ray does not cancel a streaming
        call whose caller died. Ray tells no one of a job's end, so its job table is looked at
        every ``DRIVER_CHECK_SECONDS``."""
        while self._running:
            await asyncio.sleep(DRIVER_CHECK_SECONDS)
            jobs = await asyncio.to_thread(ray._private.state.jobs)
            gone = {job["JobID"] for job in jobs if job["IsDead"]}
            for key, running in list(self._running.items()):
                if running.driver in gone:
                    logging.getLogger("boxlite").info("execution %s of box %s ended: its driver (Ray job %s) is gone", key, running.box_id, running.driver)
                    self._running.pop(key).close(kill=True)

    def _execution(self, key: str) -> _Running:
        try:
            return self._running[key]
        except KeyError:
            raise boxlite.NotFoundError(f"execution {key} not found on node {self._node_id} (its box stopped, or it was closed)") from None

    async def grant(self, key: str, stream: str, size: int) -> None:
        """The driver has room for ``size`` more bytes of ``stream``."""
        running = self._running.get(key)
        if running is not None:
            running.grant(stream, size)

    async def send_input(self, execution_id: str, data: bytes) -> Answer:
        async def work() -> None:
            running = self._execution(execution_id)
            if running.stdin is None:
                running.stdin = running.execution.stdin()
            await running.stdin.send_input(data)

        return await _answer(work())

    async def close_input(self, execution_id: str) -> Answer:
        async def work() -> None:
            running = self._execution(execution_id)
            if running.stdin is None:
                running.stdin = running.execution.stdin()
            await running.stdin.close()

        return await _answer(work())

    async def kill(self, execution_id: str) -> Answer:
        async def work() -> None:
            await self._execution(execution_id).execution.kill()

        return await _answer(work())

    async def signal(self, execution_id: str, signal: int) -> Answer:
        async def work() -> None:
            await self._execution(execution_id).execution.signal(signal)

        return await _answer(work())

    async def resize_tty(self, execution_id: str, rows: int, cols: int) -> Answer:
        async def work() -> None:
            await self._execution(execution_id).execution.resize_tty(rows, cols)

        return await _answer(work())

    async def release(self, execution_id: str, kill: bool) -> None:
        """The driver let go of the execution: it is forgotten here, and ended unless it
        exited (``kill``: the driver closed it, or cancelled it as it started; then one that
        has not started yet, or a box being made under that key, ends as soon as it is)."""
        running = self._running.pop(execution_id, None)
        if running is not None:
            running.close(kill)
        elif kill:
            self._abandoned.add(execution_id)

    # --- copies --------------------------------------------------------------------------

    async def upload_begin(self) -> Answer:
        """A file on this node that the next chunks go into."""
        handle, path = tempfile.mkstemp(dir=self._transfers(), prefix="upload-")
        os.close(handle)
        self._uploads[Path(path).name] = Path(path)
        return ("ok", Path(path).name)

    async def upload_chunk(self, upload: str, chunk: bytes) -> Answer:
        with self._uploads[upload].open("ab") as file:
            await asyncio.to_thread(file.write, chunk)
        return ("ok", None)

    async def upload_drop(self, upload: str) -> None:
        """An upload the driver gave up on."""
        path = self._uploads.pop(upload, None)
        if path is not None:
            path.unlink(missing_ok=True)

    async def upload_end(self, upload: str, box_id: str, name: str, is_tar: bool, contents_only: bool, dest: str, options: Any) -> Answer:
        """Copies what was uploaded into the box (unpacking it first when it is a tar of a
        directory) under the name it had on the driver, so ``copy_in``'s conventions hold."""
        archive = self._uploads.pop(upload)
        staging = Path(tempfile.mkdtemp(dir=self._transfers(), prefix="in-"))

        async def work() -> None:
            source = staging / name
            if is_tar:
                await asyncio.to_thread(_wire.extract, archive, source)
            else:
                archive.rename(source)
            host_path = f"{source}/." if contents_only else str(source)
            await (await self._box(box_id)).copy_in(host_path, dest, _wire.build(options))

        try:
            return await _answer(work())
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)

    @ray.method(num_returns="streaming", _generator_backpressure_num_objects=CHUNKS_AHEAD)
    async def download(self, box_id: str, source: str, options: Any) -> AsyncIterator[Answer]:
        """Copies ``source`` out of the box on this node, then streams it: first ``("ok",
        is_tar)``, then its bytes in chunks (a tar when it is a directory)."""
        staging = Path(tempfile.mkdtemp(dir=self._transfers(), prefix="out-"))
        try:
            payload = staging / "payload"
            try:
                await (await self._box(box_id)).copy_out(source, str(payload), _wire.build(options))
            except boxlite.BoxliteError as error:
                described = _wire.error_of(error)
                if described is None:
                    raise
                yield ("error", *described)
                return
            is_tar = payload.is_dir()
            if is_tar:
                archive = staging / "payload.tar"
                await asyncio.to_thread(_wire.tar_directory, payload, archive)
                payload = archive
            yield ("ok", is_tar)
            with payload.open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, TRANSFER_CHUNK):
                    yield ("ok", chunk)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class NameRegistry:
    """Which node holds each named box, for the whole cluster: a name is reserved before its
    box is made, so two drivers cannot make two boxes of one name on two nodes."""

    def __init__(self) -> None:
        self._nodes: dict[str, str] = {}

    def reserve(self, name: str, node_id: str, replacing: str | None) -> str | None:
        """Reserves ``name`` for a box on ``node_id``; returns the node that holds it instead,
        if another does. ``replacing``: the holder the caller found stale (its box is gone),
        whose reservation is taken over if it is still the holder."""
        holder = self._nodes.get(name)
        if holder is not None and holder != replacing:
            return holder
        self._nodes[name] = node_id
        return None

    def lookup(self, name: str) -> str | None:
        return self._nodes.get(name)

    def release(self, name: str, node_id: str) -> None:
        if self._nodes.get(name) == node_id:
            del self._nodes[name]
