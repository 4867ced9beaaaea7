"""Where a runtime on a Ray cluster finds it and how it places boxes: ``boxlite.RayOptions``,
for ``Boxlite.ray``. Importable without Ray installed (the runtime itself is ``boxlite.ray``,
which needs ``pip install boxlite[ray]``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._native import ImageRegistry

__all__ = ["RayOptions"]


class RayOptions:
    """Where the cluster is and how boxes go on it (``Boxlite.ray``).

    - ``address``: the cluster to join (``"auto"``, ``"host:port"``, ``"ray://…"``); ``None``
      joins the cluster this process is already connected to, or a cluster found the usual Ray
      way (``RAY_ADDRESS``, a local one). A runtime that connected the process disconnects it
      on ``close()``.
    - ``namespace``: the Ray namespace of the host actors: runtimes of one namespace share boxes.
    - ``home_dir``: each node's runtime keeps its boxes in ``<home_dir>/<first 12 digits of the
      node id>`` on that node (``~/.boxlite/ray`` of the user the node runs as by default).
    - ``host_resource``: only nodes that have this Ray custom resource host boxes (all by
      default).
    - ``image_registries``: registries every node's runtime pulls images from.
    - ``direct_executions``: executions travel over a connection from this driver to each
      node's host (docs/ray.md), which the driver must be able to reach; ``False``: through Ray actor
      calls, slower by milliseconds. A driver that cannot connect (a ``ray://`` client outside
      the cluster, a firewall) uses Ray actor calls for that node by itself.
    """

    def __init__(
        self,
        address: str | None = None,
        namespace: str = "boxlite",
        home_dir: str | os.PathLike[str] | None = None,
        host_resource: str | None = None,
        image_registries: Sequence[ImageRegistry] = (),
        direct_executions: bool = True,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.home_dir = None if home_dir is None else os.fspath(home_dir)
        self.host_resource = host_resource
        self.image_registries = list(image_registries)
        self.direct_executions = direct_executions

    def __repr__(self) -> str:
        return (
            f"RayOptions(address={self.address!r}, namespace={self.namespace!r}, home_dir={self.home_dir!r}, "
            f"host_resource={self.host_resource!r}, image_registries={self.image_registries!r}, direct_executions={self.direct_executions!r})"
        )
