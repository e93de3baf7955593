"""The store's interface is split by area (framefleet/coordinator/store/areas.py) as its
conformance suite is: the areas do not overlap, ``JobStore`` is exactly their union, and every
method of every area is exercised by the suite (or, for requests, by test_store_tenants.py)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from framefleet.coordinator.store import areas

TESTS = Path(__file__).resolve().parent
AREAS = [areas.Claims, areas.Leases, areas.Batches, areas.Splits, areas.Cache, areas.Requests]
# Where each area's conformance lives.
SUITE = {
    areas.Claims: TESTS / "store_conformance" / "claims.py",
    areas.Leases: TESTS / "store_conformance" / "leases.py",
    areas.Batches: TESTS / "store_conformance" / "batches.py",
    areas.Splits: TESTS / "store_conformance" / "splits.py",
    areas.Cache: TESTS / "store_conformance" / "cache.py",
    areas.Requests: TESTS / "test_store_tenants.py",
}


def methods(area: type) -> set[str]:
    return {
        name
        for name, member in vars(area).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }


def test_areas_split_the_store_without_overlap() -> None:
    seen: dict[str, str] = {}
    for area in AREAS:
        for name in methods(area):
            assert name not in seen, f"{name} is in both {seen[name]} and {area.__name__}"
            seen[name] = area.__name__
    # The union: every area, and nothing of its own but close().
    assert [b for b in areas.JobStore.__bases__ if b in AREAS] == AREAS
    assert methods(areas.JobStore) == {"close"}


def test_each_area_is_exercised_by_its_conformance_tests() -> None:
    untested = []
    for area, module in SUITE.items():
        # The suite's areas share helpers, and one area's tests set the scene with another's.
        suite = sorted((TESTS / "store_conformance").glob("*.py"))
        text = "".join(p.read_text() for p in {module, *suite})
        untested += [
            f"{area.__name__}.{name}"
            for name in sorted(methods(area))
            if not re.search(rf"\.{name}\(", text)
        ]
    assert not untested, f"no conformance test calls {untested}"
