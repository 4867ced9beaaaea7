"""Type stubs for ``boxlite._native``, the Rust extension. This file is the contract of the native
module: mypy --strict checks the package against it and ``mypy.stubtest`` checks it against the
built module."""

import asyncio
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, final

from typing_extensions import Self

from .ray import RayBoxlite
from .ray_options import RayOptions
from .rest import BoxliteRestOptions

__all__ = [
    "HOST_IMAGE",
    "AdvancedBoxOptions",
    "Box",
    "BoxConnection",
    "BoxInfo",
    "BoxMetrics",
    "BoxOptions",
    "BoxStateInfo",
    "BoxTunnel",
    "Boxlite",
    "CloneOptions",
    "ContainerCapabilities",
    "CopyOptions",
    "ExecStdin",
    "ExecStream",
    "Execution",
    "ExitStatus",
    "ExportOptions",
    "HealthCheckOptions",
    "HealthState",
    "HealthStatus",
    "ImageAliasEvent",
    "ImageDetail",
    "ImageHandle",
    "ImageInfo",
    "ImagePullResult",
    "ImageRegistry",
    "ImageVersion",
    "InboundNetworkInfo",
    "InboundNetworkSpec",
    "NetworkHandle",
    "NetworkInfo",
    "NetworkSpec",
    "Options",
    "OutboundNetworkInfo",
    "OutboundNetworkSpec",
    "PublishedPort",
    "RuntimeMetrics",
    "Secret",
    "SecurityOptions",
    "Server",
    "SnapshotHandle",
    "SnapshotInfo",
    "SnapshotOptions",
    "SocketAddress",
    "TunnelForwarder",
    "VolumeHandle",
    "VolumeInfo",
    "__version__",
    "_keep_detached_networks",
    "serve",
]

__version__: Final[str]
HOST_IMAGE: Final[str]
"""The built-in image: a skeleton root with the host's /usr read-only. Needs no network."""

@final
class ImageRegistry:
    """One registry to pull from. Credentials never appear in ``repr()``.

    Raises:
        RuntimeError: at construction, for a blank host, a URL instead of ``host[:port]``, a
            transport other than https/http, or a username without a password.
    """

    host: str
    transport: str
    """``"https"`` (default) or ``"http"`` (plain HTTP, e.g. a registry on loopback)."""
    skip_verify: bool
    search: bool
    """Try this registry for image names that name no registry."""
    username: str | None
    password: str | None
    bearer_token: str | None
    def __new__(
        cls,
        host: str,
        transport: str = "https",
        skip_verify: bool = False,
        search: bool = False,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
    ) -> Self: ...

@final
class Options:
    """Runtime options."""

    home_dir: str | None
    """The runtime's home directory; None means ``$BOXLITE_HOME``, else ``~/.boxlite``."""
    image_registries: list[ImageRegistry]
    def __new__(cls, home_dir: str | None = None, image_registries: list[ImageRegistry] = ...) -> Self: ...

@final
class ImagePullResult:
    @property
    def reference(self) -> str:
        """The fully qualified reference that was pulled."""
    @property
    def config_digest(self) -> str: ...
    @property
    def layer_count(self) -> int: ...

@final
class ImageInfo:
    @property
    def reference(self) -> str: ...
    @property
    def repository(self) -> str: ...
    @property
    def tag(self) -> str | None: ...
    @property
    def id(self) -> str:
        """The image's config digest."""
    @property
    def cached_at(self) -> str: ...
    @property
    def size_bytes(self) -> int | None: ...

@final
class ImageVersion:
    """A version of an image: one manifest, and the tags that name it."""

    @property
    def digest(self) -> str:
        """The manifest's digest."""
    @property
    def size_bytes(self) -> int: ...
    @property
    def source_ref(self) -> str:
        """The reference it was pulled as."""
    @property
    def aliases(self) -> list[str]:
        """The tags that name it."""
    @property
    def recorded_at(self) -> str:
        """When it was pulled (RFC 3339)."""
    @property
    def last_used_at(self) -> str | None:
        """Not kept by a local store: ``None``."""
    @property
    def upstream_missing_at(self) -> str | None:
        """Not kept by a local store: ``None``."""

@final
class ImageAliasEvent:
    """A tag moved from one version to another (a REST server's history; a local store keeps
    none)."""

    @property
    def alias(self) -> str: ...
    @property
    def from_digest(self) -> str | None: ...
    @property
    def to_digest(self) -> str | None: ...
    @property
    def actor(self) -> str | None: ...
    @property
    def recorded_at(self) -> str: ...

@final
class ImageDetail:
    """An image by name: its versions (one per manifest pulled under the name) and their tags."""

    @property
    def name(self) -> str:
        """The repository (``docker.io/library/alpine``)."""
    @property
    def versions(self) -> list[ImageVersion]:
        """Newest first."""
    @property
    def aliases(self) -> list[str]:
        """Every tag of every version."""
    @property
    def history(self) -> list[ImageAliasEvent]: ...
    @property
    def curated(self) -> bool:
        """Whether a server's curators keep it; ``False`` for a local store."""

