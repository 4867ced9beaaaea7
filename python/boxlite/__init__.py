"""boxlite: isolated, persistent Linux boxes for untrusted code, driven from asyncio.

Quick start::

    import asyncio, boxlite

    async def main() -> None:
        with boxlite.Boxlite(boxlite.Options(home_dir="bl-home")) as rt:
            box = await rt.create(boxlite.BoxOptions())  # the built-in host:// image
            run = await box.exec("sh", ["-c", "echo hello from $(hostname)"])
            async for chunk in run.stdout():
                print(chunk, end="")
            print((await run.wait()).exit_code)

    asyncio.run(main())
"""

from __future__ import annotations

import logging
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
    raise ImportError(
        "boxlite runs boxes on Linux on x86_64 only (namespaces, overlayfs and a seccomp filter "
        f"of x86_64's system calls); this is {platform.system()} {platform.machine()}"
    )

from ._native import (
    HOST_IMAGE,
    AdvancedBoxOptions,
    Box,
    BoxInfo,
    BoxMetrics,
    BoxOptions,
    BoxStateInfo,
    Boxlite,
    CloneOptions,
    ContainerCapabilities,
    CopyOptions,
    ExecStdin,
    ExecStream,
    Execution,
    ExitStatus,
    ExportOptions,
    HealthCheckOptions,
    HealthState,
    HealthStatus,
    ImageHandle,
    ImageAliasEvent,
    ImageDetail,
    ImageInfo,
    ImagePullResult,
    ImageVersion,
    ImageRegistry,
    InboundNetworkInfo,
    InboundNetworkSpec,
    NetworkHandle,
    NetworkInfo,
    NetworkSpec,
    Options,
    OutboundNetworkInfo,
    OutboundNetworkSpec,
    PublishedPort,
    RuntimeMetrics,
    Secret,
    SecurityOptions,
    SnapshotHandle,
    SnapshotInfo,
    SnapshotOptions,
    SocketAddress,
    TunnelForwarder,
    VolumeHandle,
    VolumeInfo,
)
from .errors import (
    AlreadyExistsError,
    BoxliteError,
    ConfigError,
    DatabaseError,
    EngineError,
    ExecError,
    ExecutionError,
    ImageError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    MetadataError,
    NetworkError,
    NodeLostError,
    NotFoundError,
    ParseError,
    ResourceExhaustedError,
    RuntimeClosedError,
    SessionReapedError,
    StorageError,
    StoppedError,
    TimeoutError,
    UnsupportedError,
    UpstreamUnavailableError,
)
from .browserbox import BrowserBox, BrowserBoxOptions
from .codebox import CodeBox
from .computerbox import ComputerBox
from .exec import ExecResult
from .interactivebox import InteractiveBox
from .ray_options import RayOptions
from .rest import AccessToken, ApiKeyCredential, BoxliteRestOptions, Credential
from .simplebox import SimpleBox
from .skillbox import SkillBox
from .sync_api import (
    SyncBox,
    SyncBoxlite,
    SyncCodeBox,
    SyncExecStderr,
    SyncExecStdout,
    SyncExecution,
    SyncImageHandle,
    SyncNetworkHandle,
    SyncSimpleBox,
    SyncSkillBox,
    SyncTunnelForwarder,
)

# BoxLite's names for the stream classes.
ExecStdout = ExecStream
ExecStderr = ExecStream

# The runtime logs to logger "boxlite"; like any library, it prints nothing unless the
# application configures logging.
logging.getLogger("boxlite").addHandler(logging.NullHandler())

try:
    __version__ = version("boxlite")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+dev"

__all__ = [
    "HOST_IMAGE",
    "AccessToken",
    "AdvancedBoxOptions",
    "AlreadyExistsError",
    "ApiKeyCredential",
    "Box",
    "BoxInfo",
    "BoxMetrics",
    "BoxOptions",
    "BoxStateInfo",
    "Boxlite",
    "BoxliteError",
    "BoxliteRestOptions",
    "BrowserBox",
    "BrowserBoxOptions",
    "CloneOptions",
    "CodeBox",
    "ComputerBox",
    "ConfigError",
    "ContainerCapabilities",
    "CopyOptions",
    "Credential",
    "DatabaseError",
    "EngineError",
    "ExecError",
    "ExecResult",
    "ExecStderr",
    "ExecStdin",
    "ExecStdout",
    "ExecStream",
    "Execution",
    "ExecutionError",
    "ExitStatus",
    "ExportOptions",
    "HealthCheckOptions",
    "HealthState",
    "HealthStatus",
    "ImageError",
    "ImageHandle",
    "ImageAliasEvent",
    "ImageDetail",
    "ImageInfo",
    "ImagePullResult",
    "ImageVersion",
    "ImageRegistry",
    "InteractiveBox",
    "InboundNetworkInfo",
    "InboundNetworkSpec",
    "InternalError",
    "InvalidArgumentError",
    "InvalidStateError",
    "MetadataError",
    "NetworkError",
    "NetworkHandle",
    "NetworkInfo",
    "NetworkSpec",
    "NodeLostError",
    "NotFoundError",
    "Options",
    "OutboundNetworkInfo",
    "OutboundNetworkSpec",
    "ParseError",
    "PublishedPort",
    "RayOptions",
    "ResourceExhaustedError",
    "RuntimeClosedError",
    "RuntimeMetrics",
    "Secret",
    "SecurityOptions",
    "SessionReapedError",
    "SimpleBox",
    "SkillBox",
    "SnapshotHandle",
    "SnapshotInfo",
    "SnapshotOptions",
    "SocketAddress",
    "StoppedError",
    "StorageError",
    "SyncBox",
    "SyncBoxlite",
    "SyncCodeBox",
    "SyncExecStderr",
    "SyncExecStdout",
    "SyncExecution",
    "SyncImageHandle",
    "SyncNetworkHandle",
    "SyncSimpleBox",
    "SyncSkillBox",
    "SyncTunnelForwarder",
    "TimeoutError",
    "TunnelForwarder",
    "UnsupportedError",
    "UpstreamUnavailableError",
    "VolumeHandle",
    "VolumeInfo",
]
