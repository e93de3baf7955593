"""Finishes batches whose rows have all ended: computes the digest, writes the manifest next to
the outputs, and records both once (with several coordinators, the first one wins). The Farm
runs it over its store's batches area (``Farm.finish_batches``)."""

from __future__ import annotations

import json
import logging

from framefleet import outputs
from framefleet.coordinator.batches import digest, manifest
from framefleet.coordinator.config import Clock
from framefleet.coordinator.named_outputs import destination_of, name_outputs
from framefleet.coordinator.store.areas import Batches
from framefleet.core.naming import sanitise

log = logging.getLogger("framefleet.coordinator")

INTERVAL_SECONDS = 0.5


async def finish_once(store: Batches, clock: Clock) -> list[str]:
    finished = []
    for batch_id in await store.ended_batches():
        batch = await store.get_batch(batch_id)
        jobs = await store.batch_jobs(batch_id)
        if batch is None or not jobs:
            continue
        # Rows served from the cache at submit get their names here (rendered rows got theirs
        # as they completed), before the manifest says the batch is done.
        await name_outputs(j for j in jobs if j.cache_hit)
        summary = digest(batch, jobs, clock())
        destination = destination_of(jobs[0])
        manifest_url = f"{destination}manifests/{batch_id}.json"  # next to the outputs
        try:
            document = manifest(batch, jobs, summary)
            await outputs.write(manifest_url, document)
            if batch.name:  # and under a name that a rerun of the same rows file overwrites
                await outputs.write(f"{destination}manifests/{sanitise(batch.name)}.json", document)
        except Exception:
            log.exception("writing the manifest failed", extra={"batch_id": batch_id})
            manifest_url = ""
        if await store.finish_batch(batch_id, clock(), json.dumps(summary), manifest_url):
            log.info(
                "batch finished",
                extra={
                    "batch_id": batch_id,
                    "summary": summary["summary"],
                    "manifest": manifest_url,
                },
            )
            finished.append(batch_id)
    return finished
