"""The sync API: boxlite from plain threads and scripts, with no event loop of your own.

    from boxlite.sync_api import SyncBoxlite
    with SyncBoxlite(boxlite.Options(home_dir="bl-home")) as rt:
        box = rt.create(boxlite.BoxOptions())
        run = box.exec("echo", ["hi"])
        print("".join(run.stdout()), run.wait().exit_code)

Every call runs the async API on an event loop thread owned by the ``SyncBoxlite`` and waits
for it, so calls from several threads at once are fine. It cannot be used from inside a running
asyncio loop (use the async API there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from .._native import Box, BoxInfo, Boxlite, BoxMetrics, BoxOptions, CopyOptions, ImageDetail, ImageHandle, ImageInfo, ImagePullResult, Options, RuntimeMetrics
from ..codebox import CodeBox
from ..exec import ExecResult
from ..rest import BoxliteRestOptions
from ..ray_options import RayOptions
from ..simplebox import SimpleBox
from ..skillbox import SkillBox
from ._execution import SyncExecStderr, SyncExecStdin, SyncExecStdout, SyncExecStream, SyncExecution
from ._network import SyncBoxConnection, SyncBoxTunnel, SyncNetworkHandle, SyncTunnelForwarder
from ._runner import LoopThread

__all__ = [
    "SyncBox",
    "SyncBoxlite",
    "SyncCodeBox",
    "SyncExecStderr",
    "SyncExecStdin",
    "SyncExecStdout",
    "SyncExecStream",
    "SyncExecution",
    "SyncImageHandle",
    "SyncNetworkHandle",
    "SyncSimpleBox",
    "SyncSkillBox",
    "SyncBoxConnection",
    "SyncBoxTunnel",
    "SyncTunnelForwarder",
]


class _SyncNetworkOwner:
    """The network calls of a sync box, run on its loop thread against ``_async_network()``."""

    _runner: LoopThread

    def _async_network(self) -> Any:
        raise NotImplementedError

    @property
    def network(self) -> SyncNetworkHandle:
        return SyncNetworkHandle(self)

    def tunnel(self, port: int) -> Any:
        return self.network.tunnel(port)

    def _create_tunnel(self, port: int) -> SyncBoxTunnel:
        return SyncBoxTunnel(self._runner, self._runner.run(lambda: self._async_network().tunnel(port)))

    def _network_call(self, name: str, argument: Any) -> None:
        self._runner.run(lambda: getattr(self._async_network(), name)(argument))


class SyncBox(_SyncNetworkOwner):
    def __init__(self, runner: LoopThread, box: Box) -> None:
        self._runner = runner
        self._box = box

    @property
    def id(self) -> str:
        return self._box.id

    @property
    def name(self) -> str | None:
        return self._box.name

    def start(self) -> None:
        self._runner.run(self._box.start)

    def stop(self) -> None:
        self._runner.run(self._box.stop)

    def exec(
        self,
        cmd: str,
        args: Sequence[str] | None = None,
        env: Sequence[tuple[str, str]] | None = None,
        tty: bool = False,
        user: str | None = None,
        timeout_secs: float | None = None,
        cwd: str | None = None,
    ) -> SyncExecution:
        execution = self._runner.run(lambda: self._box.exec(cmd, args, env=env, tty=tty, user=user, timeout_secs=timeout_secs, cwd=cwd))
        return SyncExecution(self._runner, execution)

    def metrics(self) -> BoxMetrics:
        return self._runner.run(self._box.metrics)

    def attach(self, stdin: bool = True) -> SyncExecution:
        """Follows the box's main process; see ``Box.attach``."""
        return SyncExecution(self._runner, self._runner.run(lambda: self._box.attach(None, stdin)))

    def _async_network(self) -> Any:
        return self._box.network

    def copy_in(self, host_path: str | Path, container_dest: str, copy_options: CopyOptions | None = None) -> None:
        self._runner.run(lambda: self._box.copy_in(host_path, container_dest, copy_options))

    def copy_out(self, container_src: str, host_dest: str | Path, copy_options: CopyOptions | None = None) -> None:
        self._runner.run(lambda: self._box.copy_out(container_src, host_dest, copy_options))

    def __enter__(self) -> SyncBox:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()


