"""The one conformance suite every job store passes (the shape of river's riverdrivertest),
split by area: claims, leases, batches, the result cache, split jobs.

A store's test module subclasses ``StoreConformance`` as ``TestXxxStore`` and provides an async
``store`` fixture that yields an empty, open store. Only the ``JobStore`` interface is used,
so the same tests run against SQLite and PostgreSQL. Every time is passed in: no sleeping.
"""

from tests.store_conformance.batches import BatchTests
from tests.store_conformance.cache import CacheTests
from tests.store_conformance.claims import ClaimTests
from tests.store_conformance.helpers import (
    T0,
    TTL,
    complete_one,
    expire,
    must_claim,
    must_get,
    new_job,
)
from tests.store_conformance.leases import LeaseTests
from tests.store_conformance.splits import SplitTests

__all__ = [
    "T0",
    "TTL",
    "StoreConformance",
    "complete_one",
    "expire",
    "must_claim",
    "must_get",
    "new_job",
]


class StoreConformance(ClaimTests, LeaseTests, BatchTests, CacheTests, SplitTests):
    """Not collected on its own (no Test prefix); subclasses supply the ``store`` fixture."""
