"""boxlite over Ray (``Boxlite.ray``): a real multi-node Ray cluster on loopback, started here
(``ray.cluster_utils.Cluster``: a raylet per node, each with its own workers), real host actors
owning real local runtimes, real boxes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="boxlite.ray needs the ray package (pip install 'boxlite[ray]'); CI installs it")
from ray.cluster_utils import Cluster  # noqa: E402

import boxlite  # noqa: E402
from boxlite.ray import RayBoxlite, RayOptions  # noqa: E402
from boxlite.ray import _channel  # noqa: E402
from boxlite.ray._host import node_home  # noqa: E402

from .leftovers import box_cgroups, box_processes  # noqa: E402
from .ray_temp import private_ray_temp  # noqa: E402

#: A node that may host boxes has this resource; the head node, where the test's driver is,
#: has it too.
HOSTS = "boxlite_test_host"

NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024, "resources": {HOSTS: 1}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Two nodes, with Ray's files in a directory of their own (``private_ray_temp``)."""
    with private_ray_temp() as temp:
        made = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False, "temp_dir": temp})
        made.add_node(**NODE_ARGS)
        made.wait_for_nodes()
        ray.init(address=made.address, log_to_driver=False, include_dashboard=False)
        try:
            yield made
        finally:
            ray.shutdown()
            made.shutdown()