class SyncImageHandle:
    """``SyncBoxlite.images``: the image store, synchronously."""

    def __init__(self, runner: LoopThread, images: ImageHandle) -> None:
        self._runner = runner
        self._images = images

    def pull(self, reference: str, progress: Callable[[str, int, int], object] | None = None) -> ImagePullResult:
        return self._runner.run(lambda: self._images.pull(reference, progress))

    def get(self, name: str) -> ImageDetail:
        return self._runner.run(lambda: self._images.get(name))

    def list(self) -> list[ImageInfo]:
        return self._runner.run(self._images.list)

    def remove(self, name: str) -> None:
        self._runner.run(lambda: self._images.remove(name))

    def prune(self) -> int:
        return self._runner.run(self._images.prune)

    def usage(self) -> Any:
        return self._runner.run(self._images.usage)

    def create_alias(self, name: str, alias: str, digest: str) -> Any:
        return self._runner.run(lambda: self._images.create_alias(name, alias, digest))

    def delete_alias(self, name: str, alias: str) -> None:
        self._runner.run(lambda: self._images.delete_alias(name, alias))

    @property
    def registries(self) -> None:
        """REST-only: raises ``UnsupportedError`` at once, as ``ImageHandle.registries``."""
        return self._images.registries


class SyncBoxlite:
    """A runtime for synchronous code; owns an event loop thread."""

    def __init__(self, options: Options, *, _runtime: Boxlite | None = None, _owns_runtime: bool = False) -> None:
        self._runner = LoopThread()
        self._owns_runtime = _runtime is None or _owns_runtime
        self._boxlite = _runtime if _runtime is not None else Boxlite(options)

    @staticmethod
    def default() -> SyncBoxlite:
        """Wraps the process-wide ``Boxlite.default()``; closing this object leaves that runtime
        open for the rest of the process."""
        return SyncBoxlite(Options(), _runtime=Boxlite.default())

    @staticmethod
    def init_default(options: Options) -> None:
        """Configures the process-wide runtime behind ``default()``; see ``Boxlite.init_default``."""
        Boxlite.init_default(options)

    @staticmethod
    def ray(options: RayOptions) -> SyncBoxlite:
        """A runtime on a Ray cluster; see ``Boxlite.ray``. Its runtime, boxes and executions
        have the local ones' API (their results are ``boxlite.ray.Record``s)."""
        return SyncBoxlite(Options(), _runtime=cast(Any, Boxlite.ray(options)), _owns_runtime=True)

    @staticmethod
    def rest(options: BoxliteRestOptions) -> SyncBoxlite:
        """A runtime whose boxes live on a REST server; see ``Boxlite.rest``."""
        return SyncBoxlite(Options(), _runtime=Boxlite.rest(options), _owns_runtime=True)

    @property
    def runtime(self) -> Boxlite:
        return self._boxlite

    @property
    def images(self) -> SyncImageHandle:
        return SyncImageHandle(self._runner, self._boxlite.images)

    def start(self) -> SyncBoxlite:
        return self

    def create(self, options: BoxOptions, name: str | None = None, **placement: Any) -> SyncBox:
        """``placement``: where a Ray runtime puts the box (``node``, ``labels``, ``resource``;
        see ``RayBoxlite.create``)."""
        return SyncBox(self._runner, self._runner.run(lambda: self._boxlite.create(options, name, **placement)))

    def get_or_create(self, options: BoxOptions, name: str | None = None) -> tuple[SyncBox, bool]:
        box, created = self._runner.run(lambda: self._boxlite.get_or_create(options, name))
        return SyncBox(self._runner, box), created

    def get(self, id_or_name: str) -> SyncBox | None:
        box = self._runner.run(lambda: self._boxlite.get(id_or_name))
        return None if box is None else SyncBox(self._runner, box)

    def get_info(self, id_or_name: str) -> BoxInfo | None:
        return self._runner.run(lambda: self._boxlite.get_info(id_or_name))

    def list_info(self) -> list[BoxInfo]:
        return self._runner.run(self._boxlite.list_info)

    def remove(self, id_or_name: str, force: bool = False) -> None:
        self._runner.run(lambda: self._boxlite.remove(id_or_name, force))

    def metrics(self) -> RuntimeMetrics:
        return self._runner.run(self._boxlite.metrics)

    def shutdown(self, timeout: int | None = None) -> None:
        self._runner.run(lambda: self._boxlite.shutdown(timeout))

    def close(self) -> None:
        """Stops the loop thread and closes the runtime this object opened (boxes that are not
        detached are killed). Idempotent."""
        self._runner.close()
        if self._owns_runtime:
            self._boxlite.close()

    def stop(self) -> None:
        self.close()

    def __enter__(self) -> SyncBoxlite:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncBoxlite({self._boxlite!r})"


