"""boxlite over Ray (``Boxlite.ray``) against the local runtime, on a Ray cluster of ``nodes``
nodes on loopback started here (every node on this machine, so the cluster cannot be faster
than one local runtime: the figures show what the cluster layer costs).

- exec ``true`` in a running box: the round trip to the box's host against the same exec on a
  local runtime (aim: at most 2 ms added at the median), over the driver's connections to the
  hosts and through Ray actor calls (``direct_executions=False``);
- ``runs`` short runs (``sh -c 'echo $((6 * 7))'``, output read and exit awaited) at most
  ``concurrency`` at a time, spread over a box per slot: throughput and per-run latency, on the
  cluster's boxes (spread over its nodes) and on one local runtime.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from typing import Any

import boxlite
from tests.ray_temp import private_ray_temp

from .harness import Row, latency_row, percentile, side_by_side, timed_us


async def ray_cluster(samples: int, warmup: int, runs: int, nodes: int, concurrency: int) -> list[Row]:
    with private_ray_temp() as ray_temp:
        return await _on_a_cluster(ray_temp, samples, warmup, runs, nodes, concurrency)


async def _on_a_cluster(ray_temp: str, samples: int, warmup: int, runs: int, nodes: int, concurrency: int) -> list[Row]:
    import ray
    from ray.cluster_utils import Cluster

    from boxlite.ray import RayOptions

    rows = []
    node_arguments: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 << 20}
    cluster = Cluster(initialize_head=True, head_node_args={**node_arguments, "include_dashboard": False, "temp_dir": ray_temp})
    for _ in range(nodes - 1):
        cluster.add_node(**node_arguments)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
    with tempfile.TemporaryDirectory(prefix="bxb-", dir="/tmp") as scratch:
        local = boxlite.Boxlite(boxlite.Options(home_dir=f"{scratch}/local"))
        remotes = {
            "": boxlite.Boxlite.ray(RayOptions(namespace="bench", home_dir=f"{scratch}/nodes")),
            ", through Ray calls": boxlite.Boxlite.ray(RayOptions(namespace="bench-ray-calls", home_dir=f"{scratch}/nodes-ray-calls", direct_executions=False)),
        }
        try:
            local_box = await local.create(boxlite.BoxOptions())
            local_boxes = [await local.create(boxlite.BoxOptions()) for _ in range(concurrency)]
            local_rate, local_latencies = await _short_runs(local_boxes, runs)
            for how, remote in remotes.items():
                remote_box = await remote.create(boxlite.BoxOptions())

                async def remote_true() -> None:
                    await (await remote_box.exec("true")).wait()

                async def local_true() -> None:
                    await (await local_box.exec("true")).wait()

                ours, theirs = await side_by_side(remote_true, local_true, samples, warmup)
                added_ms = (statistics.median(ours) - statistics.median(theirs)) / 1e3
                rows.append(latency_row(f"exec true on a cluster box{how}", "the same exec, local", ours, theirs, None,
                                        f"added latency at the median: {added_ms:.2f} ms (aim: at most 2 ms)"))

                remote_boxes = [await remote.create(boxlite.BoxOptions()) for _ in range(concurrency)]
                spread = len({box.node for box in remote_boxes})
                remote_rate, remote_latencies = await _short_runs(remote_boxes, runs)
                rows.append(Row(f"{runs} short runs over {nodes} nodes{how}", "runs/s", remote_rate, remote_rate,
                                "the same runs, one local runtime", local_rate, local_rate, 1, None, True,
                                f"{concurrency} at once, boxes on {spread} nodes; per-run p99 {percentile(remote_latencies, 0.99) / 1e3:.1f} ms "
                                f"on the cluster, {percentile(local_latencies, 0.99) / 1e3:.1f} ms local"))
                rows.append(latency_row(f"one short run of {runs} on the cluster{how}", "one short run, local", remote_latencies, local_latencies))
        finally:
            for remote in remotes.values():
                await remote.shutdown()
                remote.close()
            local.close()
            ray.shutdown()
            cluster.shutdown()
    return rows


async def _short_runs(boxes: list[Any], runs: int) -> tuple[float, list[float]]:
    """Runs ``runs`` short commands, each box running one at a time; the throughput and each
    run's latency (µs)."""
    latencies: list[float] = []
    remaining = iter(range(runs))

    async def one(box: Any) -> None:
        run = await box.exec("sh", ["-c", "echo $((6 * 7))"])
        output = "".join([chunk async for chunk in run.stdout()])
        assert (output, (await run.wait()).exit_code) == ("42\n", 0)

    async def worker(box: Any) -> None:
        for _ in remaining:
            latencies.append(await timed_us(lambda: one(box)))

    started = time.perf_counter()
    await asyncio.gather(*(worker(box) for box in boxes))
    return runs / (time.perf_counter() - started), latencies

