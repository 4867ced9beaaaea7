"""``boxlite.sync_api._network``: the sync network handle, and the sync faces of tunnels (each
call runs the native one on the sync runtime's loop thread and waits for it)."""

from __future__ import annotations

from .._native import BoxConnection, BoxTunnel, SocketAddress, TunnelForwarder
from .._network import SyncNetworkHandle
from ._runner import LoopThread

__all__ = ["SyncBoxConnection", "SyncBoxTunnel", "SyncNetworkHandle", "SyncTunnelForwarder"]


class SyncBoxConnection:
    """One connection to a box's port (``BoxConnection``)."""

    def __init__(self, runner: LoopThread, connection: BoxConnection) -> None:
        self._runner = runner
        self._connection = connection

    def read(self, max_bytes: int) -> bytes:
        return self._runner.run(lambda: self._connection.read(max_bytes))

    def write(self, data: bytes) -> int:
        return self._runner.run(lambda: self._connection.write(data))

    def shutdown_write(self) -> None:
        self._runner.run(self._connection.shutdown_write)

    def close(self) -> None:
        self._runner.run(self._connection.close)


class SyncTunnelForwarder:
    """A tunnel's listener on the host (``TunnelForwarder``)."""

    def __init__(self, runner: LoopThread, forwarder: TunnelForwarder) -> None:
        self._runner = runner
        self._forwarder = forwarder

    def local_addr(self) -> SocketAddress:
        return self._forwarder.local_addr()

    def wait(self) -> None:
        self._runner.run(self._forwarder.wait)

    def close(self) -> None:
        self._runner.run(self._forwarder.close)


class SyncBoxTunnel:
    """A way to one port of a running box, taken once (``BoxTunnel``)."""

    def __init__(self, runner: LoopThread, tunnel: BoxTunnel) -> None:
        self._runner = runner
        self._tunnel = tunnel

    def uri(self) -> str | None:
        return self._tunnel.uri()

    def connect(self) -> SyncBoxConnection:
        return SyncBoxConnection(self._runner, self._runner.run(self._tunnel.connect))

    def forward(self, listen: SocketAddress) -> SyncTunnelForwarder:
        return SyncTunnelForwarder(self._runner, self._runner.run(lambda: self._tunnel.forward(listen)))
