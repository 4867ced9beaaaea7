"""The exception classes of boxlite, declared once.

Every failure that comes from the runtime is an instance of both :class:`BoxliteError` and
the builtin :class:`RuntimeError`, and carries a ``code`` naming its kind, so code written for
BoxLite keeps catching what it caught.
"""

from __future__ import annotations

import builtins

__all__ = [
    "AlreadyExistsError",
    "BoxliteError",
    "ConfigError",
    "DatabaseError",
    "EngineError",
    "ExecError",
    "ExecutionError",
    "ImageError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidStateError",
    "MetadataError",
    "NetworkError",
    "NodeLostError",
    "NotFoundError",
    "ParseError",
    "ResourceExhaustedError",
    "RuntimeClosedError",
    "SessionReapedError",
    "StorageError",
    "StoppedError",
    "TimeoutError",
    "UnsupportedError",
    "UpstreamUnavailableError",
]


class BoxliteError(Exception):
    """Base class of every boxlite error."""


class ExecError(BoxliteError):
    """A command a helper ran in a box failed."""

    def __init__(self, command: str, exit_code: int, stderr: str) -> None:
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"Command '{command}' failed with exit code {exit_code}: {stderr}")

    def __reduce__(self) -> tuple[type[ExecError], tuple[str, int, str]]:
        # Rebuilt from its own arguments (a multiprocessing worker's error crosses by pickle).
        return (type(self), (self.command, self.exit_code, self.stderr))


class TimeoutError(BoxliteError, builtins.TimeoutError):  # noqa: A001 - BoxLite's name
    """An operation ran out of time. Also a builtin ``TimeoutError``."""


class ParseError(BoxliteError):
    """Output of a box could not be parsed."""


class _NativeError(BoxliteError, RuntimeError):
    """A failure reported by the runtime."""

    code: str = "internal"


class InvalidArgumentError(_NativeError):
    code = "invalid_argument"


class UnsupportedError(_NativeError):
    code = "unsupported"


class NotFoundError(_NativeError):
    code = "not_found"


class SessionReapedError(_NativeError):
    code = "session_reaped"


class AlreadyExistsError(_NativeError):
    code = "already_exists"


class InvalidStateError(_NativeError):
    code = "invalid_state"


class RuntimeClosedError(InvalidStateError):
    """The runtime was closed; nothing more can run on it."""

    code = "runtime_closed"


class StoppedError(_NativeError):
    code = "stopped"


class ImageError(_NativeError):
    code = "image_pull_failed"


class ExecutionError(_NativeError):
    code = "execution_failed"


class ResourceExhaustedError(_NativeError):
    code = "resource_exhausted"


class NetworkError(_NativeError):
    code = "network_unavailable"


class UpstreamUnavailableError(_NativeError):
    code = "upstream_unavailable"


class EngineError(_NativeError):
    code = "engine_unavailable"


class NodeLostError(EngineError):
    """The cluster node that hosted the box is gone, and the box with it (``Boxlite.ray``)."""

    code = "node_lost"


class StorageError(_NativeError):
    code = "storage_error"


class DatabaseError(_NativeError):
    code = "database_error"


class MetadataError(_NativeError):
    code = "metadata_error"


class ConfigError(_NativeError):
    code = "config_error"


class InternalError(_NativeError):
    code = "internal"