class SyncSimpleBox(_SyncNetworkOwner):
    """``with SyncSimpleBox(image) as box: box.exec("echo", "hi")``."""

    _async_class: type[SimpleBox] = SimpleBox

    def __init__(self, image: str | None = None, runtime: SyncBoxlite | None = None, **kwargs: Any) -> None:
        if image is not None:
            kwargs["image"] = image
        self._owned = runtime is None
        self._stopped = False
        self._runtime = runtime if runtime is not None else SyncBoxlite.default()
        self._runner = self._runtime._runner
        try:
            self._inner = self._async_class(runtime=self._runtime.runtime, **kwargs)
        except BaseException:
            self._release()
            raise

    def __enter__(self) -> SyncSimpleBox:
        try:
            self._runner.run(self._inner.start)
        except BaseException:
            # No __exit__ follows a failed __enter__: what start made goes now.
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def name(self) -> str | None:
        return self._inner.name

    @property
    def created(self) -> bool | None:
        return self._inner.created

    @property
    def _box_opts(self) -> BoxOptions:
        """The options the box is made with (BoxLite's tests read them)."""
        return self._inner._box_opts

    @property
    def _box(self) -> SyncBox:
        return SyncBox(self._runner, self._inner._require_box())

    def _async_network(self) -> Any:
        return self._inner.network

    def exec(self, cmd: str, *args: str, env: dict[str, str] | None = None, user: str | None = None, timeout: float | None = None, cwd: str | None = None) -> ExecResult:
        return self._runner.run(lambda: self._inner.exec(cmd, *args, env=env, user=user, timeout=timeout, cwd=cwd))

    def metrics(self) -> BoxMetrics:
        return self._runner.run(self._inner.metrics)

    def stop(self) -> None:
        """Stops the box (and the loop thread this object owns). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._runner.run(self._inner.stop)
        finally:
            self._release()

    def _release(self) -> None:
        """Closes the loop thread (and runtime) this object made for itself."""
        if self._owned:
            self._runtime.close()


class SyncCodeBox(SyncSimpleBox):
    _async_class = CodeBox

    def run(self, code: str, timeout: float | None = None) -> str:
        inner = self._inner
        assert isinstance(inner, CodeBox)
        return self._runner.run(lambda: inner.run(code, timeout))

    def _code_box(self) -> CodeBox:
        inner = self._inner
        assert isinstance(inner, CodeBox)
        return inner

    def run_script(self, script_path: str | Path) -> str:
        return self._runner.run(lambda: self._code_box().run_script(script_path))

    def install_package(self, package: str) -> str:
        return self._runner.run(lambda: self._code_box().install_package(package))

    def install_packages(self, *packages: str) -> str:
        return self._runner.run(lambda: self._code_box().install_packages(*packages))


class SyncSkillBox(SyncSimpleBox):
    """``with SyncSkillBox(oauth_token=...) as box: box.call("...")`` (see ``SkillBox``)."""

    _async_class = SkillBox

    def _skill_box(self) -> SkillBox:
        inner = self._inner
        assert isinstance(inner, SkillBox)
        return inner

    def __enter__(self) -> SyncSkillBox:
        super().__enter__()
        return self

    def call(self, prompt: str) -> str:
        return self._runner.run(lambda: self._skill_box().call(prompt))

    def install_skill(self, skill_id: str) -> bool:
        return self._runner.run(lambda: self._skill_box().install_skill(skill_id))

    def wait_until_ready(self, timeout: int = 60) -> None:
        self._runner.run(lambda: self._skill_box().wait_until_ready(timeout))
