"""``boxlite.constants``: the defaults a box gets when its options leave them out, and those of
the specialised boxes (``BrowserBox``, ``ComputerBox``, ``SkillBox``), with BoxLite's names."""

from __future__ import annotations

from typing import Final

#: CPUs of a box that does not set ``cpus``.
DEFAULT_CPUS: Final = 1
#: Memory limit (MiB) of a box that does not set ``memory_mib``.
DEFAULT_MEMORY_MIB: Final = 1024

#: ComputerBox: its resources and image (a desktop served to a browser).
COMPUTERBOX_CPUS: Final = 2
COMPUTERBOX_MEMORY_MIB: Final = 2048
COMPUTERBOX_IMAGE: Final = "lscr.io/linuxserver/webtop:ubuntu-xfce"
#: The X display the desktop of a ComputerBox or SkillBox runs on, and its size.
COMPUTERBOX_DISPLAY_NUMBER: Final = ":1"
COMPUTERBOX_DISPLAY_WIDTH: Final = 1024
COMPUTERBOX_DISPLAY_HEIGHT: Final = 768
#: The desktop's web interface, in the box.
COMPUTERBOX_GUI_HTTP_PORT: Final = 3000
COMPUTERBOX_GUI_HTTPS_PORT: Final = 3001

#: BrowserBox: where Playwright Server listens in the box.
BROWSERBOX_PORT: Final = 3000

#: The box's address on BoxLite's VM network (kept for code that names it; a box here reaches
#: its own services on 127.0.0.1).
GUEST_IP: Final = "192.168.127.2"

#: SkillBox: its image (Claude Code's CLI and a desktop), resources and web interface.
SKILLBOX_IMAGE: Final = "ghcr.io/boxlite-ai/boxlite-skillbox:0.1.0"
SKILLBOX_MEMORY_MIB: Final = 4096
SKILLBOX_DISK_SIZE_GB: Final = 10
SKILLBOX_GUI_HTTP_PORT: Final = 3000
SKILLBOX_GUI_HTTPS_PORT: Final = 3001

#: How long ``wait_until_ready`` waits for a desktop by default, and how often it looks (seconds).
DESKTOP_READY_TIMEOUT: Final = 60
DESKTOP_READY_RETRY_DELAY: Final = 0.5

__all__ = [
    "BROWSERBOX_PORT",
    "COMPUTERBOX_CPUS",
    "COMPUTERBOX_DISPLAY_HEIGHT",
    "COMPUTERBOX_DISPLAY_NUMBER",
    "COMPUTERBOX_DISPLAY_WIDTH",
    "COMPUTERBOX_GUI_HTTPS_PORT",
    "COMPUTERBOX_GUI_HTTP_PORT",
    "COMPUTERBOX_IMAGE",
    "COMPUTERBOX_MEMORY_MIB",
    "DEFAULT_CPUS",
    "DEFAULT_MEMORY_MIB",
    "DESKTOP_READY_RETRY_DELAY",
    "DESKTOP_READY_TIMEOUT",
    "GUEST_IP",
    "SKILLBOX_DISK_SIZE_GB",
    "SKILLBOX_GUI_HTTPS_PORT",
    "SKILLBOX_GUI_HTTP_PORT",
    "SKILLBOX_IMAGE",
    "SKILLBOX_MEMORY_MIB",
]
