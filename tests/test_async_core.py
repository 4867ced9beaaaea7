"""The async core's rules (docs/async-core.md, rules 1–21), driven through the
test-only operations of ``boxlite._native._testing`` (gates and counters, no sleeps as
synchronisation). Test names carry the rule numbers."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import boxlite
from boxlite._native import _testing

from .conftest import assert_no_leftovers, wait_until
from .leftovers import box_processes
from .test_execution import processes_with_command_line


def open_runtime(home: Path, capacity: int | None = None) -> boxlite.Boxlite:
    if capacity is None:
        return boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    _testing.set_queue_capacity(capacity)
    try:
        return boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    finally:
        _testing.set_queue_capacity(4096)


class LoopErrors:
    """Collects what the event loop's exception handler sees (an InvalidStateError from a double
    resolution would land here)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: self.seen.append(context))


async def test_rule01_results_are_delivered_on_the_loop_thread(runtime: boxlite.Boxlite) -> None:
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 1)
    threads: list[int] = []
    future.add_done_callback(lambda _: threads.append(threading.get_ident()))
    gate.open()
    assert await future == 1
    await asyncio.sleep(0)
    assert threads == [threading.get_ident()]
    assert _testing.gil_on_worker_violations() == 0


async def test_rule02_a_busy_loop_thread_does_not_stall_tokio(runtime: boxlite.Boxlite) -> None:
    _testing.hold_drains(runtime, True)
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 5)
    gate.open()
    # The loop thread is busy in pure Python (holding the interpreter); the work still completes
    # and its result reaches the queue.
    deadline = time.monotonic() + 10
    while _testing.queue_len(runtime) == 0 and time.monotonic() < deadline:
        pass
    assert _testing.queue_len(runtime) == 1
    _testing.hold_drains(runtime, False)
    assert await future == 5


async def test_rule03_05_a_full_queue_holds_producers_and_never_the_workers(home: Path) -> None:
    runtime = open_runtime(home, capacity=4)
    try:
        _testing.hold_drains(runtime, True)
        gate = _testing.Gate()
        futures = [_testing.gated(runtime, gate, value) for value in range(10)]
        gate.open()
        await wait_until(lambda: _testing.queue_len(runtime) == 4 and _testing.waiting_producers(runtime) == 6)
        _testing.start_canary(runtime)
        ticks = _testing.canary_ticks()
        await wait_until(lambda: _testing.canary_ticks() > ticks + 3)
        assert _testing.queue_len(runtime) == 4
        _testing.hold_drains(runtime, False)
        assert await asyncio.gather(*futures) == list(range(10))
    finally:
        runtime.close()


async def test_rule04_a_completion_callback_may_call_back_into_the_runtime(runtime: boxlite.Boxlite) -> None:
    gate = _testing.Gate()
    gate.open()
    nested: list[asyncio.Future[int]] = []
    first = _testing.gated(runtime, gate, 1)
    first.add_done_callback(lambda _: nested.append(_testing.gated(runtime, gate, 2)))
    assert await first == 1
    await wait_until(lambda: bool(nested))
    assert await asyncio.wait_for(nested[0], 10) == 2


async def test_rule06_a_result_that_arrives_after_close_is_released(home: Path) -> None:
    runtime = open_runtime(home)
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 7)
    runtime.close()
    with pytest.raises(boxlite.RuntimeClosedError):
        await future
    gate.open()
    await wait_until(lambda: gate.released() == 1)


def threads_of_this_process() -> int:
    return len(os.listdir("/proc/self/task"))


async def test_rule07_08_channels_and_workers_end_with_their_runtime(tmp_path: Path) -> None:
    channels = _testing.live_channels()
    threads = threads_of_this_process()
    gate = _testing.Gate()
    gate.open()
    for index in range(30):
        runtime = open_runtime(tmp_path / f"home{index}")
        assert await _testing.gated(runtime, gate, index) == index  # the runtime now has a channel on this loop
        runtime.close()
        runtime.close()
        assert repr(runtime) == "Boxlite(open=false)"
    # Each closed channel's drain takes its reader off the loop; then the eventfd is closed.
    await wait_until(lambda: _testing.live_channels() <= channels)
    await wait_until(lambda: threads_of_this_process() <= threads)


def test_one_runtime_serves_event_loops_one_after_another(home: Path) -> None:
    gc.collect()  # channels of earlier tests' runtimes go now, not during the counts below
    channels = _testing.live_channels()
    runtime = open_runtime(home)

    async def once(value: int) -> int:
        gate = _testing.Gate()
        gate.open()
        return await _testing.gated(runtime, gate, value)

    try:
        assert asyncio.run(once(1)) == 1
        assert asyncio.run(once(2)) == 2
        # The first loop's channel went when the second loop registered; the second's is kept
        # (closed) until the runtime closes.
        assert _testing.live_channels() == channels + 1
    finally:
        runtime.close()
    assert _testing.live_channels() == channels


