"""Box lifecycle on real boxes: create, start, stop, remove, persistence, names, handles."""

from __future__ import annotations

import os
import re
import asyncio
from pathlib import Path

import pytest

import boxlite
from boxlite._native import _testing

from .conftest import collect, logged, wait_until
from .leftovers import box_processes


async def run(box: boxlite.Box, script: str) -> bytes:
    stdout, _, status = await collect(await box.exec("sh", ["-c", script]))
    assert status.exit_code == 0
    return stdout


async def test_a_new_box_is_configured_with_a_base62_id(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions(cpus=2, memory_mib=256), name="first")
    assert re.fullmatch(r"[0-9A-Za-z]{12}", box.id)
    assert box.name == "first"
    assert repr(box) == f'Box(id="{box.id}")'
    info = await box.info()
    assert (info.state.status, info.state.running, info.state.pid) == ("configured", False, None)
    assert (info.image, info.cpus, info.memory_mib, info.auto_delete) == (boxlite.HOST_IMAGE, 2, 256, 1)
    assert info.node is None  # a box of a local runtime lives on no Ray node
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00", info.created_at)


async def test_start_is_idempotent_and_exec_boots_implicitly(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions())
    assert await run(box, "echo hi") == b"hi\n"
    info = await box.info()
    assert info.state.running and info.state.pid and info.started_at
    await box.start()
    await box.start()
    assert (await box.info()).state.pid == info.state.pid


