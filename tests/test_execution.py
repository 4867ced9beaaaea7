"""Executions in real boxes: exact bytes, text decoding, exit codes, signals, stdin, terminals,
timeouts, and that output is never truncated."""

from __future__ import annotations

import asyncio
import gc
import os
import threading

import pytest

import boxlite

from boxlite._native import _testing

from .conftest import collect, logged, wait_until


@pytest.fixture
async def box(any_runtime: boxlite.Boxlite) -> boxlite.Box:
    """A box of each kind of runtime, local and REST."""
    return await any_runtime.create(boxlite.BoxOptions())


@pytest.fixture
async def local_box(runtime: boxlite.Boxlite) -> boxlite.Box:
    """A box of a local runtime, for what only it does or shows (the test hooks of `_testing`;
    a REST server lets an ended process's quiet output go, see docs/serve.md)."""
    return await runtime.create(boxlite.BoxOptions())


async def test_output_is_exact_bytes_and_the_exit_code_is_kept(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", r"printf 'no newline'; printf '\377\000bin' >&2; exit 3"])
    stdout, stderr, status = await collect(execution)
    assert stdout == b"no newline"
    assert stderr == b"\xff\x00bin"
    assert (status.exit_code, status.signal, status.success) == (3, None, False)


async def test_text_mode_decodes_split_characters_and_marks_only_invalid_bytes(box: boxlite.Box) -> None:
    # "é" is written in two separate writes, split between its two bytes.
    script = r"printf 'caf\303'; sleep 0.05; printf '\251 \377!'"
    execution = await box.exec("sh", ["-c", script])
    text = "".join([chunk async for chunk in execution.stdout()])
    assert text == "café \ufffd!"


async def test_wait_returns_only_after_all_output_was_delivered(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done"])
    status = await execution.wait()
    assert status.exit_code == 0
    stdout = b"".join([chunk async for chunk in execution.stdout(text=False)])
    assert stdout == b"".join(b"line-%d\n" % i for i in range(20000))


#: The process left behind writes once told to (/tmp/go), after the shell's end, and says so.
LEAVES_ONE_BEHIND = (
    "(while [ ! -e /tmp/go ]; do sleep 0.05; done; echo late; echo late >&2; touch /tmp/wrote; sleep 600) & "
    "head -c 3000000 /dev/zero | tr '\\000' x; echo; echo done"
)


async def wait_until_in(box: boxlite.Box, script: str, what: str) -> None:
    """Polls ``script`` in the box until it succeeds (10 s at most)."""
    for _ in range(200):
        if (await collect(await box.exec("sh", ["-c", script])))[2].exit_code == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_process_left_in_the_background_holds_back_neither_wait_nor_the_streams(box: boxlite.Box) -> None:
    """``cmd &`` leaves a process holding the shell's stdout and stderr: ``wait()`` and both
    streams end all the same, soon after the shell's exit, with all the shell wrote (more than
    a pipe holds, unread at the exit); what the process left behind writes later is dropped,
    and it runs on, neither blocked nor killed by a broken pipe."""
    execution = await box.exec("sh", ["-c", LEAVES_ONE_BEHIND])
    status = await asyncio.wait_for(execution.wait(), 30)
    assert status.exit_code == 0
    stdout = b"".join([chunk async for chunk in execution.stdout(text=False)])
    assert stdout == b"x" * 3_000_000 + b"\ndone\n"
    assert [chunk async for chunk in execution.stderr(text=False)] == []
    await collect(await box.exec("touch", ["/tmp/go"]))
    await wait_until_in(box, "test -e /tmp/wrote", what="the process left behind never wrote")
    alive = await collect(await box.exec("sh", ["-c", "for f in /proc/[0-9]*/cmdline; do [ \"$(tr '\\000' ' ' < $f)\" = 'sleep 600 ' ] && echo alive; done"]))
    assert alive[0] == b"alive\n", alive
    # And a stream being read when the exit comes ends the same way.
    execution = await box.exec("sh", ["-c", "sleep 600 & echo started"])
    assert [chunk async for chunk in execution.stdout()] == ["started\n"]
    assert (await asyncio.wait_for(execution.wait(), 30)).exit_code == 0


async def test_large_binary_output_streams_through(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "head -c 33554432 /dev/zero | tr '\\000' '\\141'"])
    total = 0
    async for chunk in execution.stdout(text=False):
        assert set(chunk) == {0x61}
        total += len(chunk)
    assert total == 32 << 20
    assert (await execution.wait()).exit_code == 0


async def test_kill_works_while_wait_is_pending_and_all_waits_agree(box: boxlite.Box) -> None:
    execution = await box.exec("sleep", ["100"])
    waiting = asyncio.ensure_future(execution.wait())
    await asyncio.sleep(0)
    await execution.kill()
    first = await waiting
    second, third = await asyncio.gather(execution.wait(), execution.wait())
    assert (first.exit_code, first.signal) == (-9, 9)
    assert (second.exit_code, third.exit_code) == (-9, -9)


async def test_signals_after_the_exit_have_nothing_to_reach_and_succeed(box: boxlite.Box) -> None:
    execution = await box.exec("true")
    assert (await execution.wait()).exit_code == 0
    await execution.kill()
    await execution.signal(15)
    assert (await execution.wait()).exit_code == 0


async def test_a_signal_in_flight_when_the_execution_is_closed_still_resolves(box: boxlite.Box) -> None:
    execution = await box.exec("sleep", ["100"])
    # SIGWINCH, which sleep ignores; the close comes before their acknowledgements can.
    signals = [asyncio.ensure_future(execution.signal(28)) for _ in range(5)]
    execution.close()
    await asyncio.wait_for(asyncio.gather(*signals), 10)
    assert (await execution.wait()).forced


def processes_with_command_line(command_line: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                if file.read() == command_line:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


async def test_an_exec_cancelled_before_its_answer_leaves_no_process(box: boxlite.Box) -> None:
    await box.start()
    # The request is on its way when exec() returns; cancelling lets go of the execution's
    # connection, and the init kills what it started.
    pending = [box.exec("sleep", ["987654"]) for _ in range(10)]
    for future in pending:
        future.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    # Requests are taken in order: once this one is answered, the init has had the ten before.
    assert (await (await box.exec("true")).wait()).exit_code == 0
    await wait_until(lambda: not processes_with_command_line(b"sleep\x00987654\x00"), what="a cancelled exec's process lived on")


async def test_executions_of_a_loop_that_closes_leave_no_process(box: boxlite.Box) -> None:
    await box.start()

    def in_a_loop_that_closes() -> None:
        async def forget() -> None:
            box.exec("sleep", ["987655"])  # never awaited: still waiting for its answer
            running = await box.exec("sleep", ["987656"])  # never waited for
            assert running.id()

        asyncio.run(forget())

    await asyncio.to_thread(in_a_loop_that_closes)
    gc.collect()
    for argument in (b"987655", b"987656"):
        await wait_until(lambda: not processes_with_command_line(b"sleep\x00" + argument + b"\x00"), what="an execution outlived its loop")


async def test_many_executions_at_once_each_get_their_own_output_and_exit(box: boxlite.Box) -> None:
    await box.start()

    async def one(index: int) -> tuple[bytes, int]:
        stdout, _, status = await collect(await box.exec("sh", ["-c", f"echo {index}; exit {index % 7}"]))
        return stdout, status.exit_code

    results = await asyncio.gather(*(one(index) for index in range(100)))
    assert results == [(f"{index}\n".encode(), index % 7) for index in range(100)]


async def test_signal_reaches_the_process(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.01; done"])
    stdout = execution.stdout()
    assert await stdout.__anext__() == "ready\n"
    await execution.signal(10)
    assert "".join([chunk async for chunk in stdout]) == "got-usr1\n"
    assert (await execution.wait()).exit_code == 7


async def test_every_signal_reaches_the_process_stop_and_kill_too(box: boxlite.Box) -> None:
    """As locally, over REST too: no signal is refused or dropped on the way."""
    execution = await box.exec("sh", ["-c", "echo $$; exec sleep 100"])
    pid = int(await execution.stdout().__anext__())

    async def state() -> str:
        stat, _, _ = await collect(await box.exec("cat", [f"/proc/{pid}/stat"]))
        return stat.decode().rsplit(")", 1)[1].split()[0]

    for number, expected in ((19, "T"), (18, "S")):  # SIGSTOP stops it, SIGCONT lets it go on
        await execution.signal(number)
        for _ in range(200):
            if await state() == expected:
                break
        assert await state() == expected
    await execution.signal(9)
    status = await execution.wait()
    assert (status.exit_code, status.signal) == (-9, 9)


async def test_bad_signal_and_terminal_sizes_are_refused_at_the_call(box: boxlite.Box) -> None:
    execution = await box.exec("sleep", ["100"])
    for signal in (0, 65, -1):
        with pytest.raises(boxlite.InvalidArgumentError):
            execution.signal(signal)
    with pytest.raises(boxlite.InvalidArgumentError):
        execution.resize_tty(0, 80)
    with pytest.raises(boxlite.InvalidStateError):
        await execution.resize_tty(24, 80)  # not a terminal
    await execution.aclose()


@pytest.mark.parametrize(
    ("call", "named"),
    [
        ({"args": ["a\x00b"]}, "word 1 of the command has a NUL byte"),
        ({"env": [("A", "x\x00y")]}, "variable A has a NUL byte"),
        ({"env": [("A=B", "x")]}, 'bad environment variable name "A=B"'),
        ({"env": [("", "x")]}, 'bad environment variable name ""'),
        ({"cwd": "/tmp\x00/x"}, "working directory"),
        ({"user": "root\x00"}, "user"),
        ({"timeout_secs": 1e20}, "timeout_secs must be a positive number"),
        ({"timeout_secs": 0.0}, "timeout_secs must be a positive number"),
        ({"timeout_secs": float("nan")}, "timeout_secs must be a positive number"),
    ],
)
async def test_what_no_process_can_be_given_is_refused_not_changed(box: boxlite.Box, call: dict[str, object], named: str) -> None:
    """A NUL byte would cut an argument, variable or path short, a name with ``=`` would set
    another variable: each is an ``InvalidArgumentError`` naming it, as Python's subprocess
    refuses them, and nothing runs."""
    before = await box.metrics()
    with pytest.raises(boxlite.InvalidArgumentError, match=named):
        await box.exec("echo", **call)  # type: ignore[arg-type]
    assert (await box.metrics()).commands_executed_total == before.commands_executed_total


async def test_stdin_reaches_the_process_and_close_gives_eof(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "wc -c"])
    stdin = execution.stdin()
    await stdin.send_input(b"hello ")
    await stdin.send_input(b"world\n")
    await stdin.close()
    await stdin.close()
    assert await stdin.is_closed()
    with pytest.raises(boxlite.InvalidStateError):
        stdin.send_input(b"late")
    stdout, _, status = await collect(execution)
    assert stdout.strip() == b"12"
    assert status.exit_code == 0


async def test_each_stream_can_be_taken_once(box: boxlite.Box) -> None:
    execution = await box.exec("true")
    execution.stdout()
    execution.stderr()
    execution.stdin()
    for take in (execution.stdout, execution.stderr, execution.stdin):
        with pytest.raises(RuntimeError, match="not available"):
            take()
    await execution.wait()


async def test_tty_output_and_resize_are_visible_to_the_process(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "stty size; read go; stty size"], tty=True)
    stdout = execution.stdout()
    assert (await stdout.__anext__()).strip() == "24 80"
    await execution.resize_tty(40, 132)
    await execution.stdin().send_input(b"go\n")
    rest = "".join([chunk async for chunk in stdout])
    assert rest.split()[-2:] == ["40", "132"]
    assert (await execution.wait()).exit_code == 0


async def test_a_terminal_gets_term_unless_the_exec_sets_it(box: boxlite.Box) -> None:
    for env, expected in ((None, "xterm"), ([("TERM", "dumb")], "dumb")):
        execution = await box.exec("sh", ["-c", "echo $TERM"], env=env, tty=True)
        output = "".join([chunk async for chunk in execution.stdout()])
        assert output.split() == [expected]
        await execution.wait()


async def test_a_timeout_kills_the_whole_process_group(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "sleep 100 & sleep 100 & wait"], timeout_secs=0.3)
    status = await execution.wait()
    assert status.timed_out
    assert status.exit_code < 0
    check = await box.exec("sh", ["-c", "ps -o comm= | grep -c '^sleep' || true"])
    stdout, _, _ = await collect(check)
    assert stdout.strip() == b"0"


