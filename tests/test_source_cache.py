"""The agent's sources are bounded: both ends keep one ledger of what the agent holds
(framefleet/core/source_cache.py), so an agent given a long run of distinct templates keeps only
the newest, and a coordinator sends a source again once the agent has dropped it. Driven through
the dispatcher's own assignment code and the agent's own executor."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from framefleet.agent.executor import JobExecutor
from framefleet.coordinator import dispatcher
from framefleet.coordinator.sessions import Session
from framefleet.coordinator.store import JobRecord, JobState
from framefleet.core import source_cache, sources
from framefleet.core.source_cache import HeldSources
from framefleet.v1 import framefleet_pb2 as pb


class FakeFarm:
    """What the dispatcher's assignment asks of the Farm: a lease grant and a stored source."""

    def __init__(self, stored: dict[str, pb.JobSpec]) -> None:
        self.stored = stored
        self.fetched: list[str] = []

    def grant(self, session: Session, job_id: str, token: int) -> None:
        pass

    async def source(self, key: str) -> pb.JobSpec:
        self.fetched.append(key)
        return self.stored[key]


async def assign(farm: FakeFarm, session: Session, job: JobRecord) -> pb.Assign:
    """The dispatcher's own Assign for ``job`` on ``session`` (the Farm faked)."""
    return await dispatcher._assignment(cast(Any, farm), session, job)


def template(n: int) -> pb.JobSpec:
    return pb.JobSpec(template=pb.Template(html=f"<p>template {n}</p>" + "x" * 1000))


def record(n: int, key: str, spec: pb.JobSpec) -> JobRecord:
    rest = sources.without_source(spec)
    rest.output.frames = 1
    return JobRecord(
        id=f"job-{n}", state=JobState.LEASED, spec=rest.SerializeToString(),
        content_key=f"c{n}", output_url=f"file:///out/{n}.mp4", frames_total=1, priority=0,
        max_attempts=3, created_at=0, available_at=0, fencing_token=n, source_key=key,
    )  # fmt: skip


def test_the_ledger_drops_the_least_recently_used_first() -> None:
    held = HeldSources(budget=300)
    assert held.add("a", 100) == [] and held.add("b", 100) == [] and held.add("c", 100) == []
    assert held.use("a")  # a is now the newest
    assert held.add("d", 100) == ["b"]
    assert not held.use("b") and held.use("c") and held.use("a") and held.use("d")
    assert held.add("huge", 1000) == ["c", "a", "d"], "the newest stays even past the budget"
    assert len(held) == 1


async def test_an_agent_holds_a_bounded_set_and_never_misses_a_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Room for about three 1 KB templates; ten distinct ones, used over and over.
    monkeypatch.setattr(source_cache, "MAX_HELD_BYTES", 3500)
    specs = {f"s{n}": template(n) for n in range(10)}
    farm = FakeFarm({k: sources.source_only(v) for k, v in specs.items()})
    session = Session("agent-1", slots=1, epoch=1)
    sent: list[pb.ConnectRequest] = []
    agent = JobExecutor(None, sent.append, lambda: None)  # completes each job at once
    agent.stream_opened()
    order = [f"s{(n * 7) % 10 if n % 3 else n % 2}" for n in range(60)]
    for n, key in enumerate(order):
        message = await assign(farm, session, record(n, key, specs[key]))
        agent.handle(pb.ConnectResponse(assign=message))
        assert len(agent._sources) <= 4, "the agent keeps only what the ledger allows"
    outcomes = [m.WhichOneof("message") for m in sent]
    assert outcomes == ["completed"] * len(order), [m for m in sent if m.HasField("failed")]
    assert len(farm.fetched) > 10, "sources the agent had dropped were sent again"
    assert len(farm.fetched) < len(order), "sources the agent still held were not"


async def test_a_new_stream_starts_the_agents_ledger_afresh() -> None:
    specs = {"s0": template(0)}
    farm = FakeFarm({"s0": sources.source_only(specs["s0"])})
    sent: list[pb.ConnectRequest] = []
    agent = JobExecutor(None, sent.append, lambda: None)
    first = Session("agent-1", slots=1, epoch=1)
    agent.handle(pb.ConnectResponse(assign=await assign(farm, first, record(1, "s0", specs["s0"]))))
    # Another coordinator (or a reconnect) sends the source again; the agent starts over too.
    agent.stream_opened()
    assert not agent._sources
    second = Session("agent-1", slots=1, epoch=1)
    agent.handle(
        pb.ConnectResponse(assign=await assign(farm, second, record(2, "s0", specs["s0"])))
    )
    await asyncio.sleep(0)
    assert [m.WhichOneof("message") for m in sent] == ["completed", "completed"]
    assert farm.fetched == ["s0", "s0"]
