"""Executions of boxes on a Ray cluster, on the driver's side: one streaming call to the box's
host carries an execution (``BoxHost.run``: the exec's answer, then its output and exit as
events), which a task here follows from the start, delivering the output into per-stream
windows (rule 4 of ``_client``) and the exit to whoever waits."""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

import ray

from .. import errors
from . import _host
from ._wire import Record, node_lost, unwrap

if TYPE_CHECKING:
    from ._channel import Channel
    from ._client import RayBoxlite

__all__ = ["RayExecStdin", "RayExecStream", "RayExecution"]


#: The status of an execution closed before its exit was known (as a local ``close()``'s).
FORCED_EXIT = Record(
    "ExitStatus",
    {"exit_code": -1, "signal": None, "error_message": "the execution was closed before the process exited", "timed_out": False, "forced": True, "success": False},
)


def cancel(call: Any) -> None:
    """Cancels an actor call (or a streaming call's generator); one that is over is left be."""
    with contextlib.suppress(Exception):
        ray.cancel(call)


class _Output:
    """One output stream of a remote execution, as it arrives on the driver (rule 4): the host
    sends at most ``OUTPUT_WINDOW`` bytes beyond what the reader took, and is granted more as
    the reader takes it. Once the exit is awaited, a stream nobody took is granted all it
    sends, and keeps its newest ``KEPT_UNREAD`` bytes, as a local ``wait()`` does."""

    KEPT_UNREAD = 8 << 20

    def __init__(self, grant: Callable[[str, int], None], name: str) -> None:
        self._grant = grant
        self._name = name
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._ended = False
        self._error: BaseException | None = None
        self._more = asyncio.Event()
        self._dropping = False
        self._ungranted = 0
        self.taken = False

    def add(self, chunk: bytes) -> None:
        if self._ended:  # a close() stopped the stream
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._dropping:
            while self._size > self.KEPT_UNREAD:
                self._size -= len(self._chunks.popleft())
            self._took(len(chunk))
        self._more.set()

    def end(self, error: BaseException | None = None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._more.set()

    def drop_unread(self) -> None:
        if not self._dropping:
            self._dropping = True
            self._took(_host.OUTPUT_WINDOW)

    def _took(self, size: int) -> None:
        self._ungranted += size
        if self._ungranted >= _host.OUTPUT_WINDOW // 2:
            self._grant(self._name, self._ungranted)
            self._ungranted = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._size -= len(chunk)
                if not self._dropping:
                    self._took(len(chunk))
                yield chunk
            elif self._ended:
                if self._error is not None:
                    raise self._error
                return
            else:
                self._more.clear()
                await self._more.wait()


class RayExecStream:
    """One output stream of a remote execution: ``async for chunk in stream`` yields str (text
    mode) or bytes, as ``ExecStream``."""

    def __init__(self, chunks: AsyncIterator[bytes], text: bool) -> None:
        self._chunks = chunks
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if text else None
        self._ended = False

    def __aiter__(self) -> RayExecStream:
        return self

    async def __anext__(self) -> Any:
        while not self._ended:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                if self._decoder is not None and (rest := self._decoder.decode(b"", final=True)):
                    return rest
                break
            if self._decoder is None:
                return chunk
            if text := self._decoder.decode(chunk):
                return text
        raise StopAsyncIteration


class RayExecStdin:
    """The stdin of a remote execution, as ``ExecStdin``."""

    def __init__(self, execution: RayExecution) -> None:
        self._execution = execution
        self._closed = False

    async def send_input(self, data: bytes) -> None:
        if self._closed:
            raise errors.InvalidStateError("stdin was closed")
        await self._execution._call("send_input", bytes(data))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._execution._call("close_input")

    async def is_closed(self) -> bool:
        return self._closed


class RayExecution:
    """A process running in a box of the cluster, with the API of ``Execution``. Its output and
    exit come as events over its link to the host (a connection, or a streaming Ray call),
    which a task of this object follows from the start. The host keeps the execution until
    this object is closed or dropped."""

    def __init__(self, runtime: RayBoxlite, node_id: str, key: str, execution_id: str, link: ChannelLink | RayLink) -> None:
        self._runtime = runtime
        self._node = node_id
        self._key = key
        self._id = execution_id
        self._link = link
        self._exit: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        grant = _granting(link, self._exit)
        self._outputs = {"stdout": _Output(grant, "stdout"), "stderr": _Output(grant, "stderr")}
        # An exit nobody awaited must not log an unretrieved exception.
        self._exit.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._stdin: RayExecStdin | None = None
        self._release = weakref.finalize(self, link.release, False)
        runtime._follow(_follow(link.batches(), self._outputs, self._exit))

    def __repr__(self) -> str:
        return f"RayExecution(id={self._id!r}, node={self._node!r})"

    def id(self) -> str:
        return self._id

    async def _call(self, method: str, *args: Any) -> Any:
        return await self._runtime._call(self._node, method, self._key, *args)

    def _stream(self, kind: str, text: bool) -> RayExecStream:
        output = self._outputs[kind]
        if output.taken:
            raise RuntimeError(f"{kind} was already taken")
        output.taken = True
        return RayExecStream(output.chunks(), text)

    def stdout(self, *, text: bool = True) -> RayExecStream:
        return self._stream("stdout", text)

    def stderr(self, *, text: bool = True) -> RayExecStream:
        return self._stream("stderr", text)

    def stdin(self) -> RayExecStdin:
        if self._stdin is None:
            self._stdin = RayExecStdin(self)
        return self._stdin

    async def wait(self) -> Record:
        """Resolves once the process ended and all its output was delivered. Repeatable."""
        for output in self._outputs.values():
            if not output.taken:
                output.drop_unread()
        return await asyncio.shield(self._exit)

    async def kill(self) -> None:
        await self._call("kill")

    async def signal(self, signal: int) -> None:
        if not 1 <= signal <= 64:
            raise errors.InvalidArgumentError(f"signal must be within 1..64, got {signal}")
        await self._call("signal", signal)

    async def resize_tty(self, rows: int, cols: int) -> None:
        if rows < 1 or cols < 1:
            raise errors.InvalidArgumentError(f"a terminal is at least 1x1, got {rows}x{cols}")
        await self._call("resize_tty", rows, cols)

    def close(self) -> None:
        """Ends the execution now: the host kills its process group unless it exited."""
        if self._release.alive:
            self._release.detach()
            running = not self._exit.done()
            self._link.release(running)
            if running:  # as a local close(): the streams stop, and the status says forced
                for output in self._outputs.values():
                    output.end()
                self._exit.set_result(FORCED_EXIT)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> RayExecution:
        return self

    async def __aexit__(self, *_exc: object) -> Literal[False]:
        self.close()
        return False


class ChannelLink:
    """An execution's link to its host over the driver's connection to it (``_channel``)."""

    def __init__(self, channel: Channel, key: str) -> None:
        self._channel = channel
        self._key = key

    def batches(self) -> AsyncIterator[list[tuple[Any, ...]]]:
        return self._channel.batches(self._key)

    def grant(self, stream: str, size: int) -> None:
        self._channel.grant(self._key, stream, size)

    def release(self, kill: bool) -> None:
        self._channel.release(self._key, kill)


class RayLink:
    """An execution's link to its host through Ray: the streaming call ``BoxHost.run`` carries
    its events, and actor calls the grants and the release."""

    def __init__(self, runtime: RayBoxlite, node_id: str, key: str, events: Any) -> None:
        self._runtime = runtime
        self._node = node_id
        self._key = key
        self._events = events

    async def batches(self) -> AsyncIterator[list[tuple[Any, ...]]]:
        try:
            async for ref in self._events:
                yield await self._runtime._await(ref, self._node)
        except ray.exceptions.RayActorError as error:
            raise node_lost(self._node, error) from None
        except asyncio.CancelledError:
            cancel(self._events)
            raise

    def grant(self, stream: str, size: int) -> None:
        self._runtime._host(self._node).grant.remote(self._key, stream, size)

    def release(self, kill: bool) -> None:
        """Tells the host to forget the execution (fire and forget: a host that is gone forgot
        it). Not once this process left Ray: a call then would start a Ray of its own."""
        if ray.is_initialized():
            with contextlib.suppress(Exception):
                self._runtime._host(self._node).release.remote(self._key, kill)


def _granting(link: ChannelLink | RayLink, exited: asyncio.Future[Record]) -> Callable[[str, int], None]:
    """How an execution's streams grant its host room for more output (until its exit). Holds
    no reference to the ``RayExecution``, so that dropping it releases the execution."""

    def grant(stream: str, size: int) -> None:
        if not exited.done():
            link.grant(stream, size)

    return grant


async def _follow(batches: AsyncIterator[list[tuple[Any, ...]]], outputs: dict[str, _Output], exited: asyncio.Future[Record]) -> None:
    """Delivers an execution's events to its streams and its exit. Holds no reference to the
    ``RayExecution``, so that dropping it releases the execution."""
    failure: BaseException | None = None
    try:
        async for batch in batches:
            for event in batch:
                if event[0] == "out":
                    outputs[event[1]].add(event[2])
                elif event[0] == "end":
                    outputs[event[1]].end()
                elif event[0] == "exit":
                    if not exited.done():  # a close() may have forced it
                        exited.set_result(event[1])
                else:
                    unwrap(event)
    except asyncio.CancelledError:
        failure = errors.RuntimeClosedError("the runtime was closed while the execution ran")
    except Exception as error:  # noqa: BLE001 - whatever ended the events ends the execution's waiters
        failure = error
    if failure is None and not exited.done():
        failure = errors.EngineError("the execution's events ended before its exit")
    if failure is not None:
        for output in outputs.values():
            output.end(failure)
        if not exited.done():
            exited.set_exception(failure)