@final
class ImageHandle:
    """``Boxlite.images``: the runtime's image store."""

    def pull(self, reference: str, progress: Callable[[str, int, int], object] | None = None) -> asyncio.Future[ImagePullResult]:
        """Pulls an image into the local store (or finds it there). Unqualified names try the
        registries configured with ``search=True`` first, then Docker Hub; a one-word name is
        Docker Hub's official image, asked for as ``library/<name>`` everywhere (so a Docker Hub
        mirror serves it). The result's ``reference`` is the one given, as written.
        ``progress(layer_digest, bytes_done, bytes_total)`` is called on the event loop as
        layers download (never reordered; under heavy load a report may be skipped).

        Raises:
            NotFoundError: the registry does not know the repository or tag.
            NetworkError: the registry cannot be reached (bounded by connect/read timeouts).
            ImageError: access denied, a blob that does not match its digest, a bad image.
        """
    def get(self, name: str) -> asyncio.Future[ImageDetail]:
        """The pulled image ``name`` (normalised as a pull would: ``alpine`` is Docker Hub's
        ``library/alpine:latest``), with every version pulled under its repository.
        ``NotFoundError`` when it was not pulled; ``UnsupportedError`` on a REST runtime (not
        served by ``boxlite serve`` yet)."""
    def list(self) -> asyncio.Future[list[ImageInfo]]: ...
    def remove(self, name: str) -> asyncio.Future[None]:
        """Forgets an image in the local store; its layers go at the next ``prune()``."""
    def usage(self) -> asyncio.Future[Any]:
        """REST-only: fails with ``UnsupportedError``."""
    def create_alias(self, name: str, alias: str, digest: str) -> asyncio.Future[Any]:
        """REST-only: fails with ``UnsupportedError``."""
    def delete_alias(self, name: str, alias: str) -> asyncio.Future[None]:
        """REST-only: fails with ``UnsupportedError``."""
    @property
    def registries(self) -> None:
        """REST-only: raises ``UnsupportedError`` at once."""
    def prune(self) -> asyncio.Future[int]:
        """Deletes unpacked layers and downloaded blobs that no pulled image and no box uses;
        resolves to how many layers went."""

@final
class OutboundNetworkSpec:
    """Immutable (``NetworkSpec.outbound`` gives a copy: a change made through it would be lost,
    and with it the policy meant); replace it whole."""

    @property
    def mode(self) -> str:
        """``"enabled"`` or ``"disabled"``."""
    @property
    def allow_net(self) -> list[str]: ...
    def __new__(cls, mode: str = ..., allow_net: Sequence[str] = ...) -> Self:
        """``mode`` defaults to ``"enabled"``."""

@final
class InboundNetworkSpec:
    """Immutable, as ``OutboundNetworkSpec``."""

    @property
    def mode(self) -> str: ...
    @property
    def allow_net(self) -> list[str]: ...
    def __new__(cls, mode: str = ..., allow_net: Sequence[str] = ...) -> Self:
        """``mode`` defaults to ``"disabled"``."""

@final
class NetworkSpec:
    """A box's network. Outbound traffic is on by default (as ``network=None``), to what
    ``allow_net`` allows (IPs, CIDRs, host names, ``*.suffix``, ``host:port``; empty: anywhere
    but the host itself and link-local addresses); ``NetworkSpec(mode="disabled")`` leaves
    loopback only. Inbound traffic is refused by ``create()`` with ``UnsupportedError``. ``mode``
    and ``allow_net`` are the legacy spelling of ``outbound``. docs/network.md has the policy."""

    outbound: OutboundNetworkSpec
    inbound: InboundNetworkSpec
    mode: str
    allow_net: list[str]
    def __new__(
        cls,
        outbound: OutboundNetworkSpec | None = None,
        inbound: InboundNetworkSpec | None = None,
        mode: str | None = None,
        allow_net: Sequence[str] | None = None,
    ) -> Self: ...

@final
class ContainerCapabilities:
    """Capabilities added to or dropped from the default set (Docker's, less MKNOD). ``add``
    takes only those that cannot act on the host from a box: NET_ADMIN, NET_BROADCAST,
    IPC_LOCK, IPC_OWNER, SYS_NICE, SYS_RESOURCE, LEASE, WAKE_ALARM. ``drop`` takes any, or ALL.
    The lists are held by this object: ``capabilities.add.append("NET_ADMIN")`` changes it."""

    def __new__(cls, add: Sequence[str] = ..., drop: Sequence[str] = ...) -> Self: ...
    @property
    def add(self) -> list[str]: ...
    @add.setter
    def add(self, value: Sequence[str]) -> None: ...
    @property
    def drop(self) -> list[str]: ...
    @drop.setter
    def drop(self, value: Sequence[str]) -> None: ...

@final
class SecurityOptions:
    """``max_processes`` is the box's pids limit; ``max_open_files``, ``max_file_size`` (bytes),
    ``max_cpu_time`` (seconds) and ``max_memory`` (bytes of address space) are resource limits
    of every box process. The jail, seccomp and closing of inherited descriptors are always on,
    whatever ``jailer_enabled``, ``seccomp_enabled`` and ``close_fds`` say."""

    jailer_enabled: bool
    seccomp_enabled: bool
    max_open_files: int | None
    max_file_size: int | None
    max_processes: int | None
    max_memory: int | None
    max_cpu_time: int | None
    network_enabled: bool
    close_fds: bool
    def __new__(
        cls,
        jailer_enabled: bool = False,
        seccomp_enabled: bool = False,
        max_open_files: int | None = None,
        max_file_size: int | None = None,
        max_processes: int | None = None,
        max_memory: int | None = None,
        max_cpu_time: int | None = None,
        network_enabled: bool = True,
        close_fds: bool = True,
    ) -> Self: ...
    @staticmethod
    def development() -> SecurityOptions: ...
    @staticmethod
    def standard() -> SecurityOptions: ...
    @staticmethod
    def maximum() -> SecurityOptions: ...

