"""Network handles of the convenience layer: ``SimpleBox.network`` and the sync
``SyncNetworkHandle``. Ports are checked here, before anything reaches the runtime."""

from __future__ import annotations

from typing import Any, Protocol

from ._native import Box, InboundNetworkSpec, OutboundNetworkSpec

__all__ = ["SimpleBoxNetwork", "SyncNetworkHandle", "check_port"]


def check_port(port: object) -> int:
    """``port`` if it is an int in 1..65535, else ``ValueError``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer between 1 and 65535, got {port!r}")
    return port


class _StartedBox(Protocol):
    def _require_box(self) -> Box: ...


class SimpleBoxNetwork:
    """``SimpleBox.network``: the box's network handle, once the box is started."""

    def __init__(self, owner: _StartedBox) -> None:
        self._owner = owner

    async def tunnel(self, port: int) -> Any:
        return await self._owner._require_box().network.tunnel(check_port(port))

    async def revoke_tunnel(self, port: int) -> None:
        await self._owner._require_box().network.revoke_tunnel(check_port(port))

    async def update_inbound(self, spec: InboundNetworkSpec) -> None:
        await self._owner._require_box().network.update_inbound(spec)

    async def update_outbound(self, spec: OutboundNetworkSpec) -> None:
        await self._owner._require_box().network.update_outbound(spec)


class _TunnelOwner(Protocol):
    def _create_tunnel(self, port: int) -> Any: ...


class SyncNetworkHandle:
    """The sync network handle. ``owner`` makes the tunnels (``_create_tunnel(port)``); the
    other calls go to ``owner._network_call(name, argument)`` when it has one."""

    def __init__(self, owner: _TunnelOwner) -> None:
        self._owner = owner

    def tunnel(self, port: int) -> Any:
        return self._owner._create_tunnel(check_port(port))

    def revoke_tunnel(self, port: int) -> None:
        self._call("revoke_tunnel", check_port(port))

    def update_inbound(self, spec: InboundNetworkSpec) -> None:
        self._call("update_inbound", spec)

    def update_outbound(self, spec: OutboundNetworkSpec) -> None:
        self._call("update_outbound", spec)

    def _call(self, name: str, argument: object) -> None:
        getattr(self._owner, "_network_call")(name, argument)
