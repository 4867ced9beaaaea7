"""Health checks (`HealthCheckOptions`): the runtime asks a running box's init whether it
answers, on the box's schedule, and `BoxInfo.health_status` says what it found."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import boxlite


async def health_becomes(box: boxlite.Box, state: str, within: float = 15.0) -> boxlite.HealthStatus:
    deadline = time.monotonic() + within
    while True:
        health = (await box.info()).health_status
        if health.state.value == state:
            return health
        assert time.monotonic() < deadline, f"health stayed {health.state.value}, never {state}"
        await asyncio.sleep(0.05)


async def test_a_box_is_healthy_while_its_init_answers_and_unhealthy_when_it_stops(runtime: boxlite.Boxlite) -> None:
    check = boxlite.HealthCheckOptions(interval=1, timeout=1, retries=2, start_period=0)
    box = await runtime.create(boxlite.BoxOptions(advanced=boxlite.AdvancedBoxOptions(health_check=check)))
    assert (await box.info()).health_status.state.is_none(), "not running: no health"
    await box.start()
    assert (await box.info()).health_status.state.is_starting()
    healthy = await health_becomes(box, "healthy")
    assert healthy.failures == 0 and healthy.last_check is not None
    init = (await box.info()).state.pid
    assert init is not None
    os.kill(init, signal.SIGSTOP)  # the init stops answering; the box's processes run on
    try:
        unhealthy = await health_becomes(box, "unhealthy")
        assert unhealthy.failures >= 2
    finally:
        os.kill(init, signal.SIGCONT)
    await health_becomes(box, "healthy")
    await box.stop()


async def test_failures_in_the_start_period_do_not_count(runtime: boxlite.Boxlite) -> None:
    check = boxlite.HealthCheckOptions(interval=1, timeout=1, retries=1, start_period=60)
    box = await runtime.create(boxlite.BoxOptions(advanced=boxlite.AdvancedBoxOptions(health_check=check)))
    await box.start()
    init = (await box.info()).state.pid
    assert init is not None
    os.kill(init, signal.SIGSTOP)
    try:
        # Three checks go unanswered: each ends (after its timeout) with a new `last_check`.
        seen: set[str | None] = {(await box.info()).health_status.last_check}
        while len(seen) < 4:
            health = (await box.info()).health_status
            assert (health.state.value, health.failures) == ("starting", 0)
            seen.add(health.last_check)
            await asyncio.sleep(0.05)
    finally:
        os.kill(init, signal.SIGCONT)
    await health_becomes(box, "healthy")
    await box.stop()