@final
class HealthCheckOptions:
    """While the box runs, the runtime asks its init whether it answers every ``interval``
    seconds, within ``timeout``; ``BoxInfo.health_status`` reports it. Failures in the first
    ``start_period`` seconds of a run do not count; ``retries`` in a row make it unhealthy.
    ``interval`` and ``timeout`` of 0, or ``retries=0``, are an ``InvalidArgumentError`` at
    ``create()``."""

    interval: int
    timeout: int
    retries: int
    start_period: int
    def __new__(cls, interval: int = 30, timeout: int = 10, retries: int = 3, start_period: int = 60) -> Self: ...

@final
class AdvancedBoxOptions:
    security: SecurityOptions | None
    health_check: HealthCheckOptions | None
    @property
    def capabilities(self) -> ContainerCapabilities:
        """Held by these options: an empty ``ContainerCapabilities`` unless one is given, changed
        in place (``advanced.capabilities.add.append("NET_ADMIN")``); setting ``None`` sets an
        empty one."""
    @capabilities.setter
    def capabilities(self, value: ContainerCapabilities | None) -> None: ...
    def __new__(
        cls,
        security: SecurityOptions | None = None,
        health_check: HealthCheckOptions | None = None,
        capabilities: ContainerCapabilities | None = None,
    ) -> Self: ...

@final
class Secret:
    """A value the box's HTTPS requests to ``hosts`` carry without the box holding it. The box
    sees ``BOXLITE_SECRET_<NAME>`` (the name upper-cased, other characters ``_``) set to the
    placeholder; the runtime ends the box's TLS to those hosts (names, or ``*.suffix`` for one
    label below it) with a certificate of the box's own authority, which the box trusts, and
    sends each request on to the real host, verified against the host's trust store, with the
    value in place of the placeholder in the request target and header values (Basic
    credentials decoded for it). Bodies are sent as written. Never shown by ``repr()``; kept on
    the host readable by the runtime's user alone. Bad secrets (no hosts, line breaks, an empty
    placeholder, a box without a network) are an ``InvalidArgumentError`` at ``create()``."""

    name: str
    value: str
    hosts: list[str]
    placeholder: str | None
    def __new__(cls, name: str, value: str, hosts: Sequence[str] = ..., placeholder: str | None = None) -> Self: ...
    def get_placeholder(self) -> str:
        """``placeholder``, or ``<BOXLITE_SECRET:{name}>``."""

_VolumeEntry: TypeAlias = tuple[str, str] | tuple[str, str, bool] | dict[str, Any]
_PortEntry: TypeAlias = tuple[int | None, int] | tuple[int | None, int, str] | tuple[int | None, int, str, str] | dict[str, Any]

@final
class BoxOptions:
    """How to make one box. None means the runtime's default. ``tty=True`` runs the box's main
    command on a terminal (``attach()`` gets it). Options this engine cannot honour
    (``auto_stop``, ``auto_resume=True``) are refused by ``create()`` with
    ``UnsupportedError``."""

    image: str | None
    rootfs_path: str | None
    cpus: int | None
    memory_mib: int | None
    disk_size_gb: int | None
    """The size (GiB, 1 to 16384) of a filesystem of the box's own that holds what it writes:
    past it the box's writes fail with ENOSPC, and the host is unaffected. Sparse: it takes on
    the host what is written. ``None``: the box writes to the home's filesystem, unbounded.
    Needs root and ``mkfs.ext4``."""
    working_dir: str | None
    env: list[tuple[str, str]]
    network: NetworkSpec | None
    auto_remove: bool | None
    auto_stop: int | None
    auto_delete: int | None
    auto_resume: bool | None
    detach: bool | None
    entrypoint: list[str] | None
    cmd: list[str] | None
    user: str | None
    tty: bool | None
    advanced: AdvancedBoxOptions | None
    secrets: list[Secret]
    @property
    def volumes(self) -> list[tuple[str, str, bool]]:
        """``(host, guest, read_only)`` for each volume. Set with tuples ``(host, guest[,
        read_only])`` or dicts with ``host``/``host_path``, ``guest``/``guest_path`` and
        ``read_only``/``ro``. A read-only volume stays read-only inside the box. In a box with a
        user namespace, box root reads and writes a writable volume as the host user who owns
        its directory (as its own unprivileged host id if host root owns it)."""
    @volumes.setter
    def volumes(self, value: Sequence[_VolumeEntry] | None) -> None: ...
    @property
    def ports(self) -> list[tuple[int | None, int, str, str | None]]:
        """``(host_port, guest_port, protocol, host_ip)`` tuples (``protocol`` "tcp" or "udp"; a
        ``host_port`` of 0 or None lets the host pick), published while the box runs."""
    @ports.setter
    def ports(self, value: Sequence[_PortEntry] | None) -> None: ...
    def __new__(
        cls,
        image: str | None = None,
        rootfs_path: str | None = None,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_size_gb: int | None = None,
        working_dir: str | None = None,
        env: Sequence[tuple[str, str]] = ...,
        volumes: Sequence[_VolumeEntry] | None = None,
        network: NetworkSpec | None = None,
        ports: Sequence[_PortEntry] | None = None,
        auto_remove: bool | None = None,
        auto_stop: int | None = None,
        auto_delete: int | None = None,
        auto_resume: bool | None = None,
        detach: bool | None = None,
        entrypoint: Sequence[str] | None = None,
        cmd: Sequence[str] | None = None,
        user: str | None = None,
        tty: bool | None = None,
        advanced: AdvancedBoxOptions | None = None,
        secrets: Sequence[Secret] = ...,
    ) -> Self: ...