@pytest.fixture
def homes() -> Iterator[Path]:
    """Where the nodes' runtimes of one test keep their homes: a short path, since a box's
    control socket path (under ``<homes>/<node>/boxes/<box>``) must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bxr-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def options_in(homes: Path, direct_executions: bool = True) -> RayOptions:
    """Options of a runtime of a namespace of its own (its own host actors on every node)."""
    return RayOptions(namespace=f"test-{uuid.uuid4().hex[:8]}", home_dir=homes, host_resource=HOSTS, direct_executions=direct_executions)


@pytest.fixture(params=[True, False], ids=["direct executions", "executions through Ray calls"])
async def rt(cluster: Cluster, homes: Path, request: pytest.FixtureRequest) -> AsyncIterator[RayBoxlite]:
    """A runtime of its own namespace, whose executions travel over its connections to the
    hosts or through Ray calls; shut down after the test, and then no box process is left on
    any node."""
    options = options_in(homes, direct_executions=request.param)
    runtime = boxlite.Boxlite.ray(options)
    try:
        yield runtime
    finally:
        await runtime.shutdown()
        runtime.close()
    await until_no_box_processes(homes)
    await until_no_actors(options.namespace)


async def until_no_actors(namespace: str) -> None:
    """The runtime's actors (the nodes' hosts, the name registry) end with its shutdown."""
    deadline = time.monotonic() + 20
    while True:
        alive = ray.util.list_named_actors(all_namespaces=True)
        left = [actor["name"] for actor in alive if actor["namespace"] == namespace]
        if not left:
            return
        assert time.monotonic() < deadline, f"actors outlived the cluster's runtime: {left}"
        await asyncio.sleep(0.05)


async def until_no_box_processes(homes: Path, node_id: str | None = None) -> None:
    """The box processes of every node's runtime under ``homes`` (or of ``node_id``'s) end (a
    killed host's boxes take a moment)."""
    deadline = time.monotonic() + 20
    while True:
        if node_id is not None:
            node_homes = [homes / node_home(node_id)]
        else:
            node_homes = list(homes.iterdir()) if homes.exists() else []
        left = [pid for home in node_homes for pid in box_processes(home)]
        if not left:
            return
        assert time.monotonic() < deadline, f"box processes outlived the cluster's runtime: {left}"
        await asyncio.sleep(0.05)


async def output_of(run: Any) -> tuple[str, str, int]:
    stdout, stderr = await asyncio.gather(collect(run.stdout()), collect(run.stderr()))
    return stdout, stderr, (await run.wait()).exit_code


async def collect(stream: Any) -> str:
    return "".join([chunk async for chunk in stream])


async def test_boxes_spread_over_the_nodes_and_run_commands(rt: RayBoxlite, cluster: Cluster) -> None:
    boxes = [await rt.create(boxlite.BoxOptions(auto_remove=False)) for _ in range(4)]
    assert {box.node for box in boxes} == set(rt.nodes()) and len(rt.nodes()) == 2
    for box in boxes:
        assert await output_of(await box.exec("sh", ["-c", "echo out; echo err >&2; exit 3"])) == ("out\n", "err\n", 3)
        info = await box.info()
        assert (info.id, info.node, info.state.status) == (box.id, box.node, "running")
    listed = await rt.list_info()
    assert sorted(info.id for info in listed) == sorted(box.id for box in boxes)
    metrics = await rt.metrics()
    assert (metrics.num_running_boxes, metrics.total_commands_executed) == (4, 4)
    await rt.remove(boxes[0].id, force=True)
    assert await rt.get(boxes[0].id) is None
    assert (await rt.get(boxes[1].id)) is not None


async def test_output_streams_as_it_comes_and_stdin_reaches_the_process(rt: RayBoxlite) -> None:
    box = await rt.create(boxlite.BoxOptions())
    run = await box.exec("sh", ["-c", "echo ready; while read line; do echo \"got $line\"; done; echo bye >&2"])
    stdout = run.stdout()
    # The first line arrives while the process still waits for its input: output is streamed.
    assert await anext(stdout) == "ready\n"
    stdin = run.stdin()
    await stdin.send_input(b"one\n")
    assert await anext(stdout) == "got one\n"
    await stdin.send_input(b"two\n")
    await stdin.close()
    assert await collect(stdout) == "got two\n"
    assert await collect(run.stderr()) == "bye\n"
    assert (await run.wait()).exit_code == 0


async def test_a_reader_that_falls_behind_holds_the_process_back(rt: RayBoxlite) -> None:
    """Output nobody reads yet does not pile up: the process waits on its pipe, and every byte
    arrives once the reader reads."""
    box = await rt.create(boxlite.BoxOptions())
    size = 40 * 1024 * 1024
    run = await box.exec("sh", ["-c", f"head -c {size} /dev/zero; echo written >&2"])
    stdout = run.stdout(text=False)
    first = await anext(stdout)
    stderr = run.stderr()
    done_early = asyncio.ensure_future(anext(stderr))
    await asyncio.sleep(1.0)  # the window the writer would need if nothing held it back
    assert not done_early.done(), "40 MiB were written while the reader read one chunk"
    received = len(first) + sum([len(chunk) async for chunk in stdout])
    assert (received, await done_early, (await run.wait()).exit_code) == (size, "written\n", 0)


async def test_errors_arrive_as_the_local_runtime_raises_them(rt: RayBoxlite) -> None:
    box = await rt.create(boxlite.BoxOptions(), name="unique")
    with pytest.raises(boxlite.NotFoundError):
        await box.exec("no-such-program")
    with pytest.raises(boxlite.InvalidArgumentError, match="already exists"):
        other = [node for node in rt.nodes() if node != box.node][0]
        await rt.create(boxlite.BoxOptions(), name="unique", node=other)
    with pytest.raises(boxlite.NotFoundError):
        await rt.remove("no-such-box")
    assert await rt.get("no-such-box") is None
    with pytest.raises(TypeError):
        await rt.create("not options")  # type: ignore[arg-type]


async def test_files_go_in_and_come_out_whole(rt: RayBoxlite, tmp_path: Path) -> None:
    box = await rt.create(boxlite.BoxOptions())
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(payload)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "note.txt").write_text("hello")
    await box.copy_in(tmp_path / "big.bin", "/tmp/")
    await box.copy_in(tree, "/tmp/tree")
    assert await output_of(await box.exec("cat", ["/tmp/tree/sub/note.txt"])) == ("hello", "", 0)
    out = tmp_path / "out"
    out.mkdir()
    await box.copy_out("/tmp/big.bin", out)
    await box.copy_out("/tmp/tree", out / "tree-back")
    assert (out / "big.bin").read_bytes() == payload
    assert (out / "tree-back" / "sub" / "note.txt").read_text() == "hello"
    with pytest.raises(boxlite.NotFoundError):
        await box.copy_out("/no/such/file", out)