async def test_close_kills_a_running_execution_and_reports_forced(box: boxlite.Box) -> None:
    execution = await box.exec("sleep", ["100"])
    waiting = asyncio.ensure_future(execution.wait())
    await asyncio.sleep(0)
    execution.close()
    status = await waiting
    assert status.forced and status.error_message
    assert (await execution.wait()) .forced
    check = await box.exec("sh", ["-c", "ps -o comm= | grep -c '^sleep' || true"])
    stdout, _, _ = await collect(check)
    assert stdout.strip() == b"0"


async def test_close_after_a_natural_exit_keeps_the_real_status(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "exit 5"])
    status = await execution.wait()
    execution.close()
    assert status.exit_code == 5
    again = await execution.wait()
    assert (again.exit_code, again.forced) == (5, False)


async def test_output_held_open_delays_the_exit_until_close_ends_the_streams(local_box: boxlite.Box) -> None:
    box = local_box
    # The shell exits at once, but a process it left behind holds stdout open: more output may
    # come, so the exit waits for the end of the output...
    execution = await box.exec("sh", ["-c", "sleep 600 & echo started"])
    stdout = execution.stdout()
    assert await stdout.__anext__() == "started\n"
    waiting = asyncio.ensure_future(execution.wait())
    await wait_until(lambda: _testing.exit_withheld(execution), what="the shell's exit never arrived")
    assert not waiting.done()
    # ...until close() ends the streams: the exit is then the shell's own, not a forced one.
    execution.close()
    status = await asyncio.wait_for(waiting, 10)
    assert (status.exit_code, status.forced) == (0, False)
    assert [chunk async for chunk in stdout] == []


