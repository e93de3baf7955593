"""Job stores: one interface (``base.JobStore``), one module per database."""

from framefleet.coordinator.store.base import (
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    JobStore,
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
