"""The future of a request that makes something for its caller: ``create()``'s box,
``get_or_create()``'s new box, ``exec()``'s execution.

What it makes belongs to the caller only once the caller received it. A task awaiting the
future can be cancelled after the value arrived but before the task ran again; the value then
never reaches the task's coroutine. Here, it is released instead of leaked: the box removed, the
execution's process group killed (the value's ``_release()``).

- A coroutine that awaits the future and resumes with the value has received it.
- ``result()`` called while no coroutine is suspended on the future (as ``gather``,
  ``wait_for`` and ``shield`` take the value), or from inside a running task, hands it over
  too. A task's own wake-up also calls ``result()``, once, from outside any task and while its
  coroutine is still suspended; such a call decides nothing by itself, but it is counted: an
  awaiter that leaves accounts for one, and a call left over came from someone else (a
  done-callback that took the value while a task awaited it), who received the value.
- A coroutine thrown into instead (its task was cancelled, or it was closed) after the value
  arrived schedules the release for after the callbacks already due, so that another awaiter
  woken by the same result, or the same code awaiting the future again, can still receive it.
- A future whose value nobody ever takes keeps it: a box outlives its handles, and whoever
  finds it (``get``, ``list_info``) may use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

__all__ = ["Handover"]


def _made(value: Any) -> Any:
    """What a value holds that was made for the caller: ``get_or_create`` gives ``(box, created)``."""
    return value[0] if isinstance(value, tuple) and value else value


class Handover(asyncio.Future[Any]):
    _suspended = 0
    """Coroutines suspended in ``__await__`` on this future."""
    _unattributed = 0
    """``result()`` calls made outside any task while a coroutine was suspended on this future,
    not yet accounted for by an awaiter's wake-up."""
    _received = False

    def result(self) -> Any:
        value = super().result()
        if not self._suspended or asyncio.current_task() is not None:
            self._received = True
        else:
            self._unattributed += 1
        return value

    def __await__(self) -> Generator[Any, None, Any]:
        self._suspended += 1
        try:
            yield from super().__await__()
        except BaseException:
            if self._unattributed:
                self._unattributed -= 1
            if self.done() and not self.cancelled() and self.exception() is None:
                loop = self.get_loop()
                if loop.is_closed():
                    self._release_unless_received()
                else:
                    loop.call_soon(self._release_unless_received)
            raise
        else:
            self._received = True
        finally:
            self._suspended -= 1
        return super().result()

    __iter__ = __await__

    def _release_unless_received(self) -> None:
        if not self._received and not self._unattributed:
            release = getattr(_made(super().result()), "_release", None)
            if release is not None:
                release()
