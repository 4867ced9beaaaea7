"""InteractiveBox: a shell in a box, driven through a real pseudo-terminal, as a user's
terminal would drive it."""

from __future__ import annotations

import fcntl
import os
import re
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


FROM_STDIN = """
import asyncio, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    async with boxlite.InteractiveBox(boxlite.HOST_IMAGE, shell="sh", runtime=runtime, tty=False) as box:
        status = await box.wait()
    print("shell exited with", status.exit_code)
    runtime.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("given", ["file", "/dev/null", "pipe"])
def test_a_shell_reads_stdin_that_is_no_terminal(home: Path, tmp_path: Path, given: str) -> None:
    """A script fed from a file or a pipe, or nothing at all (``/dev/null``: the loop cannot
    wait on a file), runs to its end, its lines in order, in the box's shell (on a terminal
    there, as always)."""
    # The terminal echoes the input among the output: only an output line says "out-<n>".
    script = "".join(f"printf 'out-%s\\n' {index}\n" for index in range(200)) + "exit 4\n"
    command = [sys.executable, "-c", FROM_STDIN, str(home)]
    if given == "pipe":
        result = subprocess.run(command, input=script.encode(), capture_output=True, timeout=60)
    else:
        if given == "file":
            (tmp_path / "script").write_text(script)
        else:
            script = ""
        with open(tmp_path / "script" if given == "file" else os.devnull, "rb") as stdin:
            result = subprocess.run(command, stdin=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    # The shell runs on a terminal in the box, which echoes its input and ends lines with \r\n.
    output = result.stdout.decode()
    printed = [int(number) for number in re.findall(r"out-(\d+)", output)]
    assert printed == (list(range(200)) if script else []), output
    assert output.endswith(f"shell exited with {4 if script else 0}\n"), output


async def test_wait_needs_the_block(runtime: boxlite.Boxlite) -> None:
    box = boxlite.InteractiveBox(boxlite.HOST_IMAGE, runtime=runtime, tty=False)
    with pytest.raises(RuntimeError, match="Box not started"):
        await box.wait()