@final
class CopyOptions:
    """How ``copy_in``/``copy_out`` treat directories, existing files and symlinks."""

    recursive: bool
    overwrite: bool
    follow_symlinks: bool
    def __new__(cls, recursive: bool = True, overwrite: bool = True, follow_symlinks: bool = False) -> Self: ...

@final
class PublishedPort:
    """A TCP port of the box, published on the host while the box runs."""

    @property
    def guest_port(self) -> int: ...
    @property
    def host_ip(self) -> str: ...
    @property
    def host_port(self) -> int: ...
    @property
    def protocol(self) -> str: ...

@final
class OutboundNetworkInfo:
    @property
    def mode(self) -> str: ...
    @property
    def allow_net(self) -> list[str]: ...

@final
class InboundNetworkInfo:
    @property
    def mode(self) -> str: ...
    @property
    def allow_net(self) -> list[str]: ...

@final
class NetworkInfo:
    """A box's network: outbound ``enabled`` with its ``allow_net``, or ``disabled`` (loopback
    only); inbound is ``disabled`` (not built yet)."""

    @property
    def outbound(self) -> OutboundNetworkInfo: ...
    @property
    def inbound(self) -> InboundNetworkInfo: ...
    @property
    def mode(self) -> str: ...
    @property
    def allow_net(self) -> list[str]: ...
    @property
    def published_ports(self) -> list[PublishedPort] | None: ...

@final
class HealthState:
    """none (no health check, or the box does not run), starting, healthy or unhealthy."""

    @property
    def value(self) -> str: ...
    @staticmethod
    def none() -> HealthState: ...
    @staticmethod
    def starting() -> HealthState: ...
    @staticmethod
    def healthy() -> HealthState: ...
    @staticmethod
    def unhealthy() -> HealthState: ...
    def is_none(self) -> bool: ...
    def is_starting(self) -> bool: ...
    def is_healthy(self) -> bool: ...
    def is_unhealthy(self) -> bool: ...

@final
class HealthStatus:
    @property
    def state(self) -> HealthState: ...
    @property
    def failures(self) -> int: ...
    @property
    def last_check(self) -> str | None: ...

@final
class BoxStateInfo:
    @property
    def status(self) -> str:
        """configured, running, stopping, stopped, failed or unknown."""
    @property
    def running(self) -> bool: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def exit_code(self) -> int | None:
        """How the main process of the last run ended (-N after signal N); None before it ends
        or for a box without one."""

@final
class BoxInfo:
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def state(self) -> BoxStateInfo: ...
    @property
    def created_at(self) -> str:
        """RFC 3339 with nanoseconds."""
    @property
    def started_at(self) -> str | None: ...
    @property
    def image(self) -> str: ...
    @property
    def cpus(self) -> int: ...
    @property
    def memory_mib(self) -> int: ...
    @property
    def auto_stop(self) -> int: ...
    @property
    def auto_delete(self) -> int:
        """1 when the box is deleted on stop, 0 when it is kept."""
    @property
    def auto_resume(self) -> bool: ...
    @property
    def detach(self) -> bool: ...
    @property
    def network(self) -> NetworkInfo | None: ...
    @property
    def health_status(self) -> HealthStatus: ...
    @property
    def last_activity_at(self) -> str | None: ...
    @property
    def node(self) -> str | None:
        """The Ray node the box lives on (``Boxlite.ray``); None for a local runtime's box."""

@final
class RuntimeMetrics:
    @property
    def boxes_created_total(self) -> int: ...
    @property
    def boxes_failed_total(self) -> int: ...
    @property
    def num_running_boxes(self) -> int: ...
    @property
    def total_commands_executed(self) -> int: ...
    @property
    def total_exec_errors(self) -> int: ...

