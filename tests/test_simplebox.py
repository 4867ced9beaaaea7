"""SimpleBox and CodeBox (async), and the sync API, on real boxes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import boxlite
from boxlite.sync_api import SyncBoxlite, SyncCodeBox, SyncSimpleBox

from .conftest import wait_until
from .leftovers import box_processes
from .test_execution import processes_with_command_line


async def test_simplebox_collects_output_and_removes_the_box(runtime: boxlite.Boxlite) -> None:
    async with boxlite.SimpleBox(boxlite.HOST_IMAGE, runtime=runtime, name="simple") as box:
        assert box.created is True
        result = await box.exec("sh", "-c", "echo $GREETING; echo oops >&2; exit 4", env={"GREETING": "hi"})
        assert result == boxlite.ExecResult(exit_code=4, stdout="hi\n", stderr="oops\n")
        assert (await box.info()).name == "simple"
        # A server started in the background does not keep the command from returning.
        started = await asyncio.wait_for(box.exec("sh", "-c", "sleep 600 & echo started"), 30)
        assert started == boxlite.ExecResult(exit_code=0, stdout="started\n", stderr="")
        # Its stdin is at its end: what reads it ends instead of waiting forever.
        assert await asyncio.wait_for(box.exec("cat"), 30) == boxlite.ExecResult(exit_code=0, stdout="", stderr="")
        # A call given up on ends its command.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(box.exec("sleep", "987659"), 0.5)
        await wait_until(lambda: not processes_with_command_line(b"sleep\x00987659\x00"), what="a cancelled exec left its command running")
    assert await runtime.get_info("simple") is None


async def test_simplebox_guards_and_reuse(runtime: boxlite.Boxlite) -> None:
    with pytest.raises(ValueError, match="image"):
        boxlite.SimpleBox()
    box = boxlite.SimpleBox(boxlite.HOST_IMAGE, runtime=runtime)
    with pytest.raises(RuntimeError, match="Box not started"):
        _ = box.id
    async with boxlite.SimpleBox(boxlite.HOST_IMAGE, runtime=runtime, name="shared", auto_remove=False) as outer:
        async with boxlite.SimpleBox(boxlite.HOST_IMAGE, runtime=runtime, name="shared", reuse_existing=True) as inner:
            assert inner.created is False and inner.id == outer.id
    await runtime.remove("shared", force=True)


async def test_codebox_runs_python_and_its_timeout_works(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    async with boxlite.CodeBox(runtime=runtime) as box:
        assert (await box.run("print(2 + 2)")).strip() == "4"
        assert await asyncio.wait_for(box.run("try:\n    input()\nexcept EOFError:\n    print('eof')"), 30) == "eof\n"
        script = tmp_path / "script.py"
        script.write_text("import json\nprint(json.dumps({'ok': True}))\n")
        assert (await box.run_script(script)).strip() == '{"ok": true}'
        result = await box.exec("python3", "-c", "import time; time.sleep(100)", timeout=0.5)
        assert result.exit_code < 0
        assert await box.run("import time; time.sleep(100)", timeout=0.5) == ""


def test_sync_api_from_plain_threads(home: Path) -> None:
    with SyncBoxlite(boxlite.Options(home_dir=str(home))) as runtime:
        box = runtime.create(boxlite.BoxOptions())
        execution = box.exec("sh", ["-c", "read line; echo got $line; echo err >&2"])
        stdin = execution.stdin()
        stdin.send_input(b"x\n")
        stdin.close()
        assert "".join(str(chunk) for chunk in execution.stdout()) == "got x\n"
        assert list(execution.stderr()) == ["err\n"]
        assert execution.wait().exit_code == 0

        results: list[str] = []

        def worker(index: int) -> None:
            run = box.exec("echo", [f"thread-{index}"])
            results.append("".join(str(chunk) for chunk in run.stdout()).strip())

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == sorted(f"thread-{index}" for index in range(8))
        assert runtime.metrics().total_commands_executed == 9
        box.stop()
        assert runtime.list_info() == []


def test_sync_simplebox_and_codebox(home: Path) -> None:
    with SyncBoxlite(boxlite.Options(home_dir=str(home))) as runtime:
        with SyncSimpleBox(boxlite.HOST_IMAGE, runtime=runtime) as box:
            result = box.exec("sh", "-c", "for i in $(seq 5000); do echo line; echo err >&2; done")
            assert result.stdout.count("\n") == 5000 and result.stderr.count("\n") == 5000
        with SyncCodeBox(runtime=runtime) as code:
            assert code.run("print(6 * 7)").strip() == "42"
            assert code._box_opts.image == boxlite.HOST_IMAGE
            assert code._box.id == code.id
            with pytest.raises(boxlite.NetworkError, match="port 8080"):
                code.tunnel(8080).connect()  # nothing listens there
            code.stop()  # and again on leaving the block: stop is idempotent
        assert runtime.images.list() == []
        job = runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", "echo from the job"]))
        attached = job.attach(stdin=False)
        job.start()
        assert "".join(str(chunk) for chunk in attached.stdout()) == "from the job\n"
        assert attached.wait().exit_code == 0


FAILS_TO_MAKE_BOXES = """
import os, threading, boxlite
from boxlite.sync_api import SyncSimpleBox, SyncSkillBox

def loops() -> int:
    return sum(thread.name == "boxlite-sync-loop" for thread in threading.enumerate())

for attempt in range(3):
    try:
        SyncSimpleBox(boxlite.HOST_IMAGE, no_such_option=1)
    except TypeError:
        pass
    try:
        with SyncSimpleBox(boxlite.HOST_IMAGE, cmd=["no-such-program"]):
            pass
    except boxlite.NotFoundError:
        pass
    os.environ.pop("CLAUDE_CODE_OAUTH_TOKEN", None)
    try:
        with SyncSkillBox(image=boxlite.HOST_IMAGE, disk_size_gb=None):
            pass
    except ValueError:
        pass
print(loops())
"""


async def test_a_sync_simplebox_that_fails_to_be_made_keeps_no_loop_thread(home: Path) -> None:
    """Its own loop thread (on the default runtime) goes with a bad keyword or a failed start
    (a SyncSkillBox's too): no ``__exit__`` follows either."""
    environment = {**os.environ, "BOXLITE_HOME": str(home)}
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", FAILS_TO_MAKE_BOXES], capture_output=True, text=True, timeout=120, env=environment)
    assert (result.returncode, result.stdout.strip()) == (0, "0"), result.stderr
    # The default runtime's shims made ahead of need go as its process's end reaches them.
    await wait_until(lambda: not box_processes(home), what="a shim of the ended program's runtime lived on")


async def test_sync_api_refuses_to_run_inside_an_event_loop(home: Path) -> None:
    runtime = SyncBoxlite(boxlite.Options(home_dir=str(home)))
    try:
        with pytest.raises(RuntimeError, match="inside a running asyncio loop"):
            runtime.list_info()
    finally:
        runtime.close()
