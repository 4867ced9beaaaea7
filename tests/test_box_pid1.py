"""A box survives whatever its own processes send: its main process (or, without one, an idle
process) is pid 1 of the box, which the kernel shields from signals it does not handle, as in
Docker. Only the runtime's stop, the main process's own exit, or the OOM killer end a box."""

from __future__ import annotations

import pytest

import boxlite

from .conftest import collect, wait_until
from .test_execution import processes_with_command_line

ATTACKS = [
    "kill -9 -1",
    "kill -9 1",
    "kill -TERM 1; kill -INT 1; kill -HUP 1; kill -STOP 1",
    "busybox killall -9 sh sleep",
    "for pid in $(ls /proc | grep '^[0-9]'); do [ $pid != $$ ] && kill -9 $pid; done",
]


async def output(box: boxlite.Box, script: str) -> tuple[bytes, boxlite.ExitStatus]:
    stdout, _, status = await collect(await box.exec("sh", ["-c", script]))
    return stdout, status


async def assert_alive(box: boxlite.Box) -> None:
    assert (await box.info()).state.status == "running"
    stdout, status = await output(box, "echo alive")
    assert (stdout, status.exit_code) == (b"alive\n", 0)


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_busybox_box_survives_its_processes_signalling_every_process(runtime: boxlite.Boxlite, busybox_image: str, attack: str) -> None:
    # The image's default command is an interactive `sh`, the box's main process.
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False))
    await box.start()
    await output(box, attack)
    await assert_alive(box)
    stdout, _ = await output(box, "cat /proc/1/cmdline | tr '\\0' ' '")
    assert stdout.startswith(b"sh"), "the main process is the box's pid 1"
    await box.stop()
    info = await runtime.get_info(box.id)
    assert info is not None and info.state.status == "stopped"
    await runtime.remove(box.id)


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_box_without_a_main_process_survives_its_processes(runtime: boxlite.Boxlite, attack: str) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    sleeper = await box.exec("sleep", ["600"])
    await output(box, attack)
    # Other executions are fair game, as in any container; the box and its pid 1 are not.
    if "-9 -1" in attack or "killall" in attack or "for pid" in attack:
        assert (await sleeper.wait()).signal == 9
    else:
        await sleeper.kill()
    await assert_alive(box)
    await box.stop()


async def read_until(stream: boxlite.ExecStream, seen: bytes, marker: bytes) -> bytes:
    async for chunk in stream:
        seen += chunk
        if marker in seen:
            break
    return seen


async def started_main(runtime: boxlite.Boxlite, script: str) -> tuple[boxlite.Box, boxlite.Execution, boxlite.ExecStream, bytes]:
    """A box whose main process runs `script` (which prints "ready"), attached once it is ready."""
    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", script], auto_remove=False))
    await box.start()
    attached = await box.attach()
    stream = attached.stdout(text=False)
    return box, attached, stream, await read_until(stream, b"", b"ready")


async def test_the_main_process_sees_signals_it_handles(runtime: boxlite.Boxlite) -> None:
    box, attached, stream, seen = await started_main(runtime, "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.05; done")
    await output(box, "kill -USR1 1")
    assert b"got-usr1" in await read_until(stream, seen, b"got-usr1")
    await box.stop()
    status = await attached.wait()
    assert status.exit_code == -15, "the stop's SIGTERM, which the script leaves at its default"
    await runtime.remove(box.id)


async def test_a_main_process_that_handles_sigterm_gets_its_grace(runtime: boxlite.Boxlite) -> None:
    box, attached, stream, stdout = await started_main(runtime, "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done")
    await box.stop()
    stdout += b"".join([chunk async for chunk in stream])
    assert (stdout, (await attached.wait()).exit_code) == (b"ready\nbye\n", 7)
    await runtime.remove(box.id)


async def test_a_stop_ends_what_the_idle_pid_1_adopted(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    # Daemons whose parent exited are adopted by the box's pid 1, not by the init.
    await output(box, "sleep 600601 >/dev/null 2>&1 & setsid sleep 600601 >/dev/null 2>&1 & exit 0")
    await wait_until(lambda: len(processes_with_command_line(b"sleep\x00600601\x00")) == 2)
    await box.stop()
    assert processes_with_command_line(b"sleep\x00600601\x00") == []


# Blocks SIGTERM, says so, keeps it blocked for a moment, then unblocks it at its default action.
BLOCKS_FOR_A_MOMENT = (
    "import signal, sys, time; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]); print('ready', flush=True); "
    "time.sleep(0.5); signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM]); print('unblocked', flush=True); time.sleep(60)"
)


async def test_a_signal_asked_for_while_the_main_process_blocks_it_ends_it_once_unblocked(runtime: boxlite.Boxlite) -> None:
    # The kernel queues it for pid 1 and drops it at the unblock (pid 1 ignores what it does
    # not handle): the init looks again each turn, and ends the process as the signal would.
    box = await runtime.create(boxlite.BoxOptions(cmd=["python3", "-c", BLOCKS_FOR_A_MOMENT], auto_remove=False))
    await box.start()
    attached = await box.attach()
    stream = attached.stdout(text=False)
    await read_until(stream, b"", b"ready")
    await attached.signal(15)
    status = await attached.wait()
    assert status.exit_code == -15
    await runtime.remove(box.id, force=True)
