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


async def forward(execution: Execution, *, interactive: bool, tty: bool) -> ExitStatus:
    """Copies the execution's output to ``sys.stdout``/``sys.stderr`` as bytes, as it comes.
    With ``interactive``, ``sys.stdin`` goes to the execution until it reaches end of file;
    otherwise the execution's stdin is closed at once. With ``tty`` and a terminal on stdin, that
    terminal is raw and its size follows to the execution until it ends. Returns its exit."""
    loop = asyncio.get_running_loop()
    pumps = [asyncio.ensure_future(_pump(execution.stdout(text=False), sys.stdout))]
    if not tty:
        pumps.append(asyncio.ensure_future(_pump(execution.stderr(text=False), sys.stderr)))
    restore: Callable[[], None] | None = None
    fd = sys.stdin.fileno()
    if not interactive:
        await execution.stdin().close()  # end of file, as docker gives a command without -i
    else:
        stdin = execution.stdin()
        if tty and os.isatty(fd):
            restore = _raw_terminal(fd)

            def resize() -> None:
                size = os.get_terminal_size(fd)
                asyncio.ensure_future(execution.resize_tty(size.lines, size.columns))

            resize()
            loop.add_signal_handler(signal.SIGWINCH, resize)

        def read_input() -> None:
            data = os.read(fd, 65536)
            if data:
                asyncio.ensure_future(stdin.send_input(data))
            else:
                loop.remove_reader(fd)
                asyncio.ensure_future(stdin.close())

        loop.add_reader(fd, read_input)
    try:
        await asyncio.gather(*pumps)
        return await execution.wait()
    finally:
        if interactive:
            loop.remove_reader(fd)
        if restore is not None:
            loop.remove_signal_handler(signal.SIGWINCH)
            restore()
