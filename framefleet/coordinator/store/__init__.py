"""Job stores: one interface by area (``areas.py``, ``JobStore`` their union), one module per
database."""

from framefleet.coordinator.store.areas import JobStore
from framefleet.coordinator.store.base import (
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    Lease,
    NewBatch,
    NewJob,
    Transition,
)
from framefleet.coordinator.store.open import open_store

__all__ = [
    "BatchRecord",
    "Done",
    "JobRecord",
    "JobState",
    "JobStore",
    "Lease",
    "NewBatch",
    "NewJob",
    "Transition",
    "open_store",
]
