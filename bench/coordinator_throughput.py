"""Coordinator throughput: job lifecycles per second through the real gRPC path.

A coordinator process and agent processes in ``--noop`` mode (they complete each job the
moment it is assigned, rendering nothing), one 10,000-row batch submitted through the SDK's
SubmitBatch stream, timed from the first row sent until the batch is finished. Every job goes
queued -> leased -> succeeded with its Assign, Completed and Ack over the agents' streams, so
this measures the store, the dispatcher and the protocol, not Chromium. Runs SQLite and
PostgreSQL side by side.

    .venv/bin/python bench/coordinator_throughput.py [--jobs 10000] [--agents 2] [--slots 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from framefleet import AsyncClient  # noqa: E402
from framefleet.v1 import framefleet_pb2 as pb  # noqa: E402
from tests.farm_processes import FarmProcesses  # noqa: E402
from tests.postgres_server import start_postgres  # noqa: E402

TEMPLATE = "<!doctype html><body><script>framefleet.onParams(() => {});</script></body>"


async def measure(
    store_url: str, root: Path, jobs: int, agents: int, slots: int
) -> dict[str, float]:
    farm = FarmProcesses(root)
    try:
        farm.start_coordinator(store_url, root / "out", "--heartbeat-interval", "2")
        for n in range(agents):
            farm.start_agent(f"noop-{n}", "--noop", "--slots", str(slots))
        spec = pb.JobSpec(
            template=pb.Template(html=TEMPLATE),
            output=pb.OutputSettings(width=64, height=64, fps=10, frames=1),
        )
        rows = [(f"row-{n}", {"n": n}) for n in range(jobs)]
        async with AsyncClient(farm.address) as client:
            await asyncio.sleep(2.0)  # agents connected
            started = time.perf_counter()
            batch = await client.submit_batch(spec, rows, name="throughput")
            submitted = time.perf_counter() - started
            final = await client.wait_batch(batch.id)
            elapsed = time.perf_counter() - started
        assert final.succeeded == jobs, f"{final.succeeded} of {jobs} succeeded"
        return {"submit_s": submitted, "total_s": elapsed, "jobs_per_s": jobs / elapsed}
    finally:
        farm.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--slots", type=int, default=64)
    args = parser.parse_args()
    postgres = start_postgres()
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results["sqlite"] = await measure(
                f"sqlite:///{tmp}/jobs.db", Path(tmp) / "sqlite", args.jobs, args.agents, args.slots
            )
            results["postgres"] = await measure(
                await postgres.create_database(),
                Path(tmp) / "pg",
                args.jobs,
                args.agents,
                args.slots,
            )
    finally:
        postgres.stop()
    print(f"{args.jobs} jobs, {args.agents} noop agents x {args.slots} slots")
    print(f"{'store':<10} {'submit s':>9} {'total s':>8} {'jobs/s':>8}")
    for store, r in results.items():
        print(f"{store:<10} {r['submit_s']:>9.2f} {r['total_s']:>8.2f} {r['jobs_per_s']:>8.0f}")
    ratio = results["postgres"]["jobs_per_s"] / results["sqlite"]["jobs_per_s"]
    print(f"postgres / sqlite: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
