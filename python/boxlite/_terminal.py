"""Connecting an execution to this process's own terminal or standard streams: used by the CLI
and by ``InteractiveBox``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from ._native import ExecStream, Execution, ExitStatus

__all__ = ["forward"]


async def _pump(stream: ExecStream, sink: TextIO) -> None:
    async for chunk in stream:
        assert isinstance(chunk, bytes)
        sink.buffer.write(chunk)
        sink.flush()


def _raw_terminal(fd: int) -> Callable[[], None]:
    """Puts the terminal on ``fd`` in raw mode; returns what restores it."""
    import termios
    import tty as terminal

    saved = termios.tcgetattr(fd)
    terminal.setraw(fd, termios.TCSANOW)  # TCSAFLUSH would drop what was typed ahead
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


#: What a terminal's reader takes as end of file (VEOF, ^D) at the start of a line; after
#: other input on the line, it first hands that input over.
_END_OF_FILE = b"\x04"
#: Chunks read ahead of what the execution took before reading pauses.
_READ_AHEAD = 16


async def _send_input(execution: Execution, fd: int, *, box_terminal: bool) -> None:
    """Sends what ``fd`` gives to the execution's stdin, in order and as the execution takes it,
    then ends that stdin at end of file: on a terminal in the box, with the terminal's
    end-of-file character, as a user ends a shell's input. A terminal, pipe or socket is read
    when the loop finds it readable (only then: ``fd`` stays blocking, as it is shared with
    whatever else holds it); a regular file or ``/dev/null``, which the loop cannot wait on and
    which never blocks, is read straight away."""
    loop = asyncio.get_running_loop()
    stdin = execution.stdin()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    reading = False

    def read_ready() -> None:
        nonlocal reading
        try:
            data = os.read(fd, 65536)
        except OSError:  # a terminal hung up: its end of input
            data = b""
        chunks.put_nowait(data)
        if not data or chunks.qsize() >= _READ_AHEAD:
            loop.remove_reader(fd)
            reading = False

    def read_when_ready() -> bool:
        nonlocal reading
        try:
            loop.add_reader(fd, read_ready)
        except PermissionError:
            return False
        reading = True
        return True

    waited = read_when_ready()
    line_open = False
    try:
        while True:
            if waited:
                if chunks.empty() and not reading:
                    read_when_ready()
                data = await chunks.get()
            else:
                data = os.read(fd, 65536)
            if not data:
                break
            await stdin.send_input(data)
            line_open = not data.endswith(b"\n")
    finally:
        if reading:
            loop.remove_reader(fd)
    if box_terminal:
        await stdin.send_input(_END_OF_FILE * (2 if line_open else 1))
    await stdin.close()


async def forward(execution: Execution, *, interactive: bool, tty: bool, box_terminal: bool | None = None) -> ExitStatus:
    """Copies the execution's output to ``sys.stdout``/``sys.stderr`` as bytes, as it comes.
    With ``interactive``, ``sys.stdin`` goes to the execution until it reaches end of file;
    otherwise the execution's stdin is closed at once. With ``tty`` and a terminal on stdin, that
    terminal is raw and its size follows to the execution until it ends. ``box_terminal``: the
    execution runs on a terminal in the box (default: ``tty``). Returns its exit."""
    loop = asyncio.get_running_loop()
    pumps = [asyncio.ensure_future(_pump(execution.stdout(text=False), sys.stdout))]
    if not tty:
        pumps.append(asyncio.ensure_future(_pump(execution.stderr(text=False), sys.stderr)))
    restore: Callable[[], None] | None = None
    sending: asyncio.Future[None] | None = None
    if not interactive:
        await execution.stdin().close()  # end of file, as docker gives a command without -i
    else:
        fd = sys.stdin.fileno()
        if tty and os.isatty(fd):
            restore = _raw_terminal(fd)

            def resize() -> None:
                size = os.get_terminal_size(fd)
                asyncio.ensure_future(execution.resize_tty(size.lines, size.columns))

            resize()
            loop.add_signal_handler(signal.SIGWINCH, resize)
        sending = asyncio.ensure_future(_send_input(execution, fd, box_terminal=tty if box_terminal is None else box_terminal))
    try:
        await asyncio.gather(*pumps)
        return await execution.wait()
    finally:
        if sending is not None:
            # Input past the execution's end has nowhere to go.
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        if restore is not None:
            loop.remove_signal_handler(signal.SIGWINCH)
            restore()
