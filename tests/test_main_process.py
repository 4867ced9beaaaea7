"""A box's main process: the user's cmd/entrypoint or the image's default, run on start,
followed with attach(), and the box's end when it exits (BoxStateInfo.exit_code)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import boxlite
from boxlite._native import _testing

from .conftest import collect, wait_until, runtime_processes
from .leftovers import box_processes


async def stopped_info(runtime: boxlite.Boxlite, box_id: str) -> boxlite.BoxInfo | None:
    """The box's info once its main process has ended and the runtime settled it."""
    for _ in range(200):
        info = await runtime.get_info(box_id)
        if info is None or info.state.status == "stopped":
            return info
        await asyncio.sleep(0.025)
    raise AssertionError(f"box {box_id} did not stop after its main process ended")


async def test_a_chosen_command_runs_on_start_and_its_exit_is_recorded(runtime: boxlite.Boxlite) -> None:
    script = "echo out; echo err >&2; exit 3"
    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", script], auto_remove=False))
    with pytest.raises(boxlite.InvalidStateError, match="start the box explicitly"):
        await box.exec("true")
    with pytest.raises(boxlite.InvalidStateError, match="start the box explicitly"):
        await box.copy_out("/etc/hostname", "/tmp/unused")
    await box.start()
    stdout, stderr, status = await collect(await box.attach())
    assert (stdout, stderr, status.exit_code) == (b"out\n", b"err\n", 3)
    info = await stopped_info(runtime, box.id)
    assert info is not None
    assert (info.state.status, info.state.running, info.state.exit_code) == ("stopped", False, 3)
    # The ended run stays readable until the box is removed or started again.
    stdout, stderr, status = await collect(await box.attach())
    assert (stdout, stderr, status.exit_code) == (b"out\n", b"err\n", 3)
    with pytest.raises(boxlite.InvalidStateError, match="already run"):
        await box.exec("true")
    await runtime.remove(box.id)


async def test_a_replay_read_slowly_is_whole(runtime: boxlite.Boxlite) -> None:
    """An ended run's output comes through a pipe the runtime fills from its log: however
    slowly it is read, all of it comes (no process of the run can hold that pipe)."""
    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", "head -c 20000000 /dev/zero | tr '\\000' y"], auto_remove=False))
    await box.start()
    assert (await (await box.attach()).wait()).exit_code == 0
    assert await stopped_info(runtime, box.id) is not None
    replay = await box.attach()
    stdout = replay.stdout(text=False)
    total = len(await stdout.__anext__())
    await asyncio.sleep(0.5)  # past the time a process left behind would be given
    async for chunk in stdout:
        total += len(chunk)
    assert total == 20_000_000 and (await replay.wait()).exit_code == 0
    await runtime.remove(box.id)


async def test_attach_follows_output_as_it_comes(runtime: boxlite.Boxlite) -> None:
    script = "for i in 1 2 3; do echo line $i; sleep 0.2; done"
    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", script], auto_remove=False))
    await box.start()
    execution = await box.attach()
    first = await execution.stdout(text=True).__anext__()
    assert first.startswith("line 1")
    status = await execution.wait()
    assert status.exit_code == 0
    assert (await stopped_info(runtime, box.id)) is not None
    stdout, _, _ = await collect(await box.attach())
    assert stdout == b"line 1\nline 2\nline 3\n"
    await runtime.remove(box.id)


async def test_the_image_default_command_idles_on_its_stdin_until_an_attach_closes_it(
    runtime: boxlite.Boxlite, busybox_image: str
) -> None:
    # The test image's CMD is ["sh"]: a shell reading commands from its stdin.
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False))
    execution = await box.exec("echo", ["exec works"])  # no chosen command: implicit start
    assert (await collect(execution))[0] == b"exec works\n"
    attached = await box.attach(stdin=True)
    without_stdin = await box.attach(stdin=True)  # the first attach took it
    stdin = attached.stdin()
    await stdin.send_input(b"echo from the main shell; echo oops >&2\n")
    await stdin.close()
    stdout, stderr, status = await collect(attached)
    assert (stdout, stderr, status.exit_code) == (b"from the main shell\n", b"oops\n", 0)
    with pytest.raises(boxlite.InvalidStateError):
        await without_stdin.stdin().send_input(b"x")
    assert (await collect(without_stdin))[2].exit_code == 0
    info = await stopped_info(runtime, box.id)
    assert info is not None and info.state.exit_code == 0
    await runtime.remove(box.id)


