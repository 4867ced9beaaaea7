"""The future of a request that makes something for its caller: ``create()``'s box,
``get_or_create()``'s new box, ``exec()``'s execution.

What it makes belongs to the caller only once the caller received it. A task awaiting the
future can be cancelled after the value arrived but before the task ran again; the value then
never reaches the task's coroutine. Here, it is released instead of leaked: the box removed, the
execution's process group killed.

- A value taken with ``result()`` (as ``gather``, ``wait_for`` and ``shield`` take it) belongs
  to whoever took it: the value's ``_claim()`` is called.
- A task's own wake-up takes the result that way too, before its coroutine runs; so when the
  coroutine is then thrown into instead of resumed (the task was cancelled meanwhile), the
  value's ``_release()`` is called whatever was claimed: that coroutine was the one it was for.
- A value nobody ever takes is released when it is collected (the native objects do that).
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
    def result(self) -> Any:
        value = super().result()
        claim = getattr(_made(value), "_claim", None)
        if claim is not None:
            claim()
        return value

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            yield from super().__await__()
        except BaseException:
            # Thrown in while suspended (the awaiting task was cancelled, or its coroutine
            # closed): a value that arrived meanwhile reaches nobody.
            if self.done() and not self.cancelled() and self.exception() is None:
                release = getattr(_made(super().result()), "_release", None)
                if release is not None:
                    release()
            raise
        return self.result()

    __iter__ = __await__
