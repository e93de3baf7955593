"""In-process fan-out of job updates to WatchJob streams."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from framefleet.v1 import framefleet_pb2 as pb


class JobEvents:
    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[asyncio.Queue[pb.WatchJobResponse]]] = defaultdict(set)

    def publish(self, job: pb.Job, fps: float = 0.0) -> None:
        for queue in self._watchers.get(job.id, ()):
            queue.put_nowait(pb.WatchJobResponse(job=job, fps=fps))

    def watched(self, job_id: str) -> bool:
        return job_id in self._watchers

    def subscribe(self, job_id: str) -> asyncio.Queue[pb.WatchJobResponse]:
        queue: asyncio.Queue[pb.WatchJobResponse] = asyncio.Queue()
        self._watchers[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[pb.WatchJobResponse]) -> None:
        watchers = self._watchers.get(job_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[job_id]
