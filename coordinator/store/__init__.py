"""Job stores: one interface (``base.JobStore``), one module per database."""

from coordinator.store.base import (
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    JobStore,
    NewBatch,
    NewJob,
)
from coordinator.store.open import open_store

__all__ = [
    "BatchRecord",
    "Done",
    "JobRecord",
    "JobState",
    "JobStore",
    "NewBatch",
    "NewJob",
    "open_store",
]