@final
class BoxMetrics:
    @property
    def commands_executed_total(self) -> int: ...
    @property
    def exec_errors_total(self) -> int: ...
    @property
    def bytes_sent_total(self) -> int:
        """Bytes written to the stdin of the box's processes."""
    @property
    def bytes_received_total(self) -> int:
        """Bytes read from the output of the box's processes."""
    @property
    def disk_bytes(self) -> int | None:
        """Host bytes the box's own filesystem takes (``disk_size_gb``); None without one."""
    @property
    def total_create_duration_ms(self) -> int | None: ...
    @property
    def guest_boot_duration_ms(self) -> int | None:
        """How long the last start took (the box's init up, its main process started)."""
    @property
    def memory_bytes(self) -> int | None:
        """Memory the box's processes use now (from its cgroup), while it runs."""
    @property
    def cpu_time_ns(self) -> int | None:
        """CPU time the box's processes used."""
    @property
    def cpu_percent(self) -> float | None:
        """CPU time over wall time since the box started, in percent of one CPU."""
    @property
    def processes(self) -> int | None:
        """Processes in the box now."""
    @property
    def network_bytes_sent(self) -> int | None:
        """Bytes the box sent over the connections the runtime made for it, since it last
        started; the counters below likewise (connections opened, and those refused or failed).
        None for a box with loopback only."""
    @property
    def network_bytes_received(self) -> int | None: ...
    @property
    def network_tcp_connections(self) -> int | None: ...
    @property
    def network_tcp_errors(self) -> int | None: ...
    @property
    def stage_image_prepare_ms(self) -> int | None:
        """The image made ready for the box (at create)."""
    @property
    def stage_box_spawn_ms(self) -> int | None:
        """The box's init started."""
    @property
    def stage_filesystem_setup_ms(self) -> int | None:
        """A stage of the VM engine: always None."""
    @property
    def stage_guest_rootfs_ms(self) -> int | None:
        """A stage of the VM engine: always None."""
    @property
    def stage_box_config_ms(self) -> int | None:
        """A stage of the VM engine: always None."""
    @property
    def stage_container_init_ms(self) -> int | None:
        """A stage of the VM engine: always None."""

@final
class ExitStatus:
    """How a process ended."""

    @property
    def exit_code(self) -> int:
        """The exit code, or -N when signal N ended the process."""
    @property
    def signal(self) -> int | None: ...
    @property
    def error_message(self) -> str | None:
        """Set when the outcome did not come from the process itself."""
    @property
    def timed_out(self) -> bool: ...
    @property
    def forced(self) -> bool:
        """``close()`` ended the execution before its exit was known."""
    @property
    def success(self) -> bool: ...

@final
class ExecStream:
    """One output stream: ``async for chunk in stream`` yields str (text mode) or bytes."""

    def __aiter__(self) -> Self: ...
    def __anext__(self) -> asyncio.Future[Any]: ...

@final
class ExecStdin:
    def send_input(self, data: bytes) -> asyncio.Future[None]:
        """Writes data; resolves once the process's pipe took all of it.

        Raises:
            InvalidStateError: stdin was closed.
        """
    def close(self) -> asyncio.Future[None]:
        """Closes stdin: the process reads end of file once earlier writes are in.
        Idempotent. On a terminal (``tty=True``) a program reads end of file from the
        terminal, not from the writer's end: send its end-of-file character, ``b"\\x04"``
        (twice after an unfinished line), as a user types ^D; closing only stops writes."""
    def is_closed(self) -> asyncio.Future[bool]: ...

@final
class Execution:
    """A process running in a box."""

    def id(self) -> str: ...
    def stdout(self, *, text: bool = True) -> ExecStream:
        """Takes stdout (once): str chunks, or bytes with ``text=False``.

        Raises:
            RuntimeError: the stream was already taken.
        """
    def stderr(self, *, text: bool = True) -> ExecStream: ...
    def stdin(self) -> ExecStdin: ...
    def wait(self) -> asyncio.Future[ExitStatus]:
        """Resolves once the process ended and all its output was delivered. Repeatable.

        A process it left running in the background (``cmd &``) that keeps its stdout or
        stderr open does not hold this back: 0.1 s after the exit, what that stream holds is
        delivered and the stream ends; what the process left behind writes later is read and
        dropped, so it runs on undisturbed. While it is pending, a stream nobody took that
        holds 8 MiB drops its oldest output (a warning is logged) instead of making the
        process wait, so it always returns.
        """
    def kill(self) -> asyncio.Future[None]:
        """SIGKILL to the process and its whole process group."""
    def signal(self, signal: int) -> asyncio.Future[None]:
        """Sends a signal.

        Raises:
            InvalidArgumentError: at the call, when signal is not within 1..64.
        """
    def resize_tty(self, rows: int, cols: int) -> asyncio.Future[None]:
        """Sets the terminal size of a ``tty=True`` execution.

        Raises:
            InvalidArgumentError: at the call, for sizes below 1.
            InvalidStateError: the execution has no terminal.
        """
    def close(self) -> None:
        """Ends the execution now: kills its process group unless it already exited."""
    def aclose(self) -> asyncio.Future[None]: ...
    def __aenter__(self) -> asyncio.Future[Self]: ...
    def __aexit__(self, *_exc: object) -> asyncio.Future[bool]: ...

@final
class SnapshotOptions:
    """A placeholder of BoxLite's API; it has no fields."""

    def __new__(cls) -> Self: ...

@final
class ExportOptions:
    """A placeholder of BoxLite's API; it has no fields."""

    def __new__(cls) -> Self: ...

@final
class CloneOptions:
    """A placeholder of BoxLite's API; it has no fields."""

    def __new__(cls) -> Self: ...

