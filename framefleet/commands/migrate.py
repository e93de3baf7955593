"""``framefleet migrate --store URL``: applies the schema migrations the store lacks."""

from __future__ import annotations

import argparse
import sys


async def cmd_migrate(args: argparse.Namespace) -> int:
    from framefleet.coordinator.store.migrations import redact
    from framefleet.coordinator.store.open import connect

    store = await connect(args.store)
    try:
        applied = await store.migrate()
        version = await store.schema_version()
    finally:
        await store.close()
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}", file=sys.stderr)
    state = "migrated" if applied else "already current"
    print(f"{redact(args.store)}: schema version {version} ({state})")
    return 0