async def test_list_info_is_newest_first_and_names_are_unique(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    assert await runtime.list_info() == []
    created = [await runtime.create(boxlite.BoxOptions(), name=f"b{index}") for index in range(3)]
    assert [info.id for info in await runtime.list_info()] == [box.id for box in reversed(created)]
    with pytest.raises(boxlite.InvalidArgumentError, match="already exists"):
        await runtime.create(boxlite.BoxOptions(), name="b1")
    found, was_created = await runtime.get_or_create(boxlite.BoxOptions(), name="b1")
    assert (found.id, was_created) == (created[1].id, False)
    fresh, was_created = await runtime.get_or_create(boxlite.BoxOptions(), name="b9")
    assert was_created and fresh.id not in {box.id for box in created}
    assert (await runtime.get("b2")).id == created[2].id  # type: ignore[union-attr]
    assert await runtime.get("nope") is None
    assert await runtime.get_info("nope") is None


async def test_get_or_create_finds_a_box_only_with_the_capabilities_asked_for(runtime: boxlite.Boxlite) -> None:
    """The other options of a box found are not looked at; its capabilities are: a program
    that asks for fewer must not be handed a box that holds more, nor one that lacks some."""
    net_admin = boxlite.AdvancedBoxOptions(capabilities=boxlite.ContainerCapabilities(add=["NET_ADMIN"]))
    made, created = await runtime.get_or_create(boxlite.BoxOptions(advanced=net_admin, auto_remove=False), name="g")
    assert created
    with pytest.raises(boxlite.InvalidArgumentError, match="exists with other capabilities.*NET_ADMIN"):
        await runtime.get_or_create(boxlite.BoxOptions(auto_remove=False), name="g")
    # The same set, asked for in other words, finds it; other options do not matter.
    same = boxlite.AdvancedBoxOptions(capabilities=boxlite.ContainerCapabilities(add=["cap_net_admin"]))
    found, created = await runtime.get_or_create(boxlite.BoxOptions(advanced=same, memory_mib=64), name="g")
    assert (found.id, created) == (made.id, False)
    await runtime.remove("g")


async def test_concurrent_get_or_creates_of_one_name_make_one_box(any_runtime: boxlite.Boxlite) -> None:
    """The calls that do not make the box wait for the one that does, and find it."""
    results = await asyncio.gather(*[any_runtime.get_or_create(boxlite.BoxOptions(auto_remove=False), name="g") for _ in range(6)])
    assert len({box.id for box, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert [info.name for info in await any_runtime.list_info()] == ["g"]
    await any_runtime.remove("g")


async def test_box_names_are_file_names_without_control_characters(runtime: boxlite.Boxlite) -> None:
    """A name is also a file's (an export into a directory writes ``<name>.boxlite``) and a
    line of ``boxlite ls``."""
    for bad in ("", ".", "..", "a/b", "a\nb", "tab\tname", "x" * 248, "0123456789ab"):
        with pytest.raises(boxlite.InvalidArgumentError, match="invalid box name"):
            await runtime.create(boxlite.BoxOptions(), name=bad)
    assert await runtime.list_info() == []
    longest = "x" * 247
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name=longest)
    assert (await runtime.get(longest)) is not None
    await runtime.remove(box.id)


async def test_default_boxes_are_removed_on_stop_and_handles_are_spent(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions())
    await run(box, "true")
    await box.stop()
    await box.stop()
    assert await runtime.get_info(box.id) is None
    for call in (box.start, lambda: box.exec("true"), box.metrics):
        with pytest.raises(boxlite.StoppedError, match="runtime.get"):
            await call()


async def test_a_handle_of_a_removed_box_says_it_is_not_running(runtime: boxlite.Boxlite) -> None:
    # Removed by its own stop: info() still answers (as after any stop), with its last state.
    box = await runtime.create(boxlite.BoxOptions())
    await run(box, "true")
    await box.stop()
    state = (await box.info()).state
    assert (state.status, state.running, state.pid) == ("stopped", False, None)
    # Removed through the runtime while it ran.
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    await run(box, "true")
    await runtime.remove(box.id, force=True)
    state = (await box.info()).state
    assert (state.status, state.running, state.pid) == ("stopped", False, None)
    with pytest.raises(boxlite.NotFoundError, match="was removed"):
        await box.metrics()


async def test_files_persist_across_stop_and_start(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="keeper")
    await run(box, "echo kept > /root/note; echo gone > /tmp/x; rm /etc/hosts")
    await box.stop()
    info = await runtime.get_info("keeper")
    assert info is not None and info.state.status == "stopped"
    again = await runtime.get("keeper")
    assert again is not None
    assert await run(again, "cat /root/note; test -e /etc/hosts || echo hosts-removed") == b"kept\nhosts-removed\n"
    await runtime.remove("keeper", force=True)


async def test_writes_in_one_box_do_not_reach_another(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    first = await runtime.create(boxlite.BoxOptions())
    second = await runtime.create(boxlite.BoxOptions())
    await run(first, "echo mine > /etc/marker")
    assert await run(second, "cat /etc/marker 2>/dev/null || echo absent") == b"absent\n"


async def test_remove_needs_force_for_a_running_box(any_runtime: boxlite.Boxlite, home: Path) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    await run(box, "true")
    with pytest.raises(boxlite.InvalidStateError, match="force"):
        await runtime.remove(box.id)
    await runtime.remove(box.id, force=True)
    assert await runtime.get_info(box.id) is None
    assert not (home / "boxes" / box.id).exists()
    with pytest.raises(boxlite.NotFoundError):
        await runtime.remove(box.id, force=True)


async def test_the_box_is_isolated_from_the_host(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions(), name="iso")
    output = await run(box, "hostname; echo $$; ls /proc | grep -c '^[0-9]'; find /home /root -mindepth 1 | wc -l; cat /proc/1/cmdline | tr '\\0' ' '")
    hostname, own_pid, processes, home_entries, init = output.decode().splitlines()
    assert hostname == "iso"
    assert int(processes) <= 4, "only the box's processes are visible"
    assert home_entries == "0", "the host's /home and /root stay outside"
    assert "boxlite-shim" in init
    assert await run(box, "touch /usr/bin/x 2>&1 || echo read-only") == b"touch: cannot touch '/usr/bin/x': Read-only file system\nread-only\n"


async def test_shims_come_from_one_spawner_which_is_replaced_if_killed_and_ends_with_the_runtime(runtime: boxlite.Boxlite, home: Path) -> None:
    """Shims are spawned by one small process (its descriptor table does not grow with the
    boxes): one killed from outside is replaced at the next start, and none outlives its
    runtime's shutdown."""
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    spawner = _testing.spawner_pid(runtime)
    assert spawner is not None and spawner in box_processes(home)
    # Between spawns (one may be under way: the next box's shim) it holds its socket and
    # /dev/null twice, nothing else.
    await wait_until(lambda: len(os.listdir(f"/proc/{spawner}/fd")) == 3, what="the idle spawner holds descriptors of its own")
    os.kill(spawner, 9)
    await wait_until(lambda: spawner not in box_processes(home), what="the killed spawner lingers")
    await box.stop()
    again = await runtime.create(boxlite.BoxOptions())
    await again.start()
    assert await run(again, "echo $((6 * 7))") == b"42\n"
    # The next box's shim, made once this one started, came from a new spawner.
    await wait_until(lambda: _testing.spawner_pid(runtime) not in (None, spawner), what="no new spawner")
    await runtime.shutdown()
    assert _testing.spawner_pid(runtime) is None
    await wait_until(lambda: not box_processes(home), what="processes of the shut-down runtime remain")


async def test_box_processes_run_in_the_boxs_cgroups_at_the_callers_priority(runtime: boxlite.Boxlite) -> None:
    # The box's init was made ahead of need, outside any box's cgroups and at low priority:
    # by the time it runs anything, both are the box's.
    await wait_until(lambda: bool(_testing.warm_inits(runtime)), what="the runtime made no init ahead of need")
    (warm,) = _testing.warm_inits(runtime)
    box = await runtime.create(boxlite.BoxOptions())
    await box.start()
    init_pid = (await box.info()).state.pid
    assert init_pid == warm
    for pid in ("self", "1"):
        groups = (await run(box, f"cat /proc/{pid}/cgroup")).decode().splitlines()
        for controller in ("memory", "pids"):
            lines = [line for line in groups if f":{controller}:" in line]
            assert lines and all(line.endswith(f"/boxlite/{box.id}") for line in lines), groups
    assert (await run(box, "nice")).strip() == str(os.getpriority(os.PRIO_PROCESS, 0)).encode()
    assert Path(f"/proc/{init_pid}/stat").read_text().rsplit(")", 1)[1].split()[16] == str(os.getpriority(os.PRIO_PROCESS, 0))


def _has_a_network(init_pid: int) -> bool | None:
    """Whether a shim made ahead of need was made for a box with a network (its command line);
    None if it has gone meanwhile (a refill ends one of the kind no longer wanted)."""
    try:
        return "--network" in Path(f"/proc/{init_pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None


async def test_the_shim_made_ahead_of_need_follows_the_kind_of_box_started(runtime: boxlite.Boxlite) -> None:
    # Made for a box with a network at first; after two boxes without one in a row, for a box
    # without, which starts on it; one box with a network between them changes nothing.
    without = boxlite.BoxOptions(network=boxlite.NetworkSpec(mode="disabled"))

    async def started(options: boxlite.BoxOptions) -> int:
        box = await runtime.create(options)
        await box.start()
        pid = (await box.info()).state.pid
        assert pid is not None
        await runtime.remove(box.id, force=True)
        return pid

    def ready(network: bool) -> bool:
        made = _testing.warm_inits(runtime)
        return bool(made) and _has_a_network(made[0]) is network

    await wait_until(lambda: ready(True), what="no shim with a network was made ahead of need")
    for _ in range(2):
        await started(without)
    await wait_until(lambda: ready(False), what="no shim without a network was made ahead of need after two such boxes")
    (warm,) = _testing.warm_inits(runtime)
    assert await started(without) == warm
    await wait_until(lambda: ready(False), what="no shim without a network was made again")
    await started(boxlite.BoxOptions())
    await wait_until(lambda: ready(False), what="one box with a network changed the kind made ahead of need")
    (warm,) = _testing.warm_inits(runtime)
    assert await started(without) == warm


async def test_async_with_starts_and_stops(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    box = await runtime.create(boxlite.BoxOptions())
    async with box as entered:
        assert entered is box
        assert (await box.info()).state.running
    assert await runtime.get_info(box.id) is None


async def test_detached_box_outlives_its_runtime_and_is_adopted(home: Path) -> None:
    first = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    box = await first.create(boxlite.BoxOptions(detach=True, auto_remove=False), name="lasting")
    await run(box, "echo survived > /root/proof")
    init_pid = (await box.info()).state.pid
    try:
        with pytest.raises(boxlite.InternalError, match="another runtime"):
            boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
        first.close()  # frees the home for the next runtime; the detached box keeps running
        del first, box
        import gc

        gc.collect()
        second = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
        try:
            info = await second.get_info("lasting")
            assert info is not None and info.state.running
            again = await second.get("lasting")
            assert again is not None
            assert await run(again, "cat /root/proof") == b"survived\n"
            await again.stop()
            stopped = await second.get_info("lasting")
            assert stopped is not None and stopped.state.status == "stopped"
            await second.remove("lasting")
        finally:
            second.close()
    finally:
        # A detached box outlives every runtime: if this test fails half-way, end it here.
        import os
        import signal

        if init_pid is not None and init_pid in box_processes(home):
            os.kill(init_pid, signal.SIGKILL)


async def test_options_that_conflict_are_refused(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    with pytest.raises(boxlite.InvalidArgumentError, match="remove-on-stop is incompatible"):
        await runtime.create(boxlite.BoxOptions(detach=True))
    with pytest.raises(boxlite.InvalidArgumentError, match="main command is empty"):
        await runtime.create(boxlite.BoxOptions(cmd=[]))
    # What no process can be given.
    with pytest.raises(boxlite.InvalidArgumentError, match="word 1 of the command has a NUL byte"):
        await runtime.create(boxlite.BoxOptions(entrypoint=["sh"], cmd=["a\x00b"]))
    with pytest.raises(boxlite.InvalidArgumentError, match="variable A has a NUL byte"):
        await runtime.create(boxlite.BoxOptions(env=[("A", "x\x00y")]))
    with pytest.raises(boxlite.InvalidArgumentError, match="working directory"):
        await runtime.create(boxlite.BoxOptions(working_dir="/\x00"))
    assert await runtime.list_info() == []


async def test_what_only_a_rest_server_keeps_is_refused_by_a_local_runtime(runtime: boxlite.Boxlite) -> None:
    for options in (boxlite.BoxOptions(auto_stop=60), boxlite.BoxOptions(auto_resume=True)):
        with pytest.raises(boxlite.UnsupportedError, match="REST runtime"):
            runtime.create(options)


async def test_metrics_count_boxes_and_commands(any_runtime: boxlite.Boxlite) -> None:
    runtime = any_runtime
    metrics = await runtime.metrics()
    assert (metrics.boxes_created_total, metrics.num_running_boxes, metrics.total_commands_executed) == (0, 0, 0)
    box = await runtime.create(boxlite.BoxOptions())
    await run(box, "true")
    with pytest.raises(boxlite.NotFoundError):
        await box.exec("nope")
    metrics = await runtime.metrics()
    assert (metrics.boxes_created_total, metrics.num_running_boxes, metrics.total_commands_executed, metrics.total_exec_errors) == (1, 1, 2, 1)
    box_metrics = await box.metrics()
    assert (box_metrics.commands_executed_total, box_metrics.exec_errors_total) == (2, 1)
    assert box_metrics.guest_boot_duration_ms is not None
    assert box_metrics.cpu_time_ns is not None and box_metrics.processes is not None, "over REST too"
    # The default network is on, and its info says so (over REST too).
    info = await box.info()
    assert info.network is not None and info.network.outbound.mode == "enabled"


async def test_shutdown_stops_boxes_and_refuses_new_ones(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    await run(box, "true")
    await runtime.shutdown(timeout=1)
    info = await runtime.get_info(box.id)
    assert info is not None and info.state.status == "stopped"
    with pytest.raises(boxlite.StoppedError):
        await runtime.create(boxlite.BoxOptions())


async def test_runtime_events_reach_python_logging(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="boxlite")  # read when a runtime is created
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        await log_a_life(runtime, caplog)


async def log_a_life(runtime: boxlite.Boxlite, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", "exit 5"], auto_remove=False))
    await logged(caplog, f"created box {box.id}")
    with pytest.raises(boxlite.NotFoundError):
        await (await runtime.create(boxlite.BoxOptions(cmd=["no-such-program"]))).start()
    failed = await logged(caplog, "failed to start")
    assert failed.levelno == logging.WARNING
    await box.start()
    await logged(caplog, f"started box {box.id}")
    ended = await logged(caplog, f"box {box.id}'s init ended on its own")
    assert ended.levelno == logging.INFO
    await logged(caplog, f"box {box.id}'s main process exited with 5")
    await runtime.remove(box.id)


async def test_concurrent_first_creates_on_a_fresh_home_all_succeed(runtime: boxlite.Boxlite) -> None:
    import asyncio

    boxes = await asyncio.gather(*(runtime.create(boxlite.BoxOptions()) for _ in range(6)))
    outputs = await asyncio.gather(*(run(box, "echo ok") for box in boxes))
    assert outputs == [b"ok\n"] * 6
    await asyncio.gather(*(box.stop() for box in boxes))


async def test_start_racing_stop_on_two_handles_ends_in_one_state_or_a_typed_error(runtime: boxlite.Boxlite) -> None:
    for auto_remove in (True, False):
        for _ in range(10):
            first = await runtime.create(boxlite.BoxOptions(auto_remove=auto_remove))
            await first.start()
            second = await runtime.get(first.id)
            assert second is not None
            stopped, started = await asyncio.gather(first.stop(), second.start(), return_exceptions=True)
            assert stopped is None
            info = await runtime.get_info(first.id)
            if auto_remove and info is None:
                # The stop removed the box: a start that came after it says so.
                assert started is None or isinstance(started, boxlite.NotFoundError), repr(started)
            else:
                assert started is None, repr(started)
                assert info is not None and info.state.status in ("running", "stopped")
            if info is not None:
                await runtime.remove(first.id, force=True)
    # A stop that waited while another handle removed the box has nothing left to stop.
    for _ in range(10):
        first = await runtime.create(boxlite.BoxOptions(auto_remove=False))
        await first.start()
        second = await runtime.get(first.id)
        assert second is not None
        removed, stopped = await asyncio.gather(runtime.remove(first.id, force=True), second.stop(), return_exceptions=True)
        assert (removed, stopped) == (None, None), (removed, stopped)
    assert await runtime.list_info() == []