async def test_wait_alone_drains_more_output_than_a_pipe_holds(box: boxlite.Box) -> None:
    # Nobody reads while waiting: the runtime still drains the pipe (3 MB, three times what it
    # holds), so the process can finish, and the output is all there afterwards.
    execution = await box.exec("sh", ["-c", "head -c 3000000 /dev/zero; echo done >&2"])
    status = await asyncio.wait_for(execution.wait(), 10)
    assert status.exit_code == 0
    assert sum([len(chunk) async for chunk in execution.stdout(text=False)]) == 3000000
    assert [chunk async for chunk in execution.stderr()] == ["done\n"]


async def test_close_ends_a_stream_paused_with_unread_output(box: boxlite.Box) -> None:
    # 8.5 MiB nobody reads or waits for: reading pauses at the window, the process exits (the
    # pipe holds the rest), and only close() can end the streams now.
    execution = await box.exec("sh", ["-c", "head -c 8900000 /dev/zero"])
    await wait_until(lambda: _testing.exit_withheld(execution), what="the process's exit never arrived")
    await execution.aclose()
    status = await asyncio.wait_for(execution.wait(), 10)
    assert (status.exit_code, status.forced) == (0, False)


async def test_wait_alone_returns_after_more_output_than_the_window(box: boxlite.Box, caplog: pytest.LogCaptureFixture) -> None:
    # About 20 MB nobody reads while the exit is awaited: the oldest output is dropped, the
    # newest window kept, and wait() returns; a warning says what was lost.
    execution = await box.exec("sh", ["-c", "seq 1 2500000; echo done >&2"])
    status = await asyncio.wait_for(execution.wait(), 60)
    assert (status.exit_code, status.forced) == (0, False)
    stdout = b"".join([chunk async for chunk in execution.stdout(text=False)])
    assert stdout.endswith(b"\n2499999\n2500000\n")
    assert 7 << 20 <= len(stdout) < len(b"".join(b"%d\n" % n for n in range(1, 2500001)))
    assert [chunk async for chunk in execution.stderr()] == ["done\n"]
    await logged(caplog, "were dropped, unread while its exit was awaited")