async def test_entrypoint_and_cmd_replace_the_images_own_one_by_one(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    cases = [
        (boxlite.BoxOptions(rootfs_path=busybox_image, entrypoint=["echo"], auto_remove=False), b"sh\n"),
        (boxlite.BoxOptions(rootfs_path=busybox_image, entrypoint=["echo"], cmd=["a", "b"], auto_remove=False), b"a b\n"),
        (boxlite.BoxOptions(rootfs_path=busybox_image, cmd=["echo", "$GREETING"], auto_remove=False), b"$GREETING\n"),
        (boxlite.BoxOptions(rootfs_path=busybox_image, cmd=["pwd"], auto_remove=False), b"/root\n"),
    ]
    for options, expected in cases:
        box = await runtime.create(options)
        await box.start()
        stdout, _, status = await collect(await box.attach())
        assert (stdout, status.exit_code) == (expected, 0), options.cmd
        await stopped_info(runtime, box.id)
        await runtime.remove(box.id)


async def test_a_default_box_is_removed_when_its_main_process_ends(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", "sleep 0.3; echo bye"]))
    await box.start()
    attached = await box.attach()
    stdout, _, status = await collect(attached)
    assert (stdout, status.exit_code) == (b"bye\n", 0)
    assert await stopped_info(runtime, box.id) is None
    with pytest.raises(boxlite.NotFoundError):
        await box.start()


async def test_stop_ends_the_main_process_and_records_its_signal(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(cmd=["sleep", "600"], auto_remove=False))
    await box.start()
    attached = await box.attach()
    init_pid = (await box.info()).state.pid
    # Only the box's init, and the runtime's own processes (for a moment also the shim that
    # makes the next box's init).
    await wait_until(lambda: set(box_processes(home)) - runtime_processes(runtime) == {init_pid}, what=f"processes other than the box's init {init_pid}")
    await box.stop()
    status = await attached.wait()
    assert status.exit_code == -15
    info = await runtime.get_info(box.id)
    assert info is not None and (info.state.status, info.state.exit_code) == ("stopped", -15)
    # Starting again runs the command again, on a fresh record of its exit.
    again = await runtime.get(box.id)
    assert again is not None
    await again.start()
    assert (await again.info()).state.exit_code is None
    await again.stop()
    await runtime.remove(box.id)


async def test_signals_reach_the_main_process_through_attach(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(cmd=["sleep", "600"], auto_remove=False))
    await box.start()
    attached = await box.attach()
    await attached.signal(9)
    assert (await attached.wait()).exit_code == -9
    info = await stopped_info(runtime, box.id)
    assert info is not None and info.state.exit_code == -9
    await runtime.remove(box.id)


async def test_a_missing_main_program_fails_the_start(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(cmd=["no-such-program"], auto_remove=False))
    with pytest.raises(boxlite.NotFoundError, match="no-such-program"):
        await box.start()
    info = await box.info()
    assert info.state.status == "failed"
    # Nothing is left of the failed box; the runtime's init made ahead of need may be there
    # (and, for a moment, the shim that makes it).
    await wait_until(lambda: set(box_processes(home)) <= runtime_processes(runtime), what="a process of the failed box outlived its start")
    await runtime.remove(box.id)


async def test_a_box_that_removes_on_stop_goes_when_its_start_fails(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(cmd=["no-such-program"]))
    with pytest.raises(boxlite.NotFoundError, match="no-such-program"):
        await box.start()
    assert await runtime.get_info(box.id) is None and not (home / "boxes" / box.id).exists()


async def test_attach_needs_a_main_process(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    with pytest.raises(boxlite.InvalidStateError, match="no main command"):
        await box.attach()
    with pytest.raises(boxlite.UnsupportedError):
        await box.attach("some-execution-id")
    await box.stop()


async def test_an_attach_made_before_start_follows_the_run_from_its_beginning(runtime: boxlite.Boxlite) -> None:
    # BoxLite's documented order: attach, then start, so that nothing is missed.
    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", "echo first; read line; echo got $line; exit 4"]))
    attached = await box.attach(stdin=True)
    with pytest.raises(boxlite.InvalidStateError, match="not started"):
        await attached.signal(15)
    stdin = attached.stdin()
    await stdin.send_input(b"typed early\n")  # kept until the process runs
    await box.start()
    stdout, stderr, status = await collect(attached)
    assert (stdout, stderr, status.exit_code) == (b"first\ngot typed early\n", b"", 4)
    assert await stopped_info(runtime, box.id) is None  # removed on stop, as by default


async def test_an_attach_waiting_for_a_box_that_is_removed_ends_with_an_error(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(cmd=["true"], auto_remove=False))
    attached = await box.attach()
    abandoned = await box.attach()
    del abandoned  # dropped while waiting: nothing of it is left
    await runtime.remove(box.id)
    status = await attached.wait()
    assert status.exit_code == -1 and status.error_message is not None and "removed" in status.error_message


async def test_a_detached_box_gives_its_main_process_a_stdin(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, detach=True, auto_remove=False))
    try:
        await box.start()
        # Its shell must still be there, reading its stdin: what it answers proves it.
        attached = await box.attach(stdin=True)
        stdin = attached.stdin()
        await stdin.send_input(b"echo detached-ok\n")
        await stdin.close()
        stdout, _, status = await collect(attached)
        assert (stdout, status.exit_code) == (b"detached-ok\n", 0)
        await stopped_info(runtime, box.id)
    finally:
        again = await runtime.get(box.id)
        if again is not None:
            await again.stop()
            await runtime.remove(box.id, force=True)


# A main process on a terminal: says which, its size, then what it reads.
ON_A_TERMINAL = "tty; stty size; read size_changed; stty size; read line; echo got $line >&2; exit 5"


async def read_until(execution: boxlite.Execution, stream: AsyncIterator[bytes], wanted: bytes, seen: bytearray) -> None:
    while wanted not in seen:
        seen += await asyncio.wait_for(stream.__anext__(), 10)


async def test_a_main_process_on_a_terminal_is_attached_to_and_resized(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, cmd=["sh", "-c", ON_A_TERMINAL], tty=True, auto_remove=False))
    await box.start()
    attached = await box.attach(stdin=True)
    watcher = await box.attach(stdin=False)  # every attach of a terminal may resize it
    stdout = attached.stdout(text=False)
    seen = bytearray()
    await read_until(attached, stdout, b"24 80", seen)
    assert b"/dev/pts/0" in seen, "the box's own devpts"
    await watcher.resize_tty(40, 100)
    stdin = attached.stdin()
    await stdin.send_input(b"\n")
    await read_until(attached, stdout, b"40 100", seen)
    await stdin.send_input(b"hello\n")
    await read_until(attached, stdout, b"got hello", seen)
    status = await attached.wait()
    assert status.exit_code == 5
    assert b"\r\n" in seen, "a terminal's line endings"
    info = await stopped_info(runtime, box.id)
    assert info is not None and info.state.exit_code == 5
    # The ended run replays from its record: the terminal's output, both streams as one.
    replayed, stderr, status = await collect(await box.attach())
    assert (stderr, status.exit_code) == (b"", 5) and b"got hello" in replayed and b"40 100" in replayed
    await runtime.remove(box.id)


async def test_a_terminal_attached_before_start_takes_input_and_its_size(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, cmd=["sh", "-c", "read line; stty size; echo got $line"], tty=True))
    attached = await box.attach(stdin=True)
    stdin = attached.stdin()
    await stdin.send_input(b"early\n")  # kept until the process runs, as without a terminal
    await box.start()
    stdout, _, status = await collect(attached)
    assert status.exit_code == 0 and b"got early" in stdout and b"24 80" in stdout
    await attached.resize_tty(30, 90)  # the terminal came with the run: resizing it is no error
    assert await stopped_info(runtime, box.id) is None


async def test_a_terminal_needs_a_main_command(runtime: boxlite.Boxlite) -> None:
    with pytest.raises(boxlite.InvalidArgumentError, match="tty=True runs the box's main command on a terminal"):
        await runtime.create(boxlite.BoxOptions(tty=True))
    assert await runtime.list_info() == []
