"""Steps that must not be cut short by a Cancel: once an output is committed (renamed into
place, its multipart upload completed), the coordinator has to hear of it, or a chunk object
nobody will join stays behind (the coordinator removes one it hears of: Farm.complete)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def run_to_end(step: Awaitable[T]) -> T:
    """Awaits ``step`` to its end even if this task is cancelled meanwhile (a thread or a
    request in flight finishes anyway), then returns its result as if no cancel had come: the
    caller reports what was done. A cancel before the step started still cancels."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is None or task.cancelled():
            raise
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue  # cancelled again: the step still runs; wait on
        if current.cancelling():
            current.uncancel()
        return task.result()  # the step's own error, if it failed
