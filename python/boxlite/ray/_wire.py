"""What crosses between a driver and a node's host actor: options, results and errors as plain,
picklable values (the native classes do not pickle).

- An option object (``BoxOptions``, ``CopyOptions``, and what they hold) travels as its class
  name and constructor arguments, read back through its getters: every constructor argument of
  these classes has a getter of the same name.
- A result (``BoxInfo``, ``BoxMetrics``, ``ExitStatus``, …) travels as a :class:`Record`: its
  class name and its public attributes, nested records included.
- A boxlite error travels as its class name and message, and is raised again as the same class
  on the driver, so ``except NotFoundError`` works across the cluster as it does locally.
"""

from __future__ import annotations

import inspect
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from .. import _native, errors

#: What ``boxlite.ray`` re-exports; the rest is the plumbing of its actors.
__all__ = ["Record"]

#: The native classes an option may be made of.
_OPTION_CLASSES = (
    "AdvancedBoxOptions",
    "BoxOptions",
    "CloneOptions",
    "ContainerCapabilities",
    "CopyOptions",
    "HealthCheckOptions",
    "ImageRegistry",
    "InboundNetworkSpec",
    "NetworkSpec",
    "OutboundNetworkSpec",
    "Secret",
    "SecurityOptions",
)


class Option:
    """An option object on its way: rebuilt with :func:`build` where it is used."""

    __slots__ = ("arguments", "kind")

    def __init__(self, kind: str, arguments: dict[str, Any]) -> None:
        self.kind = kind
        self.arguments = arguments

    def __reduce__(self) -> tuple[Any, ...]:
        return (Option, (self.kind, self.arguments))


def pack(value: Any) -> Any:
    """An option value (native option objects, lists and tuples of them) as plain data."""
    kind = type(value).__name__
    if kind in _OPTION_CLASSES and type(value) is getattr(_native, kind):
        names = inspect.signature(type(value)).parameters
        return Option(kind, {name: pack(getattr(value, name)) for name in names})
    if isinstance(value, (list, tuple)):
        return type(value)(pack(item) for item in value)
    return value


def build(value: Any) -> Any:
    """The inverse of :func:`pack`: the native option objects again."""
    if isinstance(value, Option):
        return getattr(_native, value.kind)(**{name: build(item) for name, item in value.arguments.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(build(item) for item in value)
    return value


class Record:
    """A result of the runtime as plain data: the attributes of the native object it was made
    from (``info.state.status``, ``status.exit_code``), named after that object's class."""

    def __init__(self, kind: str, fields: dict[str, Any]) -> None:
        self.__dict__["_kind"] = kind
        self.__dict__["_fields"] = fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(f"{self.__dict__['_kind']} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._kind} is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Record, (self._kind, self._fields))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self._kind, self._fields) == (other._kind, other._fields)

    def __hash__(self) -> int:
        return hash(self._kind)

    def __dir__(self) -> list[str]:
        return sorted(self._fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._fields.items())
        return f"{self._kind}({fields})"


def record(value: Any, **extra: Any) -> Any:
    """A native result (and the results inside it) as a :class:`Record`; plain values as they
    are. ``extra`` adds fields (a box's ``node``)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(record(item) for item in value)
    if type(value).__module__ not in ("boxlite._native", "builtins"):
        return value
    fields = {}
    for name in dir(type(value)):
        if name.startswith("_"):
            continue
        attribute = getattr(value, name)
        if callable(attribute):
            continue
        fields[name] = record(attribute)
    return Record(type(value).__name__, {**fields, **extra})


def error_of(error: BaseException) -> tuple[str, str] | None:
    """A boxlite error as ``(class name, message)``; None for anything else."""
    if isinstance(error, errors.BoxliteError) and type(error) is getattr(errors, type(error).__name__, None):
        return (type(error).__name__, str(error))
    return None


def unwrap(answer: tuple[Any, ...]) -> Any:
    """The value of a host's answer, or the error it carries raised."""
    if answer[0] == "ok":
        return answer[1]
    raise_error(answer[1], answer[2])


def node_lost(node_id: str, error: BaseException) -> errors.NodeLostError:
    """The error of a call on a node whose host is gone (``error``: what Ray raised)."""
    return errors.NodeLostError(f"the host of node {node_id} is gone (the node died, or its host actor was killed), and the boxes of that node with it: {type(error).__name__}")


def raise_error(kind: str, message: str) -> None:
    """Raises the boxlite error :func:`error_of` described."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.BoxliteError) and cls is not errors.ExecError:
        raise cls(message)
    raise errors.EngineError(f"{kind}: {message}")


def tar_directory(directory: Path, archive: Path) -> None:
    """A directory's tree as a tar, for the way between a driver and a node."""
    with tarfile.open(archive, "w") as tar:
        tar.add(directory, arcname=".")


def extract(archive: Path, destination: Path) -> None:
    """Unpacks a tar of :func:`tar_directory` into ``destination``, refusing members that would
    land outside it (absolute paths, ``..``, links leading out) and device files: what a box
    sends out is not trusted."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(destination, filter="data")
            return
        # Python before 3.11.4 (Debian 12's 3.11.2) has no extraction filters.
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            target = PurePosixPath(os.path.normpath(path.parent / member.linkname)) if member.issym() else PurePosixPath(member.linkname)
            if path.is_absolute() or ".." in path.parts or member.isdev() or (
                (member.issym() or member.islnk()) and (target.is_absolute() or ".." in target.parts)
            ):
                raise errors.InvalidArgumentError(f"refusing to unpack {member.name!r}: it would land outside {destination}")
        tar.extractall(destination)
