"""Executions and creates over a direct connection between a driver and a node's host (rule 5
of ``_client``), in place of Ray actor calls: one TCP connection from a driver to each host it
uses, which carries every execution's start, its events and the driver's grants and releases,
and the creates of boxes on that node. A Ray actor call costs about a millisecond here; a
message on the connection, tens of microseconds.

Rules:

1. The host listens on its node's address, on a port of the system's choosing, and tells it
   with a token of 32 random bytes to whoever asks it through Ray (``BoxHost.channel``): a
   connection is served only once it has sent the token, compared in constant time, before
   anything it sends is unpickled. Who may call the host's actor may use its connection.
2. A message is a 4-byte big-endian length and a pickle of a tuple whose first two items are
   its kind and the key of the request it belongs to, which the driver chose. Driver to host:
   ``("run", key, box id, command, args, env, tty, user, timeout, cwd)``, ``("create", key,
   options, name)``, ``("claimed", key)`` (the create's caller received its box), ``("grant",
   key, stream, size)``, ``("release", key, kill)`` (an execution let go of, or a create its
   caller cancelled). Host to driver: ``("answer", key, answer)``, then for an execution
   ``("events", key, batch)`` up to the batch with the exit or an error (``_host._Running``).
3. A connection that ends ends what the driver started on it (``_host._Connection``): its
   executions (their processes are killed), the creates in progress and the boxes made for it
   that it never received. A driver that dies lets go of all of that, as the async core's
   cancellation does locally. On the driver, every request on it fails with
   ``NodeLostError``, and the next one makes a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import struct
from collections.abc import AsyncIterator
from typing import Any

from .. import errors
from ._wire import node_lost

__all__: list[str] = []

HEADER = struct.Struct("!I")
#: A message larger than this ends the connection (the largest is a batch of output, at most
#: two output windows).
MAX_MESSAGE = 64 << 20
TOKEN_BYTES = 32
#: How long a driver tries to connect to a host before it uses Ray actor calls instead.
CONNECT_SECONDS = 2.0


def encode(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(data)) + data


async def read_raw(reader: asyncio.StreamReader, limit: int) -> bytes:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > limit:
        raise ConnectionError(f"a message of {size} bytes is over the limit of {limit}")
    return await reader.readexactly(size)


async def read(reader: asyncio.StreamReader) -> Any:
    return pickle.loads(await read_raw(reader, MAX_MESSAGE))


def is_last(batch: list[tuple[Any, ...]]) -> bool:
    """The batch that ends an execution's events."""
    return any(event[0] in ("exit", "error") for event in batch)


class Channel:
    """The driver's end of a connection to one node's host."""

    def __init__(self, node_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._node = node_id
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._answers: dict[str, asyncio.Future[Any]] = {}
        self._events: dict[str, asyncio.Queue[Any]] = {}
        self.lost: BaseException | None = None
        self._reading = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, node_id: str, address: tuple[str, int, bytes]) -> Channel:
        ip, port, token = address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), CONNECT_SECONDS)
        writer.write(HEADER.pack(len(token)) + token)
        return cls(node_id, reader, writer)

    async def _request(self, key: str, message: tuple[Any, ...]) -> tuple[Any, ...]:
        """Sends a request; its answer. A request given up on (cancelled) is released."""
        if self.lost is not None:
            raise self.lost
        answered: asyncio.Future[Any] = self._loop.create_future()
        self._answers[key] = answered
        self._send(message)
        try:
            answer: tuple[Any, ...] = await answered
        except BaseException:
            self.release(key, kill=True)
            raise
        finally:
            self._answers.pop(key, None)
        return answer

    async def start(self, key: str, request: tuple[Any, ...]) -> tuple[Any, ...]:
        """Starts an execution on the host; its answer. A cancelled start is released, and
        ended on the host as soon as it starts."""
        self._events[key] = asyncio.Queue()
        try:
            answer = await self._request(key, ("run", key, *request))
        except BaseException:
            self._events.pop(key, None)
            raise
        if answer[0] != "ok":
            self._events.pop(key, None)
        return answer

    async def create(self, key: str, options: Any, name: str | None) -> tuple[Any, ...]:
        """Makes a box on the host; the answer. The box is this driver's once this returns (the
        host removes it if the connection ends before); a cancelled create removes it."""
        answer = await self._request(key, ("create", key, options, name))
        if answer[0] == "ok":
            self._send(("claimed", key))
        return answer

    async def batches(self, key: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The execution's events, in the batches the host sent them in, up to the last."""
        queue = self._events[key]
        try:
            while True:
                batch = await queue.get()
                if isinstance(batch, BaseException):
                    raise batch
                yield batch
                if is_last(batch):
                    return
        finally:
            self._events.pop(key, None)

    def grant(self, key: str, stream: str, size: int) -> None:
        self._send(("grant", key, stream, size))

    def release(self, key: str, kill: bool) -> None:
        """Lets go of an execution, or of a create (``kill``); from any thread (a finalizer's),
        after the loop closed too."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._send, ("release", key, kill))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self.lost is None and not self._writer.is_closing():
            self._writer.write(encode(message))

    async def _read(self) -> None:
        try:
            while True:
                kind, key, value = await read(self._reader)
                if kind == "answer":
                    answered = self._answers.get(key)
                    if answered is not None and not answered.done():
                        answered.set_result(value)
                elif (queue := self._events.get(key)) is not None:
                    queue.put_nowait(value)
        except asyncio.CancelledError:
            self._end(errors.RuntimeClosedError("the runtime was closed while the execution ran"))
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError) as error:
            self._end(node_lost(self._node, error))

    def _end(self, error: BaseException) -> None:
        self.lost = error
        for answered in self._answers.values():
            if not answered.done():
                answered.set_exception(error)
        for queue in self._events.values():
            queue.put_nowait(error)
        self._writer.close()

    def close(self) -> None:
        """Ends the connection (what waits on it fails with ``RuntimeClosedError``); from any
        thread."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._reading.cancel)
