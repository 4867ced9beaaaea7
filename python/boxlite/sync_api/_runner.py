"""The event loop behind the sync API: one daemon thread runs an asyncio loop; a sync call runs
its coroutine there and blocks the calling thread until it is done. Any number of threads may
call at once; the runtime's own claim-once rules apply unchanged, because every native call
still happens on an event loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import RuntimeClosedError

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="boxlite-sync-loop", daemon=True)
        self._thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Runs ``make()`` on the loop and waits for its result (or exception)."""
        if self._loop.is_closed() or not self._thread.is_alive():
            raise RuntimeClosedError("this boxlite sync runtime is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError("a boxlite sync call cannot be made from its own event loop thread")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("Cannot use the boxlite sync API inside a running asyncio loop; use the async API there")

        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()

    def close(self) -> None:
        """Cancels what still runs (callers blocked in ``run`` get CancelledError), then stops
        the loop and its thread."""
        if self._loop.is_closed() or not self._thread.is_alive():
            return

        async def finish() -> None:
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(finish(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
