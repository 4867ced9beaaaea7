"""CodeBox: a SimpleBox for running Python code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._native import HOST_IMAGE, Boxlite
from .simplebox import SimpleBox

__all__ = ["CodeBox"]


class CodeBox(SimpleBox):
    """Runs Python code in a box: ``await box.run("print(2 + 2)")``.

    The default image is the built-in ``host://`` image, whose ``python3`` is the host's.
    """

    def __init__(
        self,
        image: str | None = HOST_IMAGE,
        memory_mib: int | None = None,
        cpus: int | None = None,
        runtime: Boxlite | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(image=image, memory_mib=memory_mib, cpus=cpus, runtime=runtime, **kwargs)

    async def run(self, code: str, timeout: float | None = None) -> str:
        """Runs ``code`` with ``python3 -c``; returns its stdout. ``timeout`` (seconds) kills
        the run and everything it started."""
        result = await self.exec("python3", "-c", code, timeout=timeout)
        return result.stdout

    async def run_script(self, script_path: str | Path) -> str:
        """Runs a host file's Python code in the box."""
        return await self.run(Path(script_path).read_text())

    async def install_package(self, package: str) -> str:
        result = await self.exec("python3", "-m", "pip", "install", package)
        return result.stdout + result.stderr

    async def install_packages(self, *packages: str) -> str:
        result = await self.exec("python3", "-m", "pip", "install", *packages)
        return result.stdout + result.stderr
