"""Reaching a server that a test or a benchmark has just started in a box."""

from __future__ import annotations

import asyncio
import time

import boxlite


async def connect_when_listening(box: boxlite.Box, port: int) -> boxlite.BoxConnection:
    """A tunnel's connection to ``port``, once the server just started in the box listens."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await (await box.network.tunnel(port)).connect()
        except boxlite.NetworkError:
            assert time.monotonic() < deadline, f"nothing listened on port {port} of the box"
            await asyncio.sleep(0.02)
