"""BrowserBox: a browser in a box, driven from the host over the Chrome DevTools Protocol
(Firefox: WebDriver BiDi) or through Playwright Server.

The browser and Playwright Server listen on the box's loopback; their ports are published on
the host (``BrowserBoxOptions.port`` and ``cdp_port``), so the endpoints are ``localhost`` URLs.
Each service runs as an execution the box object holds: it ends with the box, and its output
explains a start that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from . import constants
from ._native import Boxlite, Execution, ExitStatus
from .errors import ExecError, TimeoutError, UnsupportedError
from .simplebox import SimpleBox

__all__ = ["BrowserBox", "BrowserBoxOptions"]

#: Where the browser's remote debugging (CDP, or WebDriver BiDi) listens in the box.
CDP_PORT = 9222
_BROWSERS = ("chromium", "firefox", "webkit")
#: Where a browser is looked for: BoxLite's Playwright image first, then the usual names.
_CANDIDATES = {
    # Debian's /usr/bin/chromium is a script that needs its /etc; the program is beside it.
    "chromium": ("$(find /ms-playwright -type f -name chrome -path '*chrome-linux*' 2>/dev/null | head -n 1)", "/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"),
    "firefox": ("$(find /ms-playwright -type f -name firefox 2>/dev/null | head -n 1)", "firefox", "firefox-esr"),
}
_POLL_INTERVAL = 0.25


@dataclass
class BrowserBoxOptions:
    """``browser``: chromium, firefox or webkit; ``memory`` (MiB) and ``cpu`` of the box;
    ``port`` and ``cdp_port``: the host ports of Playwright Server and of the browser's remote
    debugging (default 3000 and 9222)."""

    browser: str = "chromium"
    memory: int = 2048
    cpu: int = 2
    port: int | None = None
    cdp_port: int | None = None


async def _http_get(port: int, path: str) -> tuple[int, bytes] | None:
    """One GET to ``localhost:port`` with a short deadline: (status, body), or None when nothing
    answers there yet. The body is read to its ``Content-Length`` (a browser's DevTools server
    keeps the connection open whatever the request says)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
            return None
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if ":" in line)}
        length = fields.get("content-length", "")
        body = await asyncio.wait_for(reader.readexactly(int(length)) if length.isdigit() else reader.read(), 2)
        return int(status[1]), body
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class BrowserBox(SimpleBox):
    """``async with BrowserBox() as box: url = await box.endpoint()``: a browser whose remote
    debugging endpoint (``endpoint()``) or Playwright Server (``playwright_endpoint()``,
    ``connect()``) is reached from the host.

    The default image is BoxLite's (``mcr.microsoft.com/playwright``); ``image=`` or
    ``rootfs_path=`` names another with a browser installed (chromium, chromium-browser,
    google-chrome; firefox or firefox-esr)."""

    _DEFAULT_IMAGE = "mcr.microsoft.com/playwright:v1.58.0-jammy"
    _PLAYWRIGHT_VERSION = "1.58.0"

    def __init__(self, options: BrowserBoxOptions | None = None, runtime: Boxlite | None = None, **kwargs: Any) -> None:
        chosen = options or BrowserBoxOptions()
        if chosen.browser not in _BROWSERS:
            raise ValueError(f"browser must be one of {', '.join(_BROWSERS)}, not {chosen.browser!r}")
        self._browser = chosen.browser
        self._host_port = chosen.port or constants.BROWSERBOX_PORT
        self._cdp_host_port = chosen.cdp_port or CDP_PORT
        ports = [(self._host_port, constants.BROWSERBOX_PORT), (self._cdp_host_port, CDP_PORT), *kwargs.pop("ports", [])]
        if kwargs.get("image") is None and kwargs.get("rootfs_path") is None:
            kwargs["image"] = self._DEFAULT_IMAGE
        super().__init__(memory_mib=chosen.memory, cpus=chosen.cpu, runtime=runtime, ports=ports, **kwargs)
        # Each service, and a wait kept pending on it: while it is, what the service writes
        # and nobody reads is kept (its newest 8 MiB) instead of holding the service back.
        self._services: dict[str, tuple[Execution, asyncio.Future[ExitStatus]]] = {}

    @property
    def browser(self) -> str:
        """chromium, firefox or webkit."""
        return self._browser

    async def endpoint(self, timeout: int = 60) -> str:
        """The browser's remote debugging URL, starting the browser first if needed: Chrome
        DevTools Protocol for chromium (for Puppeteer, or Playwright's ``connect_over_cdp``),
        WebDriver BiDi for firefox. WebKit has neither: ``ValueError``."""
        if self._browser == "webkit":
            raise ValueError("WebKit has no remote debugging endpoint; use playwright_endpoint() for webkit")
        if "browser" not in self._services:
            await self._start_browser(timeout)
        if self._browser == "firefox":
            return f"ws://localhost:{self._cdp_host_port}/session"
        answer = await _http_get(self._cdp_host_port, "/json/version")
        if answer is None or answer[0] != 200:
            raise UnsupportedError(f"the browser's remote debugging stopped answering on port {self._cdp_host_port}")
        url = str(json.loads(answer[1]).get("webSocketDebuggerUrl", ""))
        return re.sub(r"^ws://[^/]+", f"ws://localhost:{self._cdp_host_port}", url)

    async def playwright_endpoint(self, timeout: int = 60) -> str:
        """The URL of Playwright Server (``browser_type.connect(url)``), started first if
        needed with the image's ``npx``."""
        if "playwright" not in self._services:
            await self._start_playwright(timeout)
        return f"ws://localhost:{self._host_port}/"

    async def connect(self, timeout: int = 60) -> Any:
        """A Playwright ``Browser`` connected to this box's Playwright Server (needs
        ``pip install playwright`` on the host)."""
        url = await self.playwright_endpoint(timeout)
        try:
            from playwright.async_api import async_playwright  # type: ignore[import-not-found]
        except ImportError:
            raise ImportError("connect() needs playwright on the host: pip install playwright") from None
        playwright = await async_playwright().start()
        return await getattr(playwright, self._browser).connect(url)

    async def stop(self) -> None:
        """Stops the box, and the services it ran with it."""
        services, self._services = self._services, {}
        for service, waiting in services.values():
            service.close()
            waiting.cancel()
        await super().stop()

    async def _find(self, what: str, candidates: tuple[str, ...]) -> str:
        """The first of ``candidates`` the box's image has, else ``UnsupportedError``."""
        names = " ".join(f'"{candidate}"' if not candidate.startswith("$(") else candidate for candidate in candidates)
        found = await self.exec("sh", "-c", f"for program in {names}; do [ -n \"$program\" ] && command -v \"$program\" && exit 0; done; exit 1")
        path = found.stdout.strip().splitlines()[0] if found.exit_code == 0 and found.stdout.strip() else ""
        if not path:
            raise UnsupportedError(f"BrowserBox needs {what} in the box's image, and it has none ({', '.join(name for name in candidates if not name.startswith('$('))} or Playwright's)")
        return path

    async def _start_browser(self, timeout: int) -> None:
        path = await self._find(self._browser, _CANDIDATES[self._browser])
        if self._browser == "chromium":
            arguments = [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-extensions", "--user-data-dir=/tmp/chromium-data", f"--remote-debugging-port={CDP_PORT}", "--remote-allow-origins=*",
            ]
            ready = "/json/version"
        else:
            await self.exec("mkdir", "-p", "/tmp/firefox-profile")
            arguments = ["--headless", "--no-remote", "--profile", "/tmp/firefox-profile", "--remote-debugging-port", str(CDP_PORT)]
            ready = "/"
        await self._run_service("browser", path, arguments, self._cdp_host_port, ready, timeout)

    async def _start_playwright(self, timeout: int) -> None:
        npx = await self._find("npx (Node.js) to run Playwright Server", ("npx",))
        arguments = ["-y", f"playwright@{self._PLAYWRIGHT_VERSION}", "run-server", "--port", str(constants.BROWSERBOX_PORT), "--host", "127.0.0.1"]
        await self._run_service("playwright", npx, arguments, self._host_port, "/", timeout)

    async def _run_service(self, key: str, program: str, arguments: list[str], host_port: int, ready_path: str, timeout: int) -> None:
        """Starts ``program`` as an execution this object holds, and waits until an HTTP request
        through its published port is answered. A service that ends first is an ``ExecError``,
        one that never answers a ``TimeoutError``; each carries what the service wrote."""
        box = self._require_box()
        service = await box.exec(program, arguments)
        ended = asyncio.ensure_future(service.wait())
        self._services[key] = (service, ended)
        deadline = time.monotonic() + timeout
        while await _http_get(host_port, ready_path) is None:
            finished = ended.done()
            if finished or time.monotonic() > deadline:
                del self._services[key]
                service.close()
                output = await self._output_of(service)
                ended.cancel()
                if finished:
                    raise ExecError(program, ended.result().exit_code, output)
                raise TimeoutError(f"{program} did not answer on port {host_port} within {timeout}s: {output}")
            await asyncio.sleep(_POLL_INTERVAL)

    @staticmethod
    async def _output_of(service: Execution) -> str:
        async def read(stream: Any) -> str:
            try:
                return "".join([chunk async for chunk in stream])[-2000:]
            except Exception:  # noqa: BLE001 - what a failed service said is best effort
                return ""

        stdout, stderr = await asyncio.gather(read(service.stdout()), read(service.stderr()))
        return (stdout + stderr).strip() or "(no output)"
