"""boxlite over a Ray cluster: ``Boxlite.ray(RayOptions(...))`` is a runtime with the local
runtime's API whose boxes live on the cluster's nodes (``pip install boxlite[ray]``).

    rt = boxlite.Boxlite.ray(boxlite.RayOptions(address="auto"))
    box = await rt.create(boxlite.BoxOptions(), name="worker-1")
    run = await box.exec("python3", ["-c", "print(6 * 7)"])
    print([chunk async for chunk in run.stdout()], box.node)

Each node runs one host actor (detached, named after the node) that owns the node's local
runtime; boxes outlive the driver that made them, and any driver of the namespace finds them
(names are unique in the whole cluster). See docs/ray.md.
"""

from __future__ import annotations

try:
    import ray as _ray  # noqa: F401
except ImportError:
    raise ImportError("boxlite.ray needs the ray package: pip install 'boxlite[ray]'") from None

from ..ray_options import RayOptions
from ._client import RayBox, RayBoxlite, RaySnapshots
from ._execution import RayExecStdin, RayExecStream, RayExecution
from ._wire import Record

__all__ = ["RayBox", "RayBoxlite", "RayExecStdin", "RayExecStream", "RayExecution", "RayOptions", "RaySnapshots", "Record"]