@final
class SnapshotInfo:
    """One snapshot of a box."""

    @property
    def id(self) -> str: ...
    @property
    def box_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> int:
        """Seconds since the epoch."""
    @property
    def container_disk_bytes(self) -> int:
        """What the box's layer held: file contents, or its disk's size."""
    @property
    def size_bytes(self) -> int:
        """What the snapshot takes on the host."""

@final
class SnapshotHandle:
    """``Box.snapshot``: point-in-time copies of the box's files (its writable layer), kept with
    the box and removed with it."""

    def create(self, *, name: str, options: SnapshotOptions | None = None) -> asyncio.Future[SnapshotInfo]:
        """Takes a snapshot of the box's files (a running box is frozen for the copy); resolves to
        its `SnapshotInfo`."""
    def list(self) -> asyncio.Future[list[SnapshotInfo]]:
        """The box's snapshots, newest first."""
    def get(self, name: str) -> asyncio.Future[SnapshotInfo | None]:
        """The snapshot named `name`, or None."""
    def remove(self, name: str) -> asyncio.Future[None]: ...
    def restore(self, name: str) -> asyncio.Future[None]:
        """Brings the box's files back to the snapshot; the box must be stopped."""

@final
class NetworkHandle:
    """``Box.network``: tunnels to the box's ports, and its outbound policy, changed while it
    runs (a REST runtime's box: tunnels only). An inbound allow-list is not built yet:
    ``update_inbound`` fails with ``UnsupportedError``. A port outside 1..65535 is a
    ``ValueError`` at once."""

    def tunnel(self, port: int) -> asyncio.Future[BoxTunnel]:
        """A tunnel to ``port`` of the running box (``InvalidStateError`` if it is not
        running), for this run of the box."""
    def revoke_tunnel(self, port: int) -> asyncio.Future[None]:
        """Ends this runtime's forwarders of the box's tunnels to ``port``."""
    def update_inbound(self, spec: InboundNetworkSpec) -> asyncio.Future[None]: ...
    def update_outbound(self, spec: OutboundNetworkSpec) -> asyncio.Future[None]:
        """The box's outbound traffic from now on: what ``spec.allow_net`` allows, or nothing
        when ``spec.mode`` is ``"disabled"``; a running box takes it at once, and every later
        start too. A bad entry is an ``InvalidArgumentError`` and changes nothing. A box made
        without a network gets one only when it starts again (``InvalidStateError`` while it
        runs)."""

@final
class SocketAddress:
    """Where a tunnel's forwarder listens. ``str()`` is ``tcp://host:port`` or ``unix://path``."""

    @staticmethod
    def tcp(host: str = "127.0.0.1", port: int = 0) -> SocketAddress:
        """``host`` must be a numeric IP (else ``ValueError``); port 0 lets the host pick."""
    @staticmethod
    def unix(path: str | os.PathLike[str]) -> SocketAddress:
        """A unix socket at an absolute path (else ``ValueError``); it must not exist."""
    @property
    def kind(self) -> str:
        """``"tcp"`` or ``"unix"``."""
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def path(self) -> str | None: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class BoxTunnel:
    """A way to one port of a running box, used once: ``connect()`` or ``forward()`` (a second
    use is an ``InvalidStateError``). Connections are made inside the box to its loopback; a
    REST runtime's go through its server, and its forwarders listen on this machine."""

    def uri(self) -> str | None:
        """Where the REST server says the port is reached; None for a local box."""
    def connect(self) -> asyncio.Future[BoxConnection]:
        """One connection to the port (``NetworkError`` if nothing listens there)."""
    def forward(self, listen: SocketAddress) -> asyncio.Future[TunnelForwarder]:
        """A listener at ``listen`` whose every connection reaches the port; it ends with the
        box's run, ``close()`` or ``revoke_tunnel``."""

@final
class BoxConnection:
    def read(self, max_bytes: int) -> asyncio.Future[bytes]:
        """Up to ``max_bytes`` (at least 1, else ``ValueError``); ``b""`` at the end."""
    def write(self, data: bytes) -> asyncio.Future[int]:
        """Writes all of ``data``; resolves to its length."""
    def shutdown_write(self) -> asyncio.Future[None]:
        """Ends this side's stream; reading goes on."""
    def close(self) -> asyncio.Future[None]: ...

@final
class TunnelForwarder:
    def local_addr(self) -> SocketAddress:
        """Where it listens (with the port the host picked, for port 0)."""
    def wait(self) -> asyncio.Future[None]:
        """Resolves once it has ended."""
    def close(self) -> asyncio.Future[None]:
        """Ends it (again: nothing)."""

@final
class VolumeHandle:
    """``Boxlite.volumes``: named volumes, kept in the runtime's home and mounted into boxes as
    ``BoxOptions(volumes=[{"source": "volume://name", "guest": "/data"}])`` (or the tuple form).
    They outlive the boxes; boxes of different id ranges share one, each seeing its files as
    its own. Names: 1 to 64 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or
    digit (else ``InvalidArgumentError``)."""

    def create(self, name: str, *, size_gb: int | None = None) -> asyncio.Future[VolumeInfo]:
        """Makes an empty volume. ``AlreadyExistsError`` if one has the name; ``size_gb`` is
        refused (``UnsupportedError``): a volume lives on the home's filesystem."""
    def list(self) -> asyncio.Future[list[VolumeInfo]]:
        """Every volume, by name."""
    def get(self, name: str) -> asyncio.Future[VolumeInfo]:
        """``NotFoundError`` if there is none."""
    def remove(self, name: str) -> asyncio.Future[None]:
        """Deletes the volume and its files; ``InvalidStateError`` while a box mounts it."""

