"""Which job sources an agent holds on one stream, bounded.

The coordinator sends a source once per stream and later Assigns name it by key; the agent
keeps it to fill those Assigns in. Kept for ever, a long stream of distinct templates would
grow the agent without bound (a source can be up to ``MAX_BUNDLE_BYTES``). So both ends keep
this same ledger: least recently used first, the oldest dropped once the sources held pass
``MAX_HELD_BYTES``. Each end applies the same Assigns of one stream in the same order, so the
coordinator knows, without asking, whether the agent still holds a source, and sends it again
when not. A new stream starts both ledgers empty."""

from __future__ import annotations

from collections import OrderedDict

from framefleet.v1 import framefleet_pb2 as pb

# What one agent keeps of its sources: a few large bundles or thousands of small templates.
MAX_HELD_BYTES = 128 * 1024 * 1024


def source_size(source: pb.JobSpec) -> int:
    """A source's weight in the ledger: its size on the wire, the same at both ends."""
    return source.ByteSize()


class HeldSources:
    def __init__(self, budget: int | None = None) -> None:
        self._budget = MAX_HELD_BYTES if budget is None else budget
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return len(self._sizes)

    def use(self, key: str) -> bool:
        """Whether the agent holds ``key``; if so it becomes the most recently used."""
        if key not in self._sizes:
            return False
        self._sizes.move_to_end(key)
        return True

    def add(self, key: str, size: int) -> list[str]:
        """Records a source sent with an Assign; returns the keys dropped to make room (the
        newest source is always kept, even past the budget on its own)."""
        self._total -= self._sizes.pop(key, 0)
        self._sizes[key] = size
        self._total += size
        dropped: list[str] = []
        while self._total > self._budget and len(self._sizes) > 1:
            oldest, freed = self._sizes.popitem(last=False)
            self._total -= freed
            dropped.append(oldest)
        return dropped