SECOND_DRIVER = """
import asyncio, sys, boxlite, ray
from boxlite.ray import RayOptions

async def main():
    rt = boxlite.Boxlite.ray(RayOptions(address=sys.argv[1], namespace=sys.argv[2], home_dir=sys.argv[3], host_resource=sys.argv[4]))
    box = await rt.get("shared")
    run = await box.exec("cat", ["/tmp/left-by-the-first"])
    print("read:", "".join([chunk async for chunk in run.stdout()]), flush=True)
    made = await rt.create(boxlite.BoxOptions(auto_remove=False), name="made-by-the-second")
    run = await made.exec("sh", ["-c", "echo from the second > /tmp/mark"])
    await run.wait()
    rt.close()

asyncio.run(main())
"""


async def test_snapshots_and_clones_of_a_cluster_box_stay_on_its_node(rt: RayBoxlite) -> None:
    box = await rt.create(boxlite.BoxOptions(auto_remove=False), name="original")
    assert await output_of(await box.exec("sh", ["-c", "echo first > /root/state"])) == ("", "", 0)
    await box.stop()
    box = await rt.get("original")
    assert box is not None
    made = await box.snapshot.create(name="before")
    assert made.name == "before" and [info.name for info in await box.snapshot.list()] == ["before"]
    assert (await box.snapshot.get("before")).name == "before" and await box.snapshot.get("none") is None
    assert await output_of(await box.exec("sh", ["-c", "echo second > /root/state"])) == ("", "", 0)
    await box.stop()
    box = await rt.get("original")
    assert box is not None
    await box.snapshot.restore("before")
    assert await output_of(await box.exec("cat", ["/root/state"])) == ("first\n", "", 0)
    await box.stop()
    box = await rt.get("original")
    assert box is not None
    twin = await box.clone_box(name="twin")
    assert twin.node == box.node and (await rt.get("twin")) is not None
    assert await output_of(await twin.exec("cat", ["/root/state"])) == ("first\n", "", 0)
    with pytest.raises(boxlite.InvalidArgumentError, match="twin"):
        await box.clone_box(name="twin")
    with pytest.raises(boxlite.NotFoundError):
        await box.snapshot.restore("none")
    await box.snapshot.remove("before")
    assert await box.snapshot.list() == []


