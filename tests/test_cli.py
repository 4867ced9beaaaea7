"""The boxlite command line, run as a user would: a separate process per command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def boxlite(home: Path, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "boxlite", "--home", str(home), *arguments], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_run_streams_output_and_passes_the_exit_status_on(home: Path) -> None:
    result = boxlite(home, "run", "host://", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert boxlite(home, "ls", "-q").stdout.strip() == "", "run removes its box"


def test_detached_boxes_live_across_commands(home: Path, tmp_path: Path) -> None:
    created = boxlite(home, "create", "--name", "keep", "host://")
    assert created.returncode == 0 and len(created.stdout.strip()) == 12
    note = tmp_path / "note.txt"
    note.write_text("hello")
    assert boxlite(home, "cp", str(note), "keep:/root/").returncode == 0
    assert boxlite(home, "exec", "keep", "cat", "/root/note.txt").stdout == "hello"
    assert boxlite(home, "exec", "-i", "keep", "wc", "-c", stdin="12345").stdout.strip() == "5"
    assert boxlite(home, "cp", "keep:/root/note.txt", str(tmp_path / "back.txt")).returncode == 0
    assert (tmp_path / "back.txt").read_text() == "hello"
    listing = boxlite(home, "ls").stdout
    assert "keep" in listing and "running" in listing
    assert '"status": "running"' in boxlite(home, "inspect", "keep").stdout
    assert boxlite(home, "stop", "keep").returncode == 0
    assert boxlite(home, "rm", "keep").returncode == 0
    assert boxlite(home, "ls", "-q").stdout.strip() == ""


def test_errors_are_one_line_with_status_125(home: Path) -> None:
    result = boxlite(home, "exec", "nope", "true")
    assert result.returncode == 125
    assert result.stderr == "boxlite: no such box: nope\n"
    result = boxlite(home, "run", "host://", "no-such-program")
    assert result.returncode == 125 and result.stderr.startswith("boxlite: not found:") and result.stderr.count("\n") == 1


def test_run_without_a_command_runs_the_image_default(home: Path, busybox_image: str) -> None:
    # The test image's default command is a shell: with -i it reads the script from stdin.
    result = boxlite(home, "run", "-i", busybox_image, stdin="echo $GREETING; exit 4\n")
    assert (result.returncode, result.stdout) == (4, "from-image\n")
    # Without -i its stdin is at end of file at once, as with docker.
    assert boxlite(home, "run", busybox_image).returncode == 0
    assert boxlite(home, "ls", "-q").stdout.strip() == ""


def test_logs_show_the_main_process_of_a_created_box(home: Path) -> None:
    created = boxlite(home, "create", "--name", "job", "host://", "sh", "-c", "echo working; echo warn >&2; exit 2")
    assert created.returncode == 0
    assert (boxlite(home, "logs", "job").stdout) == ""  # not started: no log yet
    assert boxlite(home, "start", "job").returncode == 0
    logs = boxlite(home, "logs", "job")
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "working\n", "warn\n")
    assert '"exit_code": 2' in boxlite(home, "inspect", "job").stdout
    assert boxlite(home, "rm", "job").returncode == 0


def test_run_i_reads_a_file_or_nothing_as_stdin(home: Path, tmp_path: Path) -> None:
    """``< file`` and ``< /dev/null``, which the event loop cannot wait on, as a pipe is."""
    script = tmp_path / "input"
    script.write_text("".join(f"{index}\n" for index in range(10_000)))
    for source, expected in ((script, "10000"), (Path("/dev/null"), "0")):
        with source.open("rb") as stdin:
            result = subprocess.run([sys.executable, "-m", "boxlite", "--home", str(home), "run", "-i", "host://", "wc", "-l"], stdin=stdin, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr
