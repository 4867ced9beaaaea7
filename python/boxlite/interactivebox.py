"""InteractiveBox: a shell in a box, connected to this process's terminal."""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import Any

from ._native import Boxlite, Execution, ExitStatus
from ._terminal import forward
from .simplebox import SimpleBox

__all__ = ["InteractiveBox"]

# How long leaving the block waits for output still on its way.
_DRAIN_SECONDS = 3.0


class InteractiveBox(SimpleBox):
    """``async with InteractiveBox(image) as box: await box.wait()``: a shell on a terminal in
    the box, with this process's stdin, stdout and stderr connected to it until it exits. With
    ``tty`` (default: whether stdin is a terminal) the local terminal is raw meanwhile and its
    size follows to the box."""

    def __init__(
        self,
        image: str | None = None,
        shell: str = "/bin/sh",
        tty: bool | None = None,
        memory_mib: int | None = None,
        cpus: int | None = None,
        runtime: Boxlite | None = None,
        name: str | None = None,
        auto_remove: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(image=image, memory_mib=memory_mib, cpus=cpus, runtime=runtime, name=name, auto_remove=auto_remove, **kwargs)
        self._shell = shell
        self._tty = sys.stdin.isatty() if tty is None else tty
        self._execution: Execution | None = None
        self._forwarding: asyncio.Future[ExitStatus] | None = None

    async def __aenter__(self) -> InteractiveBox:
        await self.start()
        try:
            self._execution = await self._require_box().exec(self._shell, [], tty=True)
        except BaseException:
            await self.stop()
            raise
        self._forwarding = asyncio.ensure_future(forward(self._execution, interactive=True, tty=self._tty, box_terminal=True))
        return self

    async def wait(self) -> ExitStatus:
        """Waits for the shell to exit; returns how it ended."""
        if self._forwarding is None:
            raise RuntimeError("Box not started. Use 'async with InteractiveBox(...) as box:' first.")
        return await asyncio.shield(self._forwarding)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        forwarding, self._forwarding = self._forwarding, None
        try:
            if forwarding is not None:
                if not forwarding.done() and self._execution is not None:
                    await self._execution.kill()
                try:
                    status = await asyncio.wait_for(forwarding, _DRAIN_SECONDS)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    forwarding.cancel()
                else:
                    if status.error_message:
                        print(f"boxlite: {status.error_message}", file=sys.stderr)
        finally:
            await self.stop()
