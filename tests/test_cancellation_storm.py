"""Cancellation at random moments of careful code (a box removed in ``finally``) leaves nothing
but what the caller holds: no box, no record, no process, no cgroup (the ``home`` fixture
checks those last two)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import boxlite


ROUNDS = 400


async def careful(runtime: boxlite.Boxlite, source: Path, made: list[str]) -> None:
    box = await runtime.create(boxlite.BoxOptions())
    made.append(box.id)
    try:
        await box.start()
        execution = await box.exec("sh", ["-c", "echo one; sleep 0.002; echo two"])
        async for _ in execution.stdout():
            pass
        await execution.wait()
        await box.copy_in(str(source), "/tmp/")
        await box.copy_out("/tmp/source.txt", str(source.parent / f"{box.id}.txt"))
        await box.stop()
    finally:
        with contextlib.suppress(boxlite.NotFoundError):
            await runtime.remove(box.id, force=True)


async def test_cancellations_at_random_moments_leave_nothing(runtime: boxlite.Boxlite, home: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("payload\n")
    chance = random.Random(15)
    made: list[str] = []
    outcomes = {"finished": 0, "cancelled": 0}
    for _ in range(ROUNDS):
        task = asyncio.create_task(careful(runtime, source, made))
        # Anywhere from before the create's result to after the stop (a whole round takes a
        # few milliseconds here): half the rounds count turns of the loop instead, which lands
        # cancellations right as results arrive.
        if chance.random() < 0.5:
            await asyncio.sleep(chance.uniform(0, 0.012))
        else:
            for _ in range(chance.randrange(60)):
                await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            outcomes["finished"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
    assert outcomes["cancelled"] >= ROUNDS // 4, outcomes
    # A cancelled create runs on to its end in the background, and its box is then removed:
    # both may still be under way when the last round ends.
    deadline = time.monotonic() + 30
    while any((home / "boxes").iterdir()) or await runtime.list_info():
        assert time.monotonic() < deadline, f"a cancelled round left a box: {await runtime.list_info()}"
        await asyncio.sleep(0.01)
    # Boxes whose create() was cancelled never reached `made`; every one that did is gone.
    assert [box for box in await asyncio.gather(*(runtime.get(box_id) for box_id in made)) if box is not None] == []