@final
class VolumeInfo:
    """One named volume."""

    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> str:
        """RFC 3339."""
    @property
    def path(self) -> str:
        """Where its files are on the host."""

@final
class Box:
    """A handle to one box."""

    @property
    def id(self) -> str:
        """12 Base62 characters."""
    @property
    def name(self) -> str | None: ...
    def info(self) -> asyncio.Future[BoxInfo]:
        """The box's state and options. Works on a spent handle, as BoxLite's, and then on a
        removed box too (one removed on stop, say): its last state, ``stopped``;
        ``Boxlite.get_info`` says whether the box still exists."""
    def start(self) -> asyncio.Future[None]:
        """Boots the box and runs its main process, if it has one; a running box is left as it
        is. A box whose user chose ``cmd``/``entrypoint`` is only ever started by this call:
        exec, copies and attach refuse to start it as a side effect.

        Raises:
            StoppedError: this handle was stopped; use ``Boxlite.get()`` for a new one.
        """
    def stop(self) -> asyncio.Future[None]:
        """Stops the box (SIGTERM, SIGKILL after 10 s) and spends this handle: its ``start``,
        ``exec``, ``attach``, ``metrics`` and copies raise ``StoppedError`` (``Boxlite.get``
        gives a new one), as BoxLite's; ``info``, snapshots, ``clone_box`` and ``export``,
        which a stopped box serves, still work."""
    def exec(
        self,
        command: str,
        args: Sequence[str] | None = None,
        env: Sequence[tuple[str, str]] | None = None,
        tty: bool = False,
        user: str | None = None,
        timeout_secs: float | None = None,
        cwd: str | None = None,
    ) -> asyncio.Future[Execution]:
        """Starts a command; boots the box first if needed.

        Raises:
            TypeError: at the call, for arguments of the wrong type.
            InvalidArgumentError: at the call, for a timeout that is not positive.
            NotFoundError: the program does not exist in the box.
            ExecutionError: the user or working directory is not usable.
        """
    def attach(self, execution_id: str | None = None, stdin: bool = True) -> asyncio.Future[Execution]:
        """Follows the box's main process (its ``cmd``/``entrypoint``, or the image's default
        command): its output from the start of the current run, then as it comes, and its exit.
        Before ``start()``, it follows the coming run from its beginning (what is sent to its
        stdin meanwhile is delivered once it runs); on a box whose main process has ended, it
        replays the last run's output and exit code. With ``stdin``, the first attach takes the
        process's stdin (closing it gives end of file); later attaches get none. A main process
        on a terminal (``tty=True``) gives every attach its terminal: ``resize_tty`` on any, input
        from each made with ``stdin``, and its output (both streams) on ``stdout``.

        Raises:
            InvalidStateError: the box has no main process.
            UnsupportedError: ``execution_id`` is given (reattaching by id is REST-only).
        """
    def copy_in(self, host_path: str | os.PathLike[str], container_dest: str, copy_options: CopyOptions | None = None) -> asyncio.Future[None]:
        """Copies a host file or directory into the box (``docker cp`` conventions: a file to
        an existing directory or a path ending in ``/`` lands inside it; ``src/.`` copies a
        directory's contents). Paths are resolved inside the box's root: a symlink in the box
        never leads outside it. Boots the box if needed. A file that cannot be copied whole (no
        room left, say) is not left half-written; a directory's copy stops at the first such
        failure, keeping what it copied before.

        Raises:
            NotFoundError: the source, or the destination's parent, does not exist.
            InvalidArgumentError: a destination under /proc, /sys or /dev, or a special file.
            AlreadyExistsError: the target exists and ``overwrite`` is off.
            ConfigError: a directory with ``recursive`` off, or an empty path.
        """
    def copy_out(self, container_src: str, host_dest: str | os.PathLike[str], copy_options: CopyOptions | None = None) -> asyncio.Future[None]:
        """Copies a file or directory out of the box; the conventions of ``copy_in``."""
    def metrics(self) -> asyncio.Future[BoxMetrics]: ...
    @property
    def network(self) -> NetworkHandle: ...
    @property
    def snapshot(self) -> SnapshotHandle: ...
    def export(self, *, dest: str | os.PathLike[str], options: ExportOptions | None = None) -> asyncio.Future[str]:
        """Resolves to the path of a new ``.boxlite`` archive of the box: ``dest``, or
        ``dest/<name or id>.boxlite`` when ``dest`` is a directory (an existing file is an
        ``AlreadyExistsError``). It carries the box's options, files and image layers; a
        running box is frozen while its files are copied. A cancelled export deletes it."""
    def clone_box(self, *, name: str | None = None, options: CloneOptions | None = None) -> asyncio.Future[Box]:
        """Resolves to a new, stopped box with this box's options and a copy of its files (a
        running box is frozen for the copy); its snapshots stay here."""
    def __aenter__(self) -> asyncio.Future[Self]: ...
    def __aexit__(self, *_exc: object) -> asyncio.Future[None]: ...