async def test_wait_resumes_a_stream_paused_at_its_window(box: boxlite.Box) -> None:
    # Paused first (nobody waits), then awaited: reading resumes and the process finishes.
    execution = await box.exec("sh", ["-c", "head -c 20000000 /dev/zero"])
    await wait_until(lambda: _testing.stdout_paused(execution), what="reading never paused at the window")
    status = await asyncio.wait_for(execution.wait(), 60)
    assert status.exit_code == 0
    assert 7 << 20 <= sum([len(chunk) async for chunk in execution.stdout(text=False)]) < 20000000


async def test_async_with_closes_the_execution(box: boxlite.Box) -> None:
    async with await box.exec("sleep", ["100"]) as execution:
        pass
    assert (await execution.wait()).forced


async def test_a_missing_program_is_not_found(box: boxlite.Box) -> None:
    with pytest.raises(boxlite.NotFoundError, match="no-such-program"):
        await box.exec("no-such-program")


@pytest.mark.root_only("it runs as users other than root, which a box has only with a range of host ids")
async def test_env_cwd_and_user_apply(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(env=[("BOX_VAR", "box")], working_dir="/tmp"))
    execution = await box.exec("sh", ["-c", "echo $BOX_VAR $EXEC_VAR $(pwd) $(id -u) $HOME"], env=[("EXEC_VAR", "exec")])
    stdout, _, _ = await collect(execution)
    assert stdout.split() == [b"box", b"exec", b"/tmp", b"0", b"/root"]
    execution = await box.exec("sh", ["-c", "echo $(id -u):$(id -g) $(pwd)"], user="nobody", cwd="/")
    stdout, _, _ = await collect(execution)
    assert stdout.split() == [b"65534:65534", b"/"]
    with pytest.raises(boxlite.ExecutionError, match="mallory"):
        await box.exec("true", user="mallory")
    with pytest.raises(boxlite.ExecutionError, match="working directory"):
        await box.exec("true", cwd="/does/not/exist")


