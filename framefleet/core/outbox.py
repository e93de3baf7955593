"""Writing a stream from an outbox: whatever messages are ready within a moment go out together
in one bundle message (one write, one syscall), in order. A write costs far more than a
millisecond's wait, and nothing on these streams needs sub-millisecond latency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

M = TypeVar("M")

MAX_BUNDLE = 256
GATHER_SECONDS = 0.001


async def take_ready(outbox: asyncio.Queue[M], bundle: Callable[[list[M]], M]) -> M:
    """Waits for the next message; returns it alone, or with those queued behind it bundled."""
    messages = [await outbox.get()]
    if outbox.empty():
        await asyncio.sleep(GATHER_SECONDS)
    while len(messages) < MAX_BUNDLE and not outbox.empty():
        messages.append(outbox.get_nowait())
    return messages[0] if len(messages) == 1 else bundle(messages)
