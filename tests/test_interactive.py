"""InteractiveBox: a shell in a box, driven through a real pseudo-terminal, as a user's
terminal would drive it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import boxlite

SCRIPT = """
import asyncio, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    async with boxlite.InteractiveBox(boxlite.HOST_IMAGE, runtime=runtime) as box:
        status = await box.wait()
    print("shell exited with", status.exit_code)
    runtime.close()

asyncio.run(main())
"""


def read_until(fd: int, marker: bytes, seconds: float = 30) -> bytes:
    output = b""
    deadline = time.monotonic() + seconds
    while marker not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            output += chunk
    return output


def test_a_shell_on_the_local_terminal(home: Path) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(home)], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        # Typed ahead, before the shell is up: raw mode must not drop it.
        os.write(master, b"stty size; echo marker-$((6*7)); tty\n")
        output = read_until(master, b"/dev/pts/")
        assert b"33 99" in output, output
        assert b"marker-42" in output, output
        os.write(master, b"exit 3\n")
        output = read_until(master, b"shell exited with")
        output += read_until(master, b"\n", seconds=5)
        assert b"shell exited with 3" in output, output
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


async def test_wait_needs_the_block(runtime: boxlite.Boxlite) -> None:
    box = boxlite.InteractiveBox(boxlite.HOST_IMAGE, runtime=runtime, tty=False)
    with pytest.raises(RuntimeError, match="Box not started"):
        await box.wait()
