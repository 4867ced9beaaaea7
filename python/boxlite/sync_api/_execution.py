"""Sync wrappers of an execution and its streams."""

from __future__ import annotations

from collections.abc import Iterator

from .._native import ExecStdin, ExecStream, Execution, ExitStatus
from ._runner import LoopThread

__all__ = ["SyncExecStdin", "SyncExecStream", "SyncExecution"]


class SyncExecStream:
    """An output stream as a plain iterator: ``for chunk in execution.stdout(): ...``."""

    def __init__(self, runner: LoopThread, stream: ExecStream) -> None:
        self._runner = runner
        self._stream = stream

    def __iter__(self) -> Iterator[str | bytes]:
        return self

    def __next__(self) -> str | bytes:
        async def next_chunk() -> str | bytes | None:
            try:
                chunk: str | bytes = await self._stream.__anext__()
            except StopAsyncIteration:
                return None
            return chunk

        chunk = self._runner.run(next_chunk)
        if chunk is None:
            raise StopIteration
        return chunk


# BoxLite's names for the two output streams.
SyncExecStdout = SyncExecStream
SyncExecStderr = SyncExecStream


class SyncExecStdin:
    def __init__(self, runner: LoopThread, stdin: ExecStdin) -> None:
        self._runner = runner
        self._stdin = stdin

    def send_input(self, data: bytes) -> None:
        self._runner.run(lambda: self._stdin.send_input(data))

    def close(self) -> None:
        self._runner.run(self._stdin.close)


class SyncExecution:
    def __init__(self, runner: LoopThread, execution: Execution) -> None:
        self._runner = runner
        self._execution = execution

    @property
    def id(self) -> str:
        return self._execution.id()

    def stdout(self, *, text: bool = True) -> SyncExecStream:
        return SyncExecStream(self._runner, self._execution.stdout(text=text))

    def stderr(self, *, text: bool = True) -> SyncExecStream:
        return SyncExecStream(self._runner, self._execution.stderr(text=text))

    def stdin(self) -> SyncExecStdin:
        return SyncExecStdin(self._runner, self._execution.stdin())

    def wait(self) -> ExitStatus:
        return self._runner.run(self._execution.wait)

    def kill(self) -> None:
        self._runner.run(self._execution.kill)

    def signal(self, signal: int) -> None:
        self._runner.run(lambda: self._execution.signal(signal))

    def resize_tty(self, rows: int, cols: int) -> None:
        self._runner.run(lambda: self._execution.resize_tty(rows, cols))

    def close(self) -> None:
        self._runner.run(self._execution.aclose)
