"""Job stores: one interface (``base.JobStore``), one module per database."""

from coordinator.store.base import JobRecord, JobState, JobStore, NewJob
from coordinator.store.open import open_store

__all__ = ["JobRecord", "JobState", "JobStore", "NewJob", "open_store"]
