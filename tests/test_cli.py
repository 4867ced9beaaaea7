"""The boxlite command line, run as a user would: a separate process per command."""

from __future__ import annotations

import signal
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
    # A box without a main process has no log either.
    assert boxlite(home, "create", "--name", "plain", "host://").returncode == 0
    assert boxlite(home, "start", "plain").returncode == 0
    logs = boxlite(home, "logs", "plain")
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "", "")
    assert boxlite(home, "rm", "-f", "plain").returncode == 0


def test_run_i_reads_a_file_or_nothing_as_stdin(home: Path, tmp_path: Path) -> None:
    """``< file`` and ``< /dev/null``, which the event loop cannot wait on, as a pipe is."""
    script = tmp_path / "input"
    script.write_text("".join(f"{index}\n" for index in range(10_000)))
    for source, expected in ((script, "10000"), (Path("/dev/null"), "0")):
        with source.open("rb") as stdin:
            result = subprocess.run([sys.executable, "-m", "boxlite", "--home", str(home), "run", "-i", "host://", "wc", "-l"], stdin=stdin, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_run_ended_by_sigterm_or_sighup_removes_its_box(home: Path) -> None:
    """As Ctrl-C does: a `timeout`, or a closed terminal, takes the box with the run."""
    for number in (signal.SIGTERM, signal.SIGHUP):
        run = subprocess.Popen([sys.executable, "-m", "boxlite", "--home", str(home), "run", "host://", "sh", "-c", "echo started; sleep 60"], stdout=subprocess.PIPE, text=True)
        assert run.stdout is not None and run.stdout.readline() == "started\n"
        run.send_signal(number)
        assert run.wait(timeout=60) == 128 + number
        run.stdout.close()
        assert boxlite(home, "ls", "-q").stdout == ""


def test_rm_tries_every_box_and_says_each_failure(home: Path) -> None:
    for name in ("r1", "r2", "up"):
        assert boxlite(home, "create", "--name", name, "host://").returncode == 0
    assert boxlite(home, "start", "up").returncode == 0
    result = boxlite(home, "rm", "r1", "nope", "up", "r2")
    assert result.returncode == 125
    assert result.stderr.splitlines() == ["boxlite: not found: box nope", "boxlite: box up is running; rm -f stops and removes it"]
    assert [line.split()[1] for line in boxlite(home, "ls").stdout.splitlines()[1:]] == ["up"]
    assert boxlite(home, "rm", "-f", "up").returncode == 0
    # An empty listing is its header alone, or nothing at all with -q.
    assert (boxlite(home, "ls").stdout.count("\n"), boxlite(home, "ls", "-q").stdout) == (1, "")


def test_cp_takes_a_host_path_with_a_colon_as_docker_does(home: Path, tmp_path: Path) -> None:
    """A path that starts with / or . is the host's, whatever it holds."""
    source = tmp_path / "notes:1"
    source.write_text("colon")
    assert boxlite(home, "create", "--name", "c", "host://").returncode == 0
    assert boxlite(home, "cp", str(source), "c:/root/in").returncode == 0
    assert boxlite(home, "cp", "c:/root/in", str(tmp_path / "back:2")).returncode == 0
    assert (tmp_path / "back:2").read_text() == "colon"
    assert boxlite(home, "rm", "-f", "c").returncode == 0


def test_out_of_range_limits_are_a_usage_error(home: Path) -> None:
    for flag, value in (("--cpus", "300"), ("--cpus", "-1"), ("--memory", "99999999999"), ("--memory", "many")):
        result = boxlite(home, "run", flag, value, "host://", "true")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1].startswith(f"boxlite run: error: argument {flag}:"), result.stderr
    assert boxlite(home, "ls", "-q").stdout == ""