async def test_two_event_loops_share_one_runtime_at_once(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    gate = _testing.Gate()
    gate.open()

    async def work(tag: str) -> list[object]:
        results: list[object] = []
        for value in range(30):
            results.append(await _testing.gated(runtime, gate, value))
            execution = await box.exec("echo", [f"{tag}{value}"])
            results.append("".join([chunk async for chunk in execution.stdout()]))
            await execution.wait()
        return results

    def in_another_loop() -> list[object]:
        return asyncio.run(work("other"))

    theirs, ours = await asyncio.gather(asyncio.to_thread(in_another_loop), work("main"))
    for tag, results in (("other", theirs), ("main", ours)):
        assert results == [item for value in range(30) for item in (value, f"{tag}{value}\n")]


async def test_rule09_close_releases_queued_results_before_it_returns(home: Path) -> None:
    runtime = open_runtime(home)
    _testing.hold_drains(runtime, True)
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 1)
    gate.open()
    await wait_until(lambda: _testing.queue_len(runtime) == 1)
    runtime.close()
    assert gate.released() == 1
    with pytest.raises(boxlite.RuntimeClosedError):
        await future


async def test_rule10_results_arrive_in_the_order_they_were_produced(runtime: boxlite.Boxlite) -> None:
    futures = _testing.ordered(runtime, 1000)
    order: list[int] = []
    for future in futures:
        future.add_done_callback(lambda done: order.append(done.result()))
    await asyncio.gather(*futures)
    assert order == list(range(1000))


async def test_rule11_each_request_completes_exactly_once(runtime: boxlite.Boxlite) -> None:
    gate = _testing.Gate()
    futures = [_testing.gated(runtime, gate, value, fail=value % 3 == 0) for value in range(60)]
    completions: dict[int, int] = {}
    for index, future in enumerate(futures):
        future.add_done_callback(lambda _, index=index: completions.__setitem__(index, completions.get(index, 0) + 1))
    gate.open()
    results = await asyncio.gather(*futures, return_exceptions=True)
    for value, result in enumerate(results):
        if value % 3 == 0:
            assert isinstance(result, boxlite.InvalidStateError)
        else:
            assert result == value
    await asyncio.sleep(0)
    assert completions == {index: 1 for index in range(60)}
    assert _testing.pending_requests(runtime) == 0


