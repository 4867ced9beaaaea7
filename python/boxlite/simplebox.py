"""SimpleBox: a box that is created on entry and stopped (and by default removed) on exit, with
``exec()`` collecting a command's whole output."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from ._native import Box, BoxInfo, Boxlite, BoxMetrics, BoxOptions, CopyOptions, ExecStream
from ._network import SimpleBoxNetwork
from .exec import ExecResult

__all__ = ["SimpleBox"]


async def _drain(stream: ExecStream) -> str:
    return "".join([chunk async for chunk in stream])


class SimpleBox:
    """A box with a simpler life: ``async with SimpleBox(image) as box: await box.exec(...)``."""

    def __init__(
        self,
        image: str | None = None,
        rootfs_path: str | None = None,
        memory_mib: int | None = None,
        cpus: int | None = None,
        runtime: Boxlite | None = None,
        name: str | None = None,
        auto_remove: bool = True,
        reuse_existing: bool = False,
        **kwargs: Any,
    ) -> None:
        if not image and not rootfs_path:
            raise ValueError("Either 'image' or 'rootfs_path' must be provided")
        self._box_opts = BoxOptions(image=image, rootfs_path=rootfs_path, cpus=cpus, memory_mib=memory_mib, auto_remove=auto_remove, **kwargs)
        self._runtime = runtime
        self._name = name
        self._reuse_existing = reuse_existing
        self._box: Box | None = None
        self._started = False
        self._created: bool | None = None

    async def start(self) -> SimpleBox:
        """Creates (or, with ``reuse_existing``, finds) the box and boots it. Idempotent."""
        if self._box is not None:
            return self
        runtime = self._runtime if self._runtime is not None else Boxlite.default()
        self._runtime = runtime
        if self._reuse_existing:
            box, created = await runtime.get_or_create(self._box_opts, name=self._name)
        else:
            box, created = await runtime.create(self._box_opts, name=self._name), True
        try:
            await box.start()
        except BaseException:
            if created:
                await runtime.remove(box.id, force=True)
            raise
        self._box, self._created, self._started = box, created, True
        return self

    async def __aenter__(self) -> SimpleBox:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        await self.stop()

    def _require_box(self) -> Box:
        if self._box is None or not getattr(self, "_started", False):
            raise RuntimeError("Box not started. Use 'async with SimpleBox(...) as box:' or call 'await box.start()' first.")
        return self._box

    @property
    def id(self) -> str:
        return self._require_box().id

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def network(self) -> SimpleBoxNetwork:
        """Tunnels to the box's ports, and its outbound policy (see ``Box.network``)."""
        return SimpleBoxNetwork(self)

    async def tunnel(self, port: int) -> Any:
        return await self.network.tunnel(port)

    @property
    def created(self) -> bool | None:
        """True when this object created the box, False when it reused one, None before start."""
        return self._created

    async def exec(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> ExecResult:
        """Runs a command to its end; returns its exit code and whole output. A non-zero exit
        or a timeout is reported in the result, not raised. The command's stdin is at its end
        (``input()`` raises EOFError, ``cat`` ends), and a cancelled call ends the command."""
        box = self._require_box()
        execution = await box.exec(cmd, list(args), env=list(env.items()) if env else None, user=user, timeout_secs=timeout, cwd=cwd)
        try:
            await execution.stdin().close()
            stdout, stderr = await asyncio.gather(_drain(execution.stdout()), _drain(execution.stderr()))
            status = await execution.wait()
        except BaseException:
            execution.close()
            raise
        return ExecResult(exit_code=status.exit_code, stdout=stdout, stderr=stderr, error_message=status.error_message)

    async def info(self) -> BoxInfo:
        return await self._require_box().info()

    async def metrics(self) -> BoxMetrics:
        return await self._require_box().metrics()

    async def copy_in(self, host_path: str, container_dest: str, *, overwrite: bool = True, follow_symlinks: bool = False) -> None:
        await self._require_box().copy_in(host_path, container_dest, CopyOptions(recursive=True, overwrite=overwrite, follow_symlinks=follow_symlinks))

    async def copy_out(self, container_src: str, host_dest: str, *, overwrite: bool = True, follow_symlinks: bool = False) -> None:
        await self._require_box().copy_out(container_src, host_dest, CopyOptions(recursive=True, overwrite=overwrite, follow_symlinks=follow_symlinks))

    async def stop(self) -> None:
        """Stops the box (removing it unless ``auto_remove=False``)."""
        box, self._box, self._started = self._box, None, False
        if box is not None:
            await box.stop()

    async def shutdown(self) -> None:
        await self.stop()
