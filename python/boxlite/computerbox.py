"""ComputerBox: a desktop in a box, seen and driven from the host: screenshots, the mouse and the
keyboard, through the box's X display (``xdotool`` and ``xwd`` in its image).

The default image is BoxLite's (linuxserver's webtop, an XFCE desktop whose web interface is
published on ``gui_http_port``/``gui_https_port``); any image with an X server on display
``:1`` and those two tools does, e.g. one whose main command is TigerVNC's ``Xvnc :1``.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import zlib
from typing import Any, Literal

from . import constants
from ._native import Boxlite
from .errors import ExecError, ParseError, TimeoutError
from .exec import ExecResult
from .simplebox import SimpleBox

__all__ = ["ComputerBox"]

_SCROLL_BUTTONS = {"up": "4", "down": "5", "left": "6", "right": "7"}

#: The environment of a desktop box: its display, and that display's size for the desktop
#: images' web interface (selkies).
DESKTOP_ENV = (
    ("DISPLAY", constants.COMPUTERBOX_DISPLAY_NUMBER),
    ("DISPLAY_SIZEW", str(constants.COMPUTERBOX_DISPLAY_WIDTH)),
    ("DISPLAY_SIZEH", str(constants.COMPUTERBOX_DISPLAY_HEIGHT)),
    ("SELKIES_MANUAL_WIDTH", str(constants.COMPUTERBOX_DISPLAY_WIDTH)),
    ("SELKIES_MANUAL_HEIGHT", str(constants.COMPUTERBOX_DISPLAY_HEIGHT)),
    ("SELKIES_UI_SHOW_SIDEBAR", "false"),
)


def _png(width: int, height: int, rows: bytes) -> bytes:
    """An 8-bit RGB PNG of ``rows`` (each ``width`` pixels of 3 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stride = width * 3
    filtered = b"".join(b"\x00" + rows[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered, 6)) + chunk(b"IEND", b"")


def _xwd_to_png(dump: bytes) -> tuple[int, int, bytes]:
    """The (width, height, PNG) of an X window dump (``xwd``) of a true-color screen."""
    if len(dump) < 100:
        raise ParseError("the screen dump is too short to be an X window dump")
    fields = struct.unpack(">25I", dump[:100])
    header_size, version, pixmap_format = fields[0], fields[1], fields[2]
    width, height, byte_order, bits_per_pixel, bytes_per_line = fields[4], fields[5], fields[7], fields[11], fields[12]
    masks, colormap_entries = fields[14:17], fields[19]
    if version != 7 or pixmap_format != 2 or bits_per_pixel not in (24, 32) or not all(masks):
        raise ParseError(f"unsupported screen dump (version {version}, format {pixmap_format}, {bits_per_pixel} bits per pixel): a true-color display is expected")
    start = header_size + 12 * colormap_entries
    if len(dump) < start + bytes_per_line * height:
        raise ParseError("the screen dump ends before its pixels do")
    step = bits_per_pixel // 8
    order: Literal["big", "little"] = "big" if byte_order == 1 else "little"
    pixels = b"".join(dump[start + row * bytes_per_line : start + row * bytes_per_line + width * step] for row in range(height))
    if step == 4 and masks == (0xFF0000, 0xFF00, 0xFF):
        # The usual 24-bit display: each channel is one byte of the pixel, taken by slicing.
        rgb = bytearray(width * height * 3)
        for channel, index in enumerate((2, 1, 0) if order == "little" else (1, 2, 3)):
            rgb[channel::3] = pixels[index::4]
        return width, height, _png(width, height, bytes(rgb))
    shifts = [(mask, (mask & -mask).bit_length() - 1, mask.bit_length() - (mask & -mask).bit_length() + 1) for mask in masks]
    rgb = bytearray(width * height * 3)
    out = 0
    for offset in range(0, len(pixels), step):
        pixel = int.from_bytes(pixels[offset : offset + step], order)
        for mask, shift, bits in shifts:
            rgb[out] = ((pixel & mask) >> shift) * 255 // ((1 << bits) - 1)
            out += 1
    return width, height, _png(width, height, bytes(rgb))


async def wait_for_display(box: SimpleBox, timeout: float, env: dict[str, str] | None = None) -> None:
    """Waits until the X display of ``box`` answers at the desktop's size (1024x768), asking
    with ``xdotool``; ``TimeoutError`` after ``timeout`` seconds, with what the display said."""
    expected = f"{constants.COMPUTERBOX_DISPLAY_WIDTH} {constants.COMPUTERBOX_DISPLAY_HEIGHT}"
    deadline = time.monotonic() + timeout
    seen = "nothing"
    while time.monotonic() < deadline:
        result = await box.exec("xdotool", "getdisplaygeometry", env=env)
        if result.exit_code == 0 and result.stdout.strip() == expected:
            return
        seen = (result.stdout + result.stderr).strip() or seen
        await asyncio.sleep(constants.DESKTOP_READY_RETRY_DELAY)
    raise TimeoutError(f"Desktop did not become ready within {timeout} seconds (the display said: {seen})")


class ComputerBox(SimpleBox):
    """``async with ComputerBox() as desktop: await desktop.wait_until_ready()``, then
    ``screenshot()``, ``mouse_move``, ``left_click``, ``type``, ``key``, ``scroll`` and the rest.
    Each helper raises ``ExecError`` when its command fails in the box, and ``NotFoundError``
    when the image lacks the tool."""

    def __init__(
        self,
        cpu: int = constants.COMPUTERBOX_CPUS,
        memory: int = constants.COMPUTERBOX_MEMORY_MIB,
        gui_http_port: int = constants.COMPUTERBOX_GUI_HTTP_PORT,
        gui_https_port: int = constants.COMPUTERBOX_GUI_HTTPS_PORT,
        runtime: Boxlite | None = None,
        **kwargs: Any,
    ) -> None:
        env = [*DESKTOP_ENV, *kwargs.pop("env", [])]
        ports = [(gui_http_port, constants.COMPUTERBOX_GUI_HTTP_PORT), (gui_https_port, constants.COMPUTERBOX_GUI_HTTPS_PORT), *kwargs.pop("ports", [])]
        if kwargs.get("image") is None and kwargs.get("rootfs_path") is None:
            kwargs["image"] = constants.COMPUTERBOX_IMAGE
        super().__init__(memory_mib=memory, cpus=cpu, runtime=runtime, env=env, ports=ports, **kwargs)

    async def _run(self, what: str, *command: str) -> ExecResult:
        result = await self.exec(*command)
        if result.exit_code != 0:
            raise ExecError(what, result.exit_code, result.stderr)
        return result

    async def wait_until_ready(self, timeout: int = constants.DESKTOP_READY_TIMEOUT) -> None:
        """Waits until the box's X display answers at the desktop's size (1024x768);
        ``TimeoutError`` after ``timeout`` seconds."""
        await wait_for_display(self, timeout)

    async def screenshot(self) -> dict[str, Any]:
        """The screen as a PNG: ``{"data": base64, "width", "height", "format": "png"}``."""
        box = self._require_box()
        execution = await box.exec("xwd", ["-root", "-silent"])
        chunks, errors = await asyncio.gather(self._collect(execution.stdout(text=False)), self._collect(execution.stderr(text=False)))
        status = await execution.wait()
        if status.exit_code != 0:
            raise ExecError("screenshot()", status.exit_code, errors.decode(errors="replace"))
        width, height, png = await asyncio.to_thread(_xwd_to_png, chunks)
        return {"data": base64.b64encode(png).decode(), "width": width, "height": height, "format": "png"}

    @staticmethod
    async def _collect(stream: Any) -> bytes:
        return b"".join([chunk async for chunk in stream])

    async def mouse_move(self, x: int, y: int) -> None:
        await self._run(f"mouse_move({x}, {y})", "xdotool", "mousemove", str(x), str(y))

    async def left_click(self) -> None:
        await self._run("left_click()", "xdotool", "click", "1")

    async def right_click(self) -> None:
        await self._run("right_click()", "xdotool", "click", "3")

    async def middle_click(self) -> None:
        await self._run("middle_click()", "xdotool", "click", "2")

    async def double_click(self) -> None:
        await self._run("double_click()", "xdotool", "click", "--repeat", "2", "--delay", "100", "1")

    async def triple_click(self) -> None:
        await self._run("triple_click()", "xdotool", "click", "--repeat", "3", "--delay", "100", "1")

    async def left_click_drag(self, start_x: int, start_y: int, end_x: int, end_y: int) -> None:
        await self._run(
            "left_click_drag()", "xdotool", "mousemove", str(start_x), str(start_y), "mousedown", "1", "sleep", "0.1",
            "mousemove", str(end_x), str(end_y), "sleep", "0.1", "mouseup", "1",
        )

    async def cursor_position(self) -> tuple[int, int]:
        result = await self._run("cursor_position()", "xdotool", "getmouselocation", "--shell")
        values = dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)
        try:
            return int(values["X"]), int(values["Y"])
        except (KeyError, ValueError):
            raise ParseError(f"Failed to parse cursor position from xdotool output: {result.stdout!r}") from None

    async def type(self, text: str) -> None:
        await self._run("type()", "xdotool", "type", "--", text)

    async def key(self, text: str) -> None:
        """A key or combination by X keysym names: ``Return``, ``ctrl+c``."""
        await self._run("key()", "xdotool", "key", text)

    async def scroll(self, x: int, y: int, direction: str, amount: int = 3) -> None:
        """``amount`` wheel steps ``up``, ``down``, ``left`` or ``right`` at (x, y)."""
        button = _SCROLL_BUTTONS.get(direction.lower())
        if button is None:
            raise ValueError(f"Invalid scroll direction: {direction}")
        await self._run("scroll()", "xdotool", "mousemove", str(x), str(y), "click", "--repeat", str(amount), button)

    async def get_screen_size(self) -> tuple[int, int]:
        result = await self._run("get_screen_size()", "xdotool", "getdisplaygeometry")
        parts = result.stdout.split()
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise ParseError(f"Failed to parse screen size from xdotool output: {result.stdout!r}")
        return int(parts[0]), int(parts[1])