@final
class Boxlite:
    """A runtime on one home directory (one runtime per home directory at a time)."""

    def __new__(cls, options: Options) -> Self: ...
    @staticmethod
    def default() -> Boxlite: ...
    @staticmethod
    def init_default(options: Options) -> None: ...
    def create(self, options: BoxOptions, name: str | None = None) -> asyncio.Future[Box]:
        """Creates a box in state ``configured``. A cancelled create leaves no box.

        Raises:
            InvalidArgumentError: the name is taken or not a name (1 to 247 bytes, not ``.``
                or ``..``, no ``/`` or control characters, not like a box id), or options
                conflict.
            NotFoundError, ImageError: the image cannot be used.
            StoppedError: the runtime was shut down.
            RuntimeClosedError: at the call, once the runtime is closed.
        """
    def get_or_create(self, options: BoxOptions, name: str | None = None) -> asyncio.Future[tuple[Box, bool]]:
        """The box named ``name`` with ``False``, or a new one with ``True``. A box found must
        have the capabilities ``options`` give (``InvalidArgumentError`` naming both sets); its
        other options are not looked at. Concurrent calls with one name make one box: the
        others wait for it and resolve to it with ``False``. A REST runtime's server does not
        say a box's capabilities, so it finds by name alone."""
    def get(self, id_or_name: str) -> asyncio.Future[Box | None]: ...
    def get_info(self, id_or_name: str) -> asyncio.Future[BoxInfo | None]: ...
    def list_info(self, _state: object = None) -> asyncio.Future[list[BoxInfo]]:
        """Every box, newest first."""
    def remove(self, id_or_name: str, force: bool = False) -> asyncio.Future[None]: ...
    @property
    def images(self) -> ImageHandle: ...
    @property
    def volumes(self) -> VolumeHandle:
        """Named volumes, kept in this runtime's home (``VolumeHandle``)."""
    def import_box(self, archive_path: str | os.PathLike[str], name: str | None = None, *, untrusted: bool = False) -> asyncio.Future[Box]:
        """Resolves to a new, stopped box made from a ``.boxlite`` archive (no name unless
        given), every member verified as it is read: a changed or damaged archive is an
        ``InvalidArgumentError`` and leaves nothing. ``untrusted=True`` also refuses volumes
        of host paths (named volumes are this home's, and must exist), published ports, capabilities beyond the default set and disk images
        (``UnsupportedError``)."""
    @staticmethod
    def ray(options: RayOptions) -> RayBoxlite:
        """A runtime whose boxes live on the nodes of a Ray cluster (``boxlite.ray``; needs
        ``pip install boxlite[ray]``)."""
    @staticmethod
    def rest(options: BoxliteRestOptions) -> Boxlite:
        """A runtime whose boxes live on the REST server ``options`` names (``boxlite serve``):
        the same API, its errors the same typed exceptions. Contacts nobody until the first call;
        ``TypeError`` for anything but a ``BoxliteRestOptions``. What the server cannot do
        (host directory volumes, published ports, changing a box's outbound policy, managing
        volumes, image details) raises ``UnsupportedError``; archives are imported as
        untrusted."""
    def metrics(self) -> asyncio.Future[RuntimeMetrics]: ...
    def shutdown(self, timeout: int | None = None) -> asyncio.Future[None]:
        """Stops every box that is not detached, then refuses new boxes. Idempotent."""
    def close(self) -> None:
        """Closes now: pending awaitables fail with RuntimeClosedError, boxes that are not
        detached are killed, later calls fail at once, and the home directory is free for
        another runtime. Idempotent."""
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> Literal[False]: ...

@final
class Server:
    """A running ``boxlite serve`` (see ``serve``); it stops when this object goes away."""
    @property
    def address(self) -> str:
        """Where it listens: ``"127.0.0.1:8100"``."""
    def stop(self) -> None:
        """Begins a graceful stop: requests in flight finish, attached clients are closed with
        "going away", executions the server kept are killed. Returns at once."""
    def wait(self, timeout: float | None = None) -> bool:
        """Waits up to ``timeout`` seconds (``None``: until it ends); true once the server has
        ended. A server that failed raises its error here."""

def serve(
    options: Options,
    host: str = "127.0.0.1",
    port: int = 8100,
    *,
    api_key: str | None = None,
    reconnect_grace: float = 300.0,
    retention: float = 300.0,
    upload_limit: int = 1099511627776,
) -> Server:
    """Serves BoxLite's REST API on ``host:port`` (port 0 picks a free one) over a runtime on
    ``options``' home, on threads of its own, until ``Server.stop()`` (``boxlite serve``). With
    ``api_key``, requests need ``Authorization: Bearer <api_key>``. Executions nobody attached to
    for ``reconnect_grace`` seconds are killed; ended ones are kept ``retention`` seconds for their
    status; uploads above ``upload_limit`` bytes are refused. Raises when the home is in use or
    the address cannot be bound."""

def _keep_detached_networks(home_dir: str | os.PathLike[str]) -> None:
    """Serves the networks of ``home_dir``'s detached boxes until a runtime opens the home or
    none with a network runs (``python -m boxlite._keeper``). Blocks."""
