"""The Farm is the only door to the store (ARCHITECTURE.md, "Where each rule lives"): no module
reaches into a Farm for its store, sessions or lease book, and only the Farm, the helpers it
hands one area of its store (typed against that area), the store's own package and the
coordinator's construction name a store at all."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "framefleet"
COORDINATOR = PKG / "coordinator"

# The Farm's own parts: private, read by the Farm alone.
PRIVATE = {"_store", "_sessions", "_leases"}
# What services once reached through a Farm (farm.store, self.farm.leases, app[FARM].sessions).
THROUGH_FARM = {"store", "sessions", "leases", *PRIVATE}
# Names that open or type a store.
STORE_MODULES = {
    f"framefleet.coordinator.store.{name}"
    for name in ("areas", "open", "sql", "sqlite", "postgres")
}
STORE_NAMES = {"JobStore", "open_store", "connect", "SqlStore", "SqliteStore", "PostgresStore"}
# Who may name a store: the Farm, the helpers it hands one area (queries, the batch finisher,
# the store sampler), the construction (server.py; `framefleet migrate` opens one to migrate).
MAY_NAME_A_STORE = {
    COORDINATOR / "farm.py",
    COORDINATOR / "queries.py",
    COORDINATOR / "batch_finisher.py",
    COORDINATOR / "metrics.py",
    COORDINATOR / "server.py",
    PKG / "commands" / "migrate.py",
}


def _in_store_package(path: Path) -> bool:
    return (COORDINATOR / "store") in path.parents


def breaches(path: Path, source: str) -> list[str]:
    found = []
    tree = ast.parse(source, str(path))
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = ast.unparse(node.value)
            if node.attr in PRIVATE and owner != "self":
                found.append(f"{where}:{node.lineno} reads {owner}.{node.attr}")
            elif (
                node.attr in THROUGH_FARM
                and "farm" in owner.lower()
                and path != COORDINATOR / "farm.py"
            ):
                found.append(f"{where}:{node.lineno} reaches into the Farm: {owner}.{node.attr}")
        if path in MAY_NAME_A_STORE or _in_store_package(path):
            continue
        if isinstance(node, ast.Import):
            named = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            if node.module.startswith("framefleet.coordinator.store"):
                named |= {alias.name for alias in node.names}
        else:
            continue
        if wrong := sorted(named & (STORE_MODULES | STORE_NAMES)):
            found.append(f"{where}:{node.lineno} names a store: {', '.join(wrong)}")
    return found


def test_only_the_farm_opens_the_door() -> None:
    files = sorted(PKG.rglob("*.py"))
    assert COORDINATOR / "farm.py" in files
    found = [b for path in files for b in breaches(path, path.read_text())]
    assert not found, "\n".join(found)


def test_the_checker_sees_each_kind_of_breach() -> None:
    service = COORDINATOR / "some_service.py"
    source = "\n".join(
        [
            "from framefleet.coordinator.store import JobRecord, open_store",
            "from framefleet.coordinator.store.areas import Batches",
            "async def f(farm, request, self):",
            "    await farm.store.get('x')",
            "    self.farm.leases.wake()",
            "    request.app[FARM].sessions.all()",
            "    farm._store.get('x')",
            "    args.store, hello.leases",  # not a Farm's: fine
        ]
    )
    found = breaches(service, source)
    assert len(found) == 6, found
    assert any("open_store" in b for b in found) and any("areas" in b for b in found)
    assert not any("JobRecord" in b or "args.store" in b or "hello" in b for b in found)
    # The Farm reads its own parts; the construction opens the store.
    farm_source = "def f(self):\n    self._store.get('x')\n    self.leases = 1\n"
    assert breaches(COORDINATOR / "farm.py", farm_source) == []
    server_source = "from framefleet.coordinator.store import open_store\n"
    assert breaches(COORDINATOR / "server.py", server_source) == []
