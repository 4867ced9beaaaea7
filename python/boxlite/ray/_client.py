"""The driver's side of a boxlite cluster: a runtime object with the local runtime's API whose
boxes live on the cluster's nodes, each box on one node, driven through that node's host actor
(``_host``).

Rules (each holds for every call below):

1. A call the caller cancels cancels its actor task (``ray.cancel``): the host's local runtime
   then releases what the call was making, as it does for a local caller. A ``create`` whose box
   was made before the cancellation arrived has that box removed.
2. ``close()`` fails every pending call with ``RuntimeClosedError`` and cancels its actor task;
   later calls fail at once. Boxes stay on their nodes (the host actors outlive this driver);
   ``shutdown()`` is what ends them, on every node.
3. A host that is gone (its node died, or it was killed) fails the calls on its boxes with
   ``NodeLostError``; the boxes of other nodes carry on.
4. An execution is the exec's answer, then its output and its exit as events, from its host.
   Each output stream has a window of ``OUTPUT_WINDOW`` bytes on its way or unread here,
   granted back as the reader takes it (``_Output``): a reader that falls behind makes the
   host stop reading the process's pipe, as a slow local reader does.
5. Executions and creates travel over one connection from the driver to each node's host
   (``_channel``), made on first use of that node; where it cannot be made, or
   ``direct_executions`` is off, an execution is one streaming call (``BoxHost.run``) and the
   grants and release actor calls, and a create an actor call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import errors
from .._native import BoxOptions, CloneOptions, CopyOptions, SnapshotOptions
from ..ray_options import RayOptions
from . import _host, _wire
from ._channel import Channel
from ._execution import ChannelLink, RayExecution, RayLink, cancel
from ._wire import Record, node_lost, unwrap

#: The resource Ray gives the head node alone.
HEAD_RESOURCE = "node:__internal_head__"

__all__ = ["RayBox", "RayBoxlite", "RaySnapshots"]


class RayBoxlite:
    """A runtime whose boxes live on the nodes of a Ray cluster, with the API of ``Boxlite``."""

    def __init__(self, options: RayOptions) -> None:
        if not isinstance(options, RayOptions):
            raise TypeError(f"Boxlite.ray() takes a boxlite.RayOptions, not {type(options).__name__}")
        self._options = options
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            ray.init(address=options.address, namespace=options.namespace, log_to_driver=False, include_dashboard=False)
        self._hosts: dict[str, Any] = {}
        #: The connection to each node's host (rule 5), once made (None: it could not be).
        self._channels: dict[str, asyncio.Future[Channel | None]] = {}
        #: This driver's Ray job: a host ends its executions once the job is over.
        self._driver = ray.get_runtime_context().get_job_id()
        self._registry: Any = None
        self._pending: dict[asyncio.Future[Any], Any] = {}
        self._followers: set[asyncio.Future[None]] = set()
        self._closed = False
        self._shut_down = False

    def __repr__(self) -> str:
        return f"RayBoxlite(namespace={self._options.namespace!r}, open={not self._closed!r})"

    # --- calls ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise errors.RuntimeClosedError("the runtime was closed")

    async def _await(self, ref: Any, node_id: str | None = None, orphan: Any = None) -> Any:
        """Awaits an actor call under rules 1 to 3. ``orphan``: what to do with the result of
        a call that was cancelled once it arrives anyway."""
        self._check_open()
        future: asyncio.Future[Any] = asyncio.ensure_future(ref)
        self._pending[future] = ref
        try:
            return await future
        except asyncio.CancelledError:
            cancel(ref)
            if orphan is not None:
                _spawn(orphan(ref))
            if self._closed:
                raise errors.RuntimeClosedError("the runtime was closed while the call was pending") from None
            raise
        except ray.exceptions.RayActorError as error:
            raise node_lost(node_id or "head (where the name registry lives)", error) from None
        finally:
            self._pending.pop(future, None)

    async def _call(self, node_id: str, method: str, *args: Any, orphan: Any = None) -> Any:
        host = self._host(node_id)
        return unwrap(await self._await(getattr(host, method).remote(*args), node_id, orphan))

    def _follow(self, follower: Awaitable[None]) -> None:
        """Runs an execution's follower (``_follow``) until its events end, or this runtime
        closes."""
        task = asyncio.ensure_future(follower)
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)

    def _stream(self, node_id: str, method: str, *args: Any) -> AsyncIterator[Any]:
        """The chunks of a host's streaming call (a copy out of a box), which the host sends
        at most ``CHUNKS_AHEAD`` ahead of this reader (Ray's generator backpressure)."""
        self._check_open()
        generator = getattr(self._host(node_id), method).remote(*args)

        async def chunks() -> AsyncIterator[Any]:
            try:
                async for ref in generator:
                    yield unwrap(await self._await(ref, node_id))
            except ray.exceptions.RayActorError as error:
                raise node_lost(node_id, error) from None

        return chunks()

    async def _channel(self, node_id: str) -> Channel | None:
        """The connection to a node's host for executions and creates (rule 5); None: use Ray
        calls."""
        self._check_open()
        if not self._options.direct_executions:
            return None
        opening = self._channels.get(node_id)
        if opening is None or _lost(opening):
            opening = asyncio.ensure_future(self._connect(node_id))
            self._channels[node_id] = opening
        if opening.done():  # every exec but a node's first: no waiting to set up
            return opening.result()
        return await asyncio.shield(opening)

    async def _connect(self, node_id: str) -> Channel | None:
        address = await self._await(self._host(node_id).channel.remote(), node_id)
        try:
            return await Channel.open(node_id, address)
        except (OSError, asyncio.TimeoutError) as error:
            logging.getLogger("boxlite").info("executions on node %s go through Ray calls: its host at %s:%s cannot be reached (%s)", node_id, address[0], address[1], error)
            return None

    def _close_channels(self) -> None:
        for opening in self._channels.values():
            if opening.done() and not _lost(opening) and (channel := opening.result()) is not None:
                channel.close()
        self._channels.clear()

    # --- nodes and their hosts -----------------------------------------------------------

    def _host(self, node_id: str) -> Any:
        host = self._hosts.get(node_id)
        if host is None:
            options = self._options
            host = (
                ray.remote(_host.BoxHost)
                .options(
                    name=_host.host_name(node_id),
                    namespace=options.namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_concurrency=10_000,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                )
                .remote(node_id, options.home_dir, _wire.pack(options.image_registries), options.namespace)
            )
            self._hosts[node_id] = host
        return host

    def nodes(self, labels: Mapping[str, str] | None = None, resource: str | None = None) -> list[str]:
        """The ids of the alive nodes that may host boxes (those with ``host_resource``, if the
        options name one), narrowed to those with every label of ``labels`` and with the Ray
        custom resource ``resource``."""
        resources = [wanted for wanted in (self._options.host_resource, resource) if wanted is not None]
        listed: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        return sorted(
            node["NodeID"]
            for node in listed
            if node["Alive"]
            and all(node["Resources"].get(wanted, 0) > 0 for wanted in resources)
            and all(node.get("Labels", {}).get(key) == value for key, value in (labels or {}).items())
        )

    async def _each_node(self, method: str, *args: Any) -> list[tuple[str, Any]]:
        """Calls every hosting node; a node that died meanwhile is left out."""
        nodes = self.nodes()
        answers = await asyncio.gather(*(self._call(node, method, *args) for node in nodes), return_exceptions=True)
        found = []
        for node, answer in zip(nodes, answers):
            if isinstance(answer, errors.NodeLostError):
                continue
            if isinstance(answer, BaseException):
                raise answer
            found.append((node, answer))
        return found

    async def _least_loaded(self, labels: Mapping[str, str] | None = None, resource: str | None = None) -> str:
        nodes = self.nodes(labels, resource)
        if not nodes:
            wanted = [f"resource {name!r}" for name in (self._options.host_resource, resource) if name is not None]
            wanted += [f"label {key}={value!r}" for key, value in (labels or {}).items()]
            raise errors.ResourceExhaustedError(f"no alive node{' with ' + ' and '.join(wanted) if wanted else ''} to host a box")
        loads = await asyncio.gather(*(self._await(self._host(node).load.remote(), node) for node in nodes), return_exceptions=True)
        candidates = [(load, node) for node, load in zip(nodes, loads) if not isinstance(load, BaseException)]
        if not candidates:
            # A close meanwhile failed the calls: it, not the hosts, is why none answered.
            self._check_open()
            raise errors.ResourceExhaustedError("no node's host answered")
        return min(candidates)[1]

    def _names(self) -> Any:
        """The name registry: on the head node, which lives as long as the cluster."""
        if self._registry is None:
            listed: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
            head = next(node["NodeID"] for node in listed if node["Alive"] and HEAD_RESOURCE in node["Resources"])
            self._registry = (
                ray.remote(_host.NameRegistry)
                .options(
                    name=_host.REGISTRY_NAME,
                    namespace=self._options.namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False),
                )
                .remote()
            )
        return self._registry

    async def _locate(self, id_or_name: str) -> tuple[str, Record] | None:
        """The node of a box and its info."""
        holder = await self._await(self._names().lookup.remote(id_or_name))
        if holder is not None:
            info = await self._call(holder, "get_info", id_or_name)
            if info is not None:
                return holder, info
        for node, info in await self._each_node("get_info", id_or_name):
            if info is not None:
                return node, info
        return None

    # --- the runtime's API ---------------------------------------------------------------

    async def create(
        self, options: BoxOptions, name: str | None = None, *, node: str | None = None, labels: Mapping[str, str] | None = None, resource: str | None = None
    ) -> RayBox:
        """Creates a box on ``node``, or on the node running the fewest boxes among those with
        every label of ``labels`` and the Ray custom resource ``resource`` (all nodes that host
        boxes by default). A cancelled create leaves no box."""
        if not isinstance(options, BoxOptions):
            raise TypeError(f"create() takes a boxlite.BoxOptions, not {type(options).__name__}")
        if node is not None and (labels or resource is not None):
            raise errors.InvalidArgumentError("create() takes a node, or labels and a resource to choose one by, not both")
        if self._shut_down:
            raise errors.StoppedError("the runtime has been shut down")
        node_id = node or await self._least_loaded(labels, resource)
        if name is not None:
            self._names()  # there for the host, which reserves the name (``NameRegistry``)

        async def remove_orphan(ref: Any) -> None:
            with contextlib.suppress(Exception):
                answer = await ref
                if answer[0] == "ok":
                    await self._host(node_id).remove.remote(answer[1].id, True)

        channel = await self._channel(node_id)
        if channel is not None:
            info = unwrap(await channel.create(uuid.uuid4().hex, _wire.pack(options), name))
        else:
            info = await self._call(node_id, "create", _wire.pack(options), name, orphan=remove_orphan)
        return RayBox(self, node_id, info.id, info.name)

    async def get_or_create(self, options: BoxOptions, name: str | None = None) -> tuple[RayBox, bool]:
        """A box of that name being made meanwhile (its name reserved in the cluster) is waited
        for: nothing says when it is done, so this looks again every 20 ms."""
        while True:
            if name is not None:
                found = await self.get(name)
                if found is not None:
                    return found, False
            try:
                return await self.create(options, name), True
            except errors.InvalidArgumentError as error:
                if name is None or "already exists" not in str(error):
                    raise
            await asyncio.sleep(0.02)

    async def get(self, id_or_name: str) -> RayBox | None:
        located = await self._locate(id_or_name)
        if located is None:
            return None
        node_id, info = located
        return RayBox(self, node_id, info.id, info.name)

    async def get_info(self, id_or_name: str) -> Record | None:
        located = await self._locate(id_or_name)
        return None if located is None else located[1]

    async def list_info(self) -> list[Record]:
        """Every box on every node, newest first."""
        infos = [info for _, listed in await self._each_node("list_info") for info in listed]
        return sorted(infos, key=lambda info: info.created_at, reverse=True)

    async def remove(self, id_or_name: str, force: bool = False) -> None:
        located = await self._locate(id_or_name)
        if located is None:
            raise errors.NotFoundError(f"box {id_or_name} not found")
        node_id, info = located
        await self._call(node_id, "remove", info.id, force)
        if info.name is not None:
            self._names().release.remote(info.name, node_id)

    async def metrics(self) -> Record:
        """The runtime metrics of every node, added up."""
        totals: dict[str, int] = {}
        for _, metrics in await self._each_node("metrics"):
            for field in dir(metrics):
                totals[field] = totals.get(field, 0) + getattr(metrics, field)
        return Record("RuntimeMetrics", totals)

    async def shutdown(self, timeout: int | None = None) -> None:
        """On every node: stops the boxes that are not detached and closes its runtime, then
        ends the node's host; then the name registry. Later creates fail."""
        self._check_open()
        self._shut_down = True
        nodes = self.nodes()
        await asyncio.gather(*(self._call(node, "shutdown", timeout) for node in nodes), return_exceptions=True)
        for node in nodes:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(_host.host_name(node), namespace=self._options.namespace))
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(_host.REGISTRY_NAME, namespace=self._options.namespace))
        self._close_channels()
        self._hosts.clear()
        self._registry = None

    def close(self) -> None:
        """Ends this driver's use of the runtime (rule 2): pending calls fail with
        ``RuntimeClosedError`` and their actor tasks are cancelled; later calls fail at once.
        The boxes stay on their nodes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for future, ref in list(self._pending.items()):
            cancel(ref)
            future.get_loop().call_soon_threadsafe(future.cancel)
        for follower in list(self._followers):
            follower.get_loop().call_soon_threadsafe(follower.cancel)
        self._close_channels()
        if self._connected_here:
            ray.shutdown()

    def __enter__(self) -> RayBoxlite:
        return self

    def __exit__(self, *_exc: object) -> Literal[False]:
        self.close()
        return False


def _lost(opening: asyncio.Future[Channel | None]) -> bool:
    """A connection that failed to open, or was lost since: the next exec makes a new one."""
    if not opening.done():
        return False
    if opening.cancelled() or opening.exception() is not None:
        return True
    channel = opening.result()
    return channel is not None and channel.lost is not None


def _spawn(work: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


#: Background work a driver started and nobody awaits (kept referenced until done).
_BACKGROUND: set[asyncio.Future[Any]] = set()


class RayBox:
    """A handle to one box of the cluster, with the API of ``Box``."""

    def __init__(self, runtime: RayBoxlite, node_id: str, box_id: str, name: str | None) -> None:
        self._runtime = runtime
        self._node = node_id
        self._id = box_id
        self._name = name
        self._stopped = False

    def __repr__(self) -> str:
        return f"RayBox(id={self._id!r}, node={self._node!r})"

    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def node(self) -> str:
        """The id of the node the box lives on."""
        return self._node

    def _check_usable(self) -> None:
        """A handle spent by ``stop()`` refuses what would run the box, as ``Box`` does; its
        info, snapshots, clones and a second ``stop()`` still work."""
        if self._stopped:
            raise errors.StoppedError(f"this handle of box {self._id} was stopped; use get() for a new one")

    async def _call(self, method: str, *args: Any) -> Any:
        return await self._runtime._call(self._node, method, *args)

    async def info(self) -> Record:
        return await self._call("box_info", self._id)  # type: ignore[no-any-return]

    async def start(self) -> None:
        self._check_usable()
        await self._call("start", self._id)

    async def stop(self) -> None:
        """Stops the box and spends this handle. Idempotent."""
        if self._stopped:
            return
        await self._call("stop", self._id)
        self._stopped = True

    async def metrics(self) -> Record:
        self._check_usable()
        return await self._call("box_metrics", self._id)  # type: ignore[no-any-return]

    @property
    def snapshot(self) -> RaySnapshots:
        """The box's snapshots, kept on its node."""
        return RaySnapshots(self)

    async def clone_box(self, *, name: str | None = None, options: CloneOptions | None = None) -> RayBox:
        """A stopped box on this box's node with its options and a copy of its files, as
        ``Box.clone_box``; ``name`` is unique in the whole cluster, as a create's."""
        if options is not None and not isinstance(options, CloneOptions):
            raise TypeError(f"clone_box() takes a boxlite.CloneOptions, not {type(options).__name__}")
        if name is not None:
            self._runtime._names()  # there for the host, which reserves the name
        info = await self._call("clone_box", self._id, name)
        return RayBox(self._runtime, self._node, info.id, info.name)

    async def exec(
        self,
        command: str,
        args: Sequence[str] | None = None,
        env: Sequence[tuple[str, str]] | None = None,
        tty: bool = False,
        user: str | None = None,
        timeout_secs: float | None = None,
        cwd: str | None = None,
    ) -> RayExecution:
        arguments = None if args is None else list(args)
        environment = None if env is None else [tuple(pair) for pair in env]
        self._check_usable()
        key = uuid.uuid4().hex
        request = (self._id, command, arguments, environment, tty, user, timeout_secs, cwd)
        channel = await self._runtime._channel(self._node)
        if channel is not None:
            execution_id = unwrap(await channel.start(key, request))
            return RayExecution(self._runtime, self._node, key, execution_id, ChannelLink(channel, key))
        self._runtime._check_open()
        events = self._runtime._host(self._node).run.remote(self._runtime._driver, key, *request)
        link = RayLink(self._runtime, self._node, key, events)
        try:
            execution_id = unwrap(await self._runtime._await(await anext(events), self._node))
        except ray.exceptions.RayActorError as error:
            raise node_lost(self._node, error) from None
        except asyncio.CancelledError:
            # Whichever reaches the host first ends the execution: the call's cancellation, or
            # the release (which ends it as soon as it starts, if it has not yet).
            cancel(events)
            link.release(kill=True)
            raise
        return RayExecution(self._runtime, self._node, key, execution_id, link)

    async def copy_in(self, host_path: str | os.PathLike[str], container_dest: str, copy_options: CopyOptions | None = None) -> None:
        """Sends the host file or directory to the box's node in chunks, then copies it in
        there (``copy_in``'s conventions: ``src/.`` copies a directory's contents)."""
        self._check_usable()
        source = Path(host_path)
        contents_only = os.fspath(host_path).endswith("/.")
        if not source.exists():
            raise errors.NotFoundError(f"{source} does not exist")
        upload = await self._call("upload_begin")
        host = self._runtime._host(self._node)
        try:
            with contextlib.ExitStack() as stack:
                if source.is_dir():
                    archive = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "upload.tar"
                    await asyncio.to_thread(_wire.tar_directory, source, archive)
                    payload = archive
                else:
                    payload = source
                with payload.open("rb") as file:
                    while chunk := await asyncio.to_thread(file.read, _host.TRANSFER_CHUNK):
                        await self._call("upload_chunk", upload, chunk)
            name = source.resolve().name
            await self._call("upload_end", upload, self._id, name, source.is_dir(), contents_only, container_dest, _wire.pack(copy_options or CopyOptions()))
        except BaseException:
            host.upload_drop.remote(upload)
            raise

    async def copy_out(self, container_src: str, host_dest: str | os.PathLike[str], copy_options: CopyOptions | None = None) -> None:
        """Copies out of the box on its node, then streams it here in chunks (``copy_out``'s
        conventions)."""
        self._check_usable()
        options = copy_options or CopyOptions()
        chunks = self._runtime._stream(self._node, "download", self._id, container_src, _wire.pack(options))
        is_tar = await anext(chunks)
        destination = Path(host_dest)
        if (destination.is_dir() or os.fspath(host_dest).endswith("/")) and not container_src.endswith("/."):
            destination = destination / PurePosixPath(container_src.rstrip("/")).name
        if destination.exists() and not is_tar and not options.overwrite:
            raise errors.AlreadyExistsError(f"{destination} exists and overwrite is off")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".boxlite-copy-") as staging:
            received = Path(staging) / "received"
            with received.open("wb") as file:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
            if is_tar:
                destination.mkdir(exist_ok=True)
                await asyncio.to_thread(_wire.extract, received, destination)
            else:
                received.replace(destination)

    async def __aenter__(self) -> RayBox:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


class RaySnapshots:
    """A cluster box's snapshots, with the API of ``SnapshotHandle`` (what it gives are
    ``Record``s)."""

    def __init__(self, box: RayBox) -> None:
        self._box = box

    async def create(self, *, name: str, options: SnapshotOptions | None = None) -> Record:
        del options  # an empty placeholder, as locally
        return await self._box._call("snapshot", self._box.id, "create", name)  # type: ignore[no-any-return]

    async def list(self) -> list[Record]:
        return await self._box._call("snapshot", self._box.id, "list")  # type: ignore[no-any-return]

    async def get(self, name: str) -> Record | None:
        return await self._box._call("snapshot", self._box.id, "get", name)  # type: ignore[no-any-return]

    async def remove(self, name: str) -> None:
        await self._box._call("snapshot", self._box.id, "remove", name)

    async def restore(self, name: str) -> None:
        await self._box._call("snapshot", self._box.id, "restore", name)