async def test_output_with_nobody_reading_waits_instead_of_growing(box: boxlite.Box) -> None:
    # 64 MiB, nobody reads: the process must block on its pipe once the window is full.
    execution = await box.exec("sh", ["-c", "head -c 67108864 /dev/zero; echo done >&2"])
    stderr = execution.stderr()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stderr.__anext__(), 1.0)
    total = 0
    async for chunk in execution.stdout(text=False):
        total += len(chunk)
    assert total == 64 << 20
    assert "".join([chunk async for chunk in stderr]) == "done\n"
    assert (await execution.wait()).exit_code == 0


async def test_an_execution_refuses_waiting_and_reading_from_another_loop(box: boxlite.Box) -> None:
    execution = await box.exec("sh", ["-c", "echo hi; sleep 600"])
    refused: list[BaseException] = []

    def elsewhere() -> None:
        async def use() -> None:
            for attempt in (execution.wait, execution.stdout(text=False).__anext__):
                try:
                    await attempt()
                except boxlite.InvalidStateError as error:
                    refused.append(error)

        asyncio.run(use())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert len(refused) == 2 and all("belongs to the event loop that started it" in str(error) for error in refused)
    # Its own loop still has all of it.
    await execution.kill()
    assert (await execution.wait()).signal == 9


async def test_a_stream_being_read_loses_nothing_while_wait_is_pending(box: boxlite.Box) -> None:
    # The reader falls far behind (more than the 8 MiB window) while a wait() is pending: the
    # stream it took keeps every byte; only output nobody took is ever dropped.
    execution = await box.exec("sh", ["-c", "head -c 20000000 /dev/zero"])
    stream = execution.stdout(text=False)
    waiting = asyncio.ensure_future(execution.wait())
    total = 0
    async for chunk in stream:
        total += len(chunk)
        await asyncio.sleep(0.002)
    assert total == 20000000
    assert (await waiting).exit_code == 0