async def test_concurrent_get_or_creates_of_one_name_make_one_box_in_the_cluster(rt: RayBoxlite) -> None:
    """Over both nodes: the calls that do not make the box wait for it and find it."""
    results = await asyncio.gather(*[rt.get_or_create(boxlite.BoxOptions(auto_remove=False), name="wanted") for _ in range(8)])
    assert len({box.id for box, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert [info.name for info in await rt.list_info()] == ["wanted"]
    await rt.remove("wanted")


async def test_a_second_driver_finds_named_boxes_and_its_boxes_outlive_it(rt: RayBoxlite, cluster: Cluster) -> None:
    box = await rt.create(boxlite.BoxOptions(), name="shared")
    await (await box.exec("sh", ["-c", "echo hello second > /tmp/left-by-the-first"])).wait()
    options = rt._options
    second = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SECOND_DRIVER, cluster.address, options.namespace, str(options.home_dir), HOSTS, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await second.communicate()
    assert (second.returncode, stdout.decode()) == (0, "read: hello second\n\n")
    made = await rt.get("made-by-the-second")
    assert made is not None
    assert await output_of(await made.exec("cat", ["/tmp/mark"])) == ("from the second\n", "", 0)


async def test_boxes_go_to_the_nodes_their_labels_or_resource_name(cluster: Cluster, homes: Path) -> None:
    special = cluster.add_node(**{**NODE_ARGS, "resources": {HOSTS: 1, "boxlite_test_special": 1}}, labels={"boxlite-test-zone": "b"})
    cluster.wait_for_nodes()
    runtime = boxlite.Boxlite.ray(options_in(homes))
    try:
        labelled = await runtime.create(boxlite.BoxOptions(), labels={"boxlite-test-zone": "b"})
        resourced = await runtime.create(boxlite.BoxOptions(), resource="boxlite_test_special")
        assert labelled.node == resourced.node == special.node_id
        assert (await labelled.info()).node == special.node_id
        with pytest.raises(boxlite.ResourceExhaustedError, match="label boxlite-test-zone='c'"):
            await runtime.create(boxlite.BoxOptions(), labels={"boxlite-test-zone": "c"})
        with pytest.raises(boxlite.InvalidArgumentError, match="not both"):
            await runtime.create(boxlite.BoxOptions(), node=special.node_id, resource="boxlite_test_special")
        await runtime.shutdown()
    finally:
        runtime.close()
        cluster.remove_node(special)
    await until_no_box_processes(homes)


async def test_a_node_that_dies_takes_its_boxes_and_only_them(rt: RayBoxlite, cluster: Cluster, homes: Path) -> None:
    survivor = await rt.create(boxlite.BoxOptions())
    doomed = cluster.add_node(**NODE_ARGS)
    cluster.wait_for_nodes()
    lost = await rt.create(boxlite.BoxOptions(), name="on-the-doomed-node", node=doomed.node_id)
    assert lost.node == doomed.node_id and survivor.node != doomed.node_id
    assert await output_of(await lost.exec("echo", ["alive"])) == ("alive\n", "", 0)
    cluster.remove_node(doomed)
    with pytest.raises(boxlite.NodeLostError, match=doomed.node_id):
        await lost.exec("echo", ["alive"])
    with pytest.raises(boxlite.NodeLostError):
        await rt.get("on-the-doomed-node")
    assert await output_of(await survivor.exec("echo", ["still here"])) == ("still here\n", "", 0)
    assert [info.id for info in await rt.list_info()] == [survivor.id]
    # The dead node's host took its runtime with it, and that runtime its boxes.
    await until_no_box_processes(homes, doomed.node_id)
    # A node that comes back opens its home again, and settles what its killed runtime left.
    assert {group.name for group in box_cgroups()} >= {lost.id}
    boxlite.Boxlite(boxlite.Options(home_dir=str(homes / node_home(doomed.node_id)))).close()
    assert {group.name for group in box_cgroups()} & {lost.id} == set()
    # Its box's name is free again.
    again = await rt.create(boxlite.BoxOptions(), name="on-the-doomed-node")
    assert again.node != doomed.node_id


async def test_a_cancelled_create_leaves_no_box(rt: RayBoxlite) -> None:
    await rt.create(boxlite.BoxOptions())  # the hosts are up: the cancellation hits a create
    before = {info.id for info in await rt.list_info()}
    for delay in (0.0, 0.005, 0.02, 0.1):
        creating = asyncio.ensure_future(rt.create(boxlite.BoxOptions(), name=f"cancelled-{delay}"))
        await asyncio.sleep(delay)
        creating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await creating
    deadline = time.monotonic() + 20
    while {info.id for info in await rt.list_info()} != before:
        assert time.monotonic() < deadline, "a cancelled create left its box"
        await asyncio.sleep(0.05)


async def test_signals_kill_close_metrics_and_stop_reach_the_box(rt: RayBoxlite) -> None:
    box = await rt.create(boxlite.BoxOptions(auto_remove=False))
    signalled = await box.exec("sleep", ["600"])
    await signalled.signal(15)
    assert ((await signalled.wait()).exit_code, (await signalled.wait()).signal) == (-15, 15)
    killed = await box.exec("sleep", ["600"])
    await killed.kill()
    assert (await killed.wait()).exit_code == -9
    closed = await box.exec("sleep", ["600"])
    closed.close()
    status = await closed.wait()
    assert (status.forced, status.exit_code) == (True, -1)
    with pytest.raises(boxlite.InvalidArgumentError):
        await killed.signal(0)
    assert (await box.metrics()).commands_executed_total == 3
    await box.stop()
    assert (await rt.get_info(box.id)).state.status == "stopped"
    with pytest.raises(boxlite.StoppedError):
        await box.exec("true")
    # As a local Box: a second stop is nothing, and the spent handle still says what the box is.
    await box.stop()
    assert (await box.info()).state.status == "stopped"
    await until_no_sleep_in(await rt.get(box.id))


async def until_no_sleep_in(box: Any) -> None:
    """No ``sleep`` runs in the box any more (a box that is stopped has none)."""
    if (await box.info()).state.status != "running":
        return
    deadline = time.monotonic() + 30
    while (await output_of(await box.exec("sh", ["-c", "pgrep -x sleep || true"])))[0]:
        assert time.monotonic() < deadline, "a sleep outlived what should have ended it"
        await asyncio.sleep(0.05)


ORPHANING_DRIVER = """
import asyncio, os, sys, boxlite
from boxlite.ray import RayOptions

async def main():
    options = RayOptions(address=sys.argv[1], namespace=sys.argv[2], home_dir=sys.argv[3], host_resource=sys.argv[4], direct_executions=sys.argv[5] == "True")
    rt = boxlite.Boxlite.ray(options)
    box = await rt.get("kept")
    run = await box.exec("sh", ["-c", "echo started; exec sleep 600"])
    print(await anext(run.stdout()), end="", flush=True)
    os._exit(0)  # gone, without closing anything

asyncio.run(main())
"""


async def test_a_driver_that_dies_has_its_executions_ended(rt: RayBoxlite, cluster: Cluster) -> None:
    box = await rt.create(boxlite.BoxOptions(), name="kept")
    options = rt._options
    orphaning = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ORPHANING_DRIVER, cluster.address, options.namespace, str(options.home_dir), HOSTS, str(options.direct_executions), stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await orphaning.communicate()
    assert (orphaning.returncode, stdout.decode()) == (0, "started\n")
    # The box stays (boxes outlive drivers); what the dead driver ran in it ends.
    await until_no_sleep_in(box)


CREATING_DRIVER = """
import asyncio, os, sys, boxlite
from boxlite.ray import RayOptions

async def main():
    options = RayOptions(address=sys.argv[1], namespace=sys.argv[2], home_dir=sys.argv[3], host_resource=sys.argv[4])
    rt = boxlite.Boxlite.ray(options)
    await (await rt.create(boxlite.BoxOptions(), name="warm-up", node=sys.argv[5])).info()  # connected
    creating = asyncio.ensure_future(rt.create(boxlite.BoxOptions(), name="made-for-the-dead", node=sys.argv[5]))
    await asyncio.sleep(float(sys.argv[6]))
    print("received" if creating.done() else "pending", flush=True)
    os._exit(0)  # gone, without closing anything

asyncio.run(main())
"""


async def test_a_driver_that_dies_while_creating_leaves_no_box(cluster: Cluster, homes: Path) -> None:
    """A box belongs to a driver once its create's caller received it: a driver that dies
    before leaves none behind (over its connections to the hosts)."""
    options = options_in(homes)
    runtime = boxlite.Boxlite.ray(options)
    node = runtime.nodes()[0]
    pending = 0
    try:
        for delay in (0.0005, 0.001, 0.002, 0.004, 0.008):
            dying = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CREATING_DRIVER, cluster.address, options.namespace, str(options.home_dir), HOSTS, node, str(delay), stdout=asyncio.subprocess.PIPE
            )
            stdout, _ = await dying.communicate()
            assert dying.returncode == 0
            if stdout.decode() == "pending\n":
                pending += 1
                deadline = time.monotonic() + 20
                while await runtime.get_info("made-for-the-dead") is not None:
                    assert time.monotonic() < deadline, f"a box made for a driver that died {delay} s into its create outlived it"
                    await asyncio.sleep(0.05)
            else:
                await runtime.remove("made-for-the-dead", force=True)
            await runtime.remove("warm-up", force=True)
        assert pending > 0, "no driver died with its create pending"
    finally:
        await runtime.shutdown()
        runtime.close()
    await until_no_box_processes(homes)


async def test_a_cancelled_exec_leaves_no_process(rt: RayBoxlite) -> None:
    box = await rt.create(boxlite.BoxOptions())
    await (await box.exec("true")).wait()
    cancelled = 0
    for delay in (0.0, 0.0, 0.0005, 0.001, 0.002, 0.004):
        running = asyncio.ensure_future(box.exec("sleep", ["600"]))
        await asyncio.sleep(delay)
        running.cancel()
        try:
            (await running).close()  # it started before the cancellation: its caller ends it
        except asyncio.CancelledError:
            cancelled += 1
    assert cancelled > 0
    await until_no_sleep_in(box)


async def test_a_host_serves_no_connection_without_its_token(rt: RayBoxlite) -> None:
    box = await rt.create(boxlite.BoxOptions())
    ip, port, token = await rt._host(box.node).channel.remote()
    for shown in (b"", b"x" * len(token), token[:-1] + bytes([token[-1] ^ 1])):
        reader, writer = await asyncio.open_connection(ip, port)
        writer.write(len(shown).to_bytes(4, "big") + shown)
        # What follows would start a command: it must never be read.
        writer.write(_channel.encode(("run", "intruder", box.id, "touch", ["/intruded"], None, False, None, None, None)))
        try:
            answered = await reader.read()
        except ConnectionResetError:  # closed with the request unread
            answered = b""
        assert answered == b"", "a connection without the token was answered"
        writer.close()
    assert await output_of(await box.exec("sh", ["-c", "test -e /intruded && echo intruded || echo clean"])) == ("clean\n", "", 0)


async def test_close_fails_pending_calls_and_later_ones(cluster: Cluster, homes: Path) -> None:
    options = options_in(homes)
    runtime = boxlite.Boxlite.ray(options)
    box = await runtime.create(boxlite.BoxOptions())
    run = await box.exec("sleep", ["600"])
    waiting = asyncio.ensure_future(run.wait())
    creating = asyncio.ensure_future(runtime.create(boxlite.BoxOptions()))
    await asyncio.sleep(0)  # the wait and the create begin
    runtime.close()
    with pytest.raises(boxlite.RuntimeClosedError):
        await waiting
    with pytest.raises(boxlite.RuntimeClosedError):
        await creating
    with pytest.raises(boxlite.RuntimeClosedError):
        await runtime.list_info()
    # Boxes outlive a driver's runtime; the cluster's shutdown ends them.
    cleanup = boxlite.Boxlite.ray(options)
    assert [info.id for info in await cleanup.list_info()] == [box.id]
    await cleanup.shutdown()
    cleanup.close()
    await until_no_box_processes(homes)


def test_the_sync_api_drives_cluster_boxes(cluster: Cluster, homes: Path) -> None:
    from boxlite.sync_api import SyncBoxlite

    assert boxlite.RayOptions is RayOptions  # importable without Ray, as BoxLite's users write it
    with SyncBoxlite.ray(options_in(homes)) as runtime:
        box = runtime.create(boxlite.BoxOptions(), resource=HOSTS)
        run = box.exec("echo", ["synchronous"])
        assert ("".join(run.stdout()), run.wait().exit_code) == ("synchronous\n", 0)
        runtime.shutdown()
    asyncio.run(until_no_box_processes(homes))


def test_the_example_harness_runs_unchanged_on_the_cluster(cluster: Cluster, homes: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "snippet_harness.py"
    result = subprocess.run([sys.executable, str(example), str(homes), "--ray", cluster.address], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    asyncio.run(until_no_box_processes(homes))