async def test_rule11_12_bad_arguments_fail_at_the_call_and_start_nothing(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    spawned = _testing.spawned_tasks()
    with pytest.raises(TypeError):
        runtime.create("not options")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        runtime.get(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        box.exec("echo", "hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        box.exec("echo", ["hi"], on_stdout=print)  # type: ignore[call-arg]
    with pytest.raises(boxlite.InvalidArgumentError):
        box.exec("sleep", ["1"], timeout_secs=-1)
    with pytest.raises(TypeError):
        boxlite.BoxOptions(env={"A": "1"})  # type: ignore[arg-type]
    assert _testing.spawned_tasks() == spawned
    assert _testing.pending_requests(runtime) == 0


async def test_rule15_21_a_closed_runtime_refuses_everything_at_the_call(home: Path) -> None:
    runtime = open_runtime(home)
    box = await runtime.create(boxlite.BoxOptions())
    runtime.close()
    spawned = _testing.spawned_tasks()
    calls: list[Callable[[], object]] = [
        lambda: runtime.create(boxlite.BoxOptions()),
        lambda: runtime.get_or_create(boxlite.BoxOptions(), name="x"),
        lambda: runtime.get(box.id),
        lambda: runtime.get_info(box.id),
        lambda: runtime.list_info(),
        lambda: runtime.remove(box.id),
        lambda: runtime.metrics(),
        lambda: runtime.shutdown(),
        lambda: box.start(),
        lambda: box.stop(),
        lambda: box.info(),
        lambda: box.exec("true"),
        lambda: box.metrics(),
        lambda: _testing.gated(runtime, _testing.Gate(), 1),
    ]
    for call in calls:
        with pytest.raises(boxlite.RuntimeClosedError):
            call()
    assert _testing.spawned_tasks() == spawned


async def test_rule15_after_shutdown_new_boxes_are_refused(runtime: boxlite.Boxlite) -> None:
    await runtime.shutdown()
    await runtime.shutdown()
    with pytest.raises(boxlite.StoppedError):
        await runtime.create(boxlite.BoxOptions())
    assert await runtime.list_info() == []


FORKS_AND_GOES_ON = """
import asyncio, os, sys, boxlite

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    box = await runtime.create(boxlite.BoxOptions())
    running = await box.exec("sleep", ["600"])
    child = os.fork()
    if child == 0:
        # The child goes on with its copy of the program and of its event loop.
        try:
            await box.exec("true")
        except boxlite.RuntimeClosedError as error:
            print("child:", error, flush=True)
        runtime.close()
        return  # the child's loop ends, and with it its copy of the runtime's readers
    assert os.waitpid(child, 0)[1] == 0
    # The parent's runtime, its box and its execution are as they were.
    echoed = await box.exec("echo", ["parent"])
    print("parent:", (await echoed.wait()).exit_code, flush=True)
    await running.kill()
    print("parent:", (await running.wait()).signal, flush=True)
    await runtime.remove(box.id, force=True)
    runtime.close()

asyncio.run(main())
"""


def test_rule15_a_forked_child_neither_uses_nor_closes_its_parents_runtime(home: Path) -> None:
    """Its calls fail at once, its close() leaves the parent's boxes alone, and its loop's end
    takes nothing the parent's loop waits for."""
    finished = subprocess.run([sys.executable, "-c", FORKS_AND_GOES_ON, str(home)], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [
        "child: runtime closed: this process was forked from the one that opened the runtime, and cannot use it; open a runtime of its own, on a home of its own",
        "parent: 0",
        "parent: 9",
    ], finished.stdout + finished.stderr
    assert_no_leftovers(home)


async def test_rule16_close_fails_every_pending_awaitable(home: Path) -> None:
    runtime = open_runtime(home)
    gate = _testing.Gate()
    pending = [_testing.gated(runtime, gate, value) for value in range(5)]
    box = await runtime.create(boxlite.BoxOptions())
    execution = await box.exec("sleep", ["100"])
    waiting = asyncio.ensure_future(execution.wait())
    reading = asyncio.ensure_future(execution.stdout().__anext__())
    await asyncio.sleep(0)
    runtime.close()
    for awaitable in [*pending, waiting, reading]:
        with pytest.raises(boxlite.RuntimeClosedError):
            await asyncio.wait_for(awaitable, 10)
    gate.open()
    await wait_until(lambda: gate.released() == 5)


async def test_rule16_close_during_a_stop_kills_the_box_and_leaves_nothing(home: Path) -> None:
    runtime = open_runtime(home)
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    # The sleep ignores SIGTERM: the stop waits out its whole grace (10 s) before it kills.
    run = await box.exec("sh", ["-c", "trap '' TERM; echo ready; exec sleep 600"])
    assert await run.stdout().__anext__() == "ready\n"
    stopping = asyncio.ensure_future(box.stop())
    deadline = time.monotonic() + 10
    while (info := await runtime.get_info(box.id)) is not None and info.state.status != "stopping":
        assert time.monotonic() < deadline, "the stop never began"
        await asyncio.sleep(0.001)
    runtime.close()  # while the stop holds the box, waiting out its grace
    assert box_processes(home) == [], "a box held by a stop outlived the close"
    assert_no_leftovers(home)
    with pytest.raises(boxlite.RuntimeClosedError):
        await stopping
    reopened = open_runtime(home)
    info = await reopened.get_info(box.id)
    assert info is not None and info.state.status == "stopped"
    reopened.close()


async def test_rule17_18_every_claim_order_resolves_once_and_releases_once(home: Path) -> None:
    errors = LoopErrors()
    runtime = open_runtime(home)

    # result, then cancel: the caller has the value; cancelling later changes nothing.
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 1)
    gate.open()
    assert await future == 1
    future.cancel()
    assert gate.released() == 0

    # cancel, then result: the result is released.
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 2)
    future.cancel()
    gate.open()
    await wait_until(lambda: gate.released() == 1)

    # result queued, then cancel, then delivery: released, never set on the cancelled future.
    _testing.hold_drains(runtime, True)
    gate = _testing.Gate()
    future = _testing.gated(runtime, gate, 3)
    gate.open()
    await wait_until(lambda: _testing.queue_len(runtime) == 1)
    future.cancel()
    _testing.hold_drains(runtime, False)
    await wait_until(lambda: gate.released() == 1)

    # result queued, then close: the close releases it and fails the caller.
    _testing.hold_drains(runtime, True)
    gate = _testing.Gate()
    queued = _testing.gated(runtime, gate, 4)
    gate.open()
    await wait_until(lambda: _testing.queue_len(runtime) == 1)
    # cancel, then close: the sweep finds nothing to fail for it.
    never = _testing.Gate()
    cancelled = _testing.gated(runtime, never, 5)
    cancelled.cancel()
    runtime.close()
    assert gate.released() == 1
    with pytest.raises(boxlite.RuntimeClosedError):
        await queued
    assert cancelled.cancelled()
    never.open()
    await wait_until(lambda: never.released() == 1)
    await asyncio.sleep(0)
    assert errors.seen == []


async def test_rule19_20_a_cancelled_create_leaves_no_box(runtime: boxlite.Boxlite, home: Path) -> None:
    gate = _testing.Gate()
    removed = _testing.orphans_removed()
    creating = _testing.gated_create(runtime, gate, boxlite.BoxOptions())
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating  # returns at once, while the create is still held at its gate
    await asyncio.sleep(0)
    assert _testing.pending_requests(runtime) == 0, "the cancelled request gave up its slot at once"
    gate.open()
    # The counter is process-wide (an earlier test's orphan may land too); the box list and the
    # boxes directory below are this runtime's own.
    await wait_until(lambda: _testing.orphans_removed() >= removed + 1)
    # The removal runs on the runtime's tokio, waiting for the box's lifecycle lock.
    await wait_until(lambda: not any((home / "boxes").iterdir()), what="the orphan's directory was left")
    assert await runtime.list_info() == []


async def cancelled_as_its_result_arrives(future: asyncio.Future[object]) -> object | None:
    """Awaits ``future`` in a task that is cancelled the moment the result is set: the cancel
    runs before the task's own wake-up (its callback was added first), so the task never
    receives the value. Gives back the value instead when the result came before the task first
    ran (then there was no moment to cancel in)."""
    task: asyncio.Task[object] | None = None
    future.add_done_callback(lambda _: task.cancel() if task is not None else None)

    async def caller() -> object:
        return await future

    task = asyncio.create_task(caller())
    try:
        return await task
    except asyncio.CancelledError:
        assert future.done() and not future.cancelled(), "the cancel landed after the result"
        return None


async def test_rule19_a_create_cancelled_as_its_result_arrives_leaves_no_box(runtime: boxlite.Boxlite, home: Path) -> None:
    landed = 0
    for _ in range(100):
        received = await cancelled_as_its_result_arrives(runtime.create(boxlite.BoxOptions()))
        if isinstance(received, boxlite.Box):
            await runtime.remove(received.id)
        else:
            landed += 1
    assert landed >= 20
    await wait_until(lambda: not any((home / "boxes").iterdir()), what="a box nobody received was left")
    assert await runtime.list_info() == []


async def test_rule19_a_box_the_caller_received_is_never_removed_with_its_object(runtime: boxlite.Boxlite) -> None:
    awaited = await runtime.create(boxlite.BoxOptions())
    gathered = await asyncio.gather(runtime.create(boxlite.BoxOptions()), runtime.create(boxlite.BoxOptions()))
    made, created = await runtime.get_or_create(boxlite.BoxOptions(), name="made")
    assert created
    ids = {awaited.id, made.id, *(box.id for box in gathered)}
    del awaited, gathered, made
    gc.collect()
    # A later request goes through the same queue and tokio: a removal would have started.
    await runtime.metrics()
    assert {info.id for info in await runtime.list_info()} == ids


async def test_rule19_a_box_another_awaiter_received_is_kept(runtime: boxlite.Boxlite) -> None:
    # Two tasks await one create; the first is cancelled as the result arrives, the second
    # receives the box, which must live on.
    creating = runtime.create(boxlite.BoxOptions())
    first: asyncio.Task[object] | None = None
    creating.add_done_callback(lambda _: first.cancel() if first is not None else None)

    async def awaiting() -> object:
        return await creating

    first = asyncio.create_task(awaiting())
    second = asyncio.create_task(awaiting())
    box = await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert isinstance(box, boxlite.Box)
    await runtime.metrics()  # a later request: a release would have begun by now
    assert [info.id for info in await runtime.list_info()] == [box.id]
    # The same code awaiting the future again after its cancellation receives it too.
    again = runtime.create(boxlite.BoxOptions())
    received: list[object] = []

    async def retrying() -> None:
        try:
            await again
        except asyncio.CancelledError:
            received.append(await again)

    retry: asyncio.Task[None] | None = None
    again.add_done_callback(lambda _: retry.cancel() if retry is not None else None)
    retry = asyncio.create_task(retrying())
    await retry
    await runtime.metrics()
    assert len(received) == 1 and len(await runtime.list_info()) == 2


async def test_rule19_a_box_a_callback_took_while_a_task_awaited_is_kept(runtime: boxlite.Boxlite) -> None:
    # A done-callback takes the box while a task is suspended on the same future, and cancels
    # that task before it wakes: the box is the callback's and must live on.
    creating = runtime.create(boxlite.BoxOptions())
    taken: list[boxlite.Box] = []
    waiting: asyncio.Task[object] | None = None

    def take(future: asyncio.Future[boxlite.Box]) -> None:
        taken.append(future.result())
        assert waiting is not None
        waiting.cancel()

    creating.add_done_callback(take)

    async def awaiting() -> object:
        return await creating

    waiting = asyncio.create_task(awaiting())
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await runtime.metrics()  # a later request: a release would have begun by now
    assert [info.id for info in await runtime.list_info()] == [taken[0].id]


async def test_rule19_an_exec_cancelled_as_its_result_arrives_leaves_no_process(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    landed = 0
    for _ in range(50):
        received = await cancelled_as_its_result_arrives(box.exec("sleep", ["876543"]))
        if isinstance(received, boxlite.Execution):
            received.close()
        else:
            landed += 1
    assert landed >= 5
    await wait_until(lambda: not processes_with_command_line(b"sleep\x00876543\x00"), what="an execution nobody received kept running")
    await box.stop()


async def test_rule19_a_cancelled_get_or_create_never_removes_a_box_it_found(runtime: boxlite.Boxlite) -> None:
    existing = await runtime.create(boxlite.BoxOptions(), name="keep")
    gate = _testing.Gate()
    finding = _testing.gated_get_or_create(runtime, gate, boxlite.BoxOptions(), "keep")
    finding.cancel()
    gate.open()
    await wait_until(lambda: _testing.pending_requests(runtime) == 0)
    # A later request goes through the same queue, so the found box's result was handled.
    assert [info.id for info in await runtime.list_info()] == [existing.id]


async def test_rule20_a_cancelled_wait_does_not_stop_the_process(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    execution = await box.exec("sh", ["-c", "read line; echo got $line"])
    waiting = asyncio.ensure_future(execution.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    stdin = execution.stdin()
    await stdin.send_input(b"hello\n")
    await stdin.close()
    assert [chunk async for chunk in execution.stdout()] == ["got hello\n"]
    assert (await execution.wait()).exit_code == 0


def test_leftover_check_sees_a_running_box(tmp_path: Path) -> None:
    """The leak check used by every test can fail: it sees a box that is still running."""

    async def scenario() -> None:
        runtime = open_runtime(tmp_path / "home")
        box = await runtime.create(boxlite.BoxOptions())
        await box.start()
        # The next box's shim is made ahead of need once this one took the last: the check kills
        # what it finds, so it looks once that shim is whole, not while it is being made.
        await wait_until(lambda: bool(_testing.warm_inits(runtime)), what="the next box's shim is never made")
        with pytest.raises(AssertionError, match="outlived"):
            assert_no_leftovers(tmp_path / "home")
        runtime.close()
        assert_no_leftovers(tmp_path / "home")

    asyncio.run(scenario())


async def test_a_runtime_dropped_right_after_a_call_still_resolves_it(home: Path) -> None:
    assert await boxlite.Boxlite(boxlite.Options(home_dir=str(home))).list_info() == []
    import gc

    gc.collect()
    runtime = open_runtime(home)  # the dropped runtime released the home's lock
    runtime.close()
    # The dropped runtime's shim made ahead of need ends once it is made (which it was being).
    await wait_until(lambda: box_processes(home) == [], what="the dropped runtime's shim outlived it")


DROPPED_WITH_A_REQUEST_NEVER_AWAITED = """
import asyncio, gc, os, sys, time
import boxlite
from boxlite._native import _testing

def workers() -> int:
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            names.append(open(f"/proc/self/task/{task}/comm").read())
        except OSError:
            pass
    return sum(name.startswith("boxlite-worker") for name in names)

gate = _testing.Gate()

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    _testing.gated(runtime, gate, 1)  # never awaited; the loop ends first

asyncio.run(main())
gc.collect()
gate.open()
deadline = time.monotonic() + 20
while workers() and time.monotonic() < deadline:
    time.sleep(0.01)
print(workers())
"""


def test_a_runtime_dropped_with_a_request_its_loop_never_took_lets_its_threads_go(home: Path) -> None:
    # The request's future (and the cancel hook on it, holding the runtime) stays with a loop
    # that closed: the loop's drain, let go, takes the request's slot, and the runtime goes.
    result = subprocess.run([sys.executable, "-c", DROPPED_WITH_A_REQUEST_NEVER_AWAITED, str(home)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "0"), result.stderr
