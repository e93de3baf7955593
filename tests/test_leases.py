"""The coordinator's lease logic without gRPC: a Farm on a real SQLite store, a fake clock and
fake agent sessions whose outboxes we read. Nothing sleeps; time moves when the test says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.dispatcher import dispatch_once
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.lease_reaper import reap_once
from framefleet.coordinator.sessions import Session
from framefleet.coordinator.store import JobRecord, JobState
from framefleet.coordinator.store.open import open_store
from framefleet.core import jobspec, sources
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

T0 = 1_700_000_000.0
TTL = 20.0
RETRY_BASE = 2.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def lease_farm(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Farm]:
    # Named so as not to shadow the process farm in tests/conftest.py.
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    config = CoordinatorConfig(
        lease_ttl=TTL,
        retry_base=RETRY_BASE,
        retry_cap=300.0,
        default_destination=str(tmp_path / "out"),
        clock=clock,
    )
    try:
        yield Farm(store, config)
    finally:
        await store.close()


def spec(frames: int = 5, priority: int = 0, variant: int = 0) -> pb.JobSpec:
    job = pb.JobSpec(
        template=pb.Template(html="<p>x</p>"),
        output=pb.OutputSettings(width=64, height=64, fps=10, frames=frames),
        priority=priority,
    )
    job.params.update({"variant": variant})
    return job


def drain(session: Session) -> list[pb.ConnectResponse]:
    messages = []
    while not session.outbox.empty():
        messages.append(session.outbox.get_nowait())
    return messages


def assigns(session: Session) -> list[pb.Assign]:
    messages = drain(session)
    assert all(m.WhichOneof("message") == "assign" for m in messages), messages
    return [m.assign for m in messages]


def cancels(session: Session) -> list[pb.Cancel]:
    messages = drain(session)
    assert all(m.WhichOneof("message") == "cancel" for m in messages), messages
    return [m.cancel for m in messages]


async def get(farm: Farm, job_id: str) -> JobRecord:
    record = await farm._store.get(job_id)
    assert record is not None
    return record


async def submit(farm: Farm, clock: FakeClock, n: int) -> list[str]:
    """n jobs, oldest first; the clock ticks between them so their order is unambiguous."""
    ids = []
    for variant in range(n):
        ids.append((await farm.submit(spec(variant=variant))).id)
        clock.advance(0.001)
    return ids


# --- dispatch ------------------------------------------------------------------------------


async def test_dispatch_fills_free_slots(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    a = farm._sessions.register("agent-a", slots=2)
    b = farm._sessions.register("agent-b", slots=2)
    c = farm._sessions.register("agent-c", slots=1)
    jobs = await submit(farm, clock, 7)

    assert await dispatch_once(farm) == 5
    got_a, got_b, got_c = assigns(a), assigns(b), assigns(c)
    # Each session fills its free slots; the oldest five jobs go out, the rest wait.
    ids = [[x.lease.job_id for x in got] for got in (got_a, got_b, got_c)]
    assert [len(i) for i in ids] == [2, 2, 1]
    assert sorted(j for i in ids for j in i) == sorted(jobs[:5])
    assert [farm.free_slots(s) for s in (a, b, c)] == [0, 0, 0]

    for session, got in ((a, got_a), (b, got_b), (c, got_c)):
        # The template goes once per stream; later assignments name it by key.
        assert [x.spec.HasField("template") for x in got] == [True] + [False] * (len(got) - 1)
        assert {x.source_key for x in got} == {jobspec.source_key(spec())}
        for assign in got:
            record = await get(farm, assign.lease.job_id)
            assert record.state == JobState.LEASED
            assert record.lease_owner == session.agent_id
            assert record.lease_expires_at == clock.now + TTL
            assert assign.lease.fencing_token == record.fencing_token
            assert assign.attempt == 1
            assert assign.content_key == record.content_key
            assert assign.output_url == record.output_url
            expected = spec(variant=jobs.index(assign.lease.job_id))
            assert sources.without_source(assign.spec) == sources.without_source(expected)
            assert farm.held(session)[assign.lease.job_id] == record.fencing_token

    # Every slot is taken: the last two jobs wait.
    assert await dispatch_once(farm) == 0
    queued = await farm._store.list_jobs([JobState.QUEUED], 10)
    assert {r.id for r in queued} == {jobs[5], jobs[6]}

    # A freed slot takes the next job, and only one.
    done = got_c[0]
    completed = await farm.complete(
        "agent-c", [pb.Completed(lease=done.lease, output_url="file:///c.mp4")]
    )
    assert completed
    farm.settled(c, done.lease, accepted=True)  # what the agent service does
    assert [m.WhichOneof("message") for m in drain(c)] == ["ack"]
    assert await dispatch_once(farm) == 1
    assert [x.lease.job_id for x in assigns(c)] == [jobs[5]]
    assert assigns(a) == assigns(b) == []


async def test_dispatch_with_no_work_or_no_sessions_grants_nothing(
    lease_farm: Farm, clock: FakeClock
) -> None:
    farm = lease_farm
    (job,) = await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 0  # no agents
    a = farm._sessions.register("agent-a", slots=3)
    assert await dispatch_once(farm) == 1
    assert [x.lease.job_id for x in assigns(a)] == [job]
    assert await dispatch_once(farm) == 0  # no more work
    assert farm.free_slots(a) == 2


async def test_draining_session_gets_nothing(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    draining = farm._sessions.register("agent-draining", slots=4)
    draining.draining = True
    jobs = await submit(farm, clock, 3)

    assert await dispatch_once(farm) == 0
    assert drain(draining) == []
    assert len(await farm._store.list_jobs([JobState.QUEUED], 10)) == 3

    healthy = farm._sessions.register("agent-healthy", slots=2)
    assert await dispatch_once(farm) == 2
    assert drain(draining) == []
    assert farm.held(draining) == {}
    assert [x.lease.job_id for x in assigns(healthy)] == jobs[:2]
    assert await farm._store.leases_of("agent-draining") == []


# --- lease expiry --------------------------------------------------------------------------


async def test_reaper_requeues_expired_lease_and_cancels_the_holder(
    lease_farm: Farm, clock: FakeClock
) -> None:
    farm = lease_farm
    holder = farm._sessions.register("agent-a", slots=1)
    (job,) = await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 1
    (first,) = assigns(holder)
    granted_at = clock.now

    # Not yet past the TTL: nothing happens.
    clock.now = granted_at + TTL - 0.5
    assert await reap_once(farm) == 0
    assert (await get(farm, job)).state == JobState.LEASED
    assert drain(holder) == []

    clock.now = granted_at + TTL + 1
    assert await reap_once(farm) == 1
    record = await get(farm, job)
    assert record.state == JobState.QUEUED
    assert record.error_class == ErrorClass.LEASE_EXPIRED
    assert record.attempt == 1
    # An expired lease's retry backs off like any other.
    assert clock.now + RETRY_BASE * 0.5 <= record.available_at <= clock.now + RETRY_BASE
    # The still-connected holder is told to stop, naming the lease it held.
    (cancel,) = cancels(holder)
    assert cancel.lease.job_id == job
    assert cancel.lease.fencing_token == first.lease.fencing_token
    assert cancel.reason == "lease expired"
    assert farm.held(holder) == {}
    assert await reap_once(farm) == 0

    # A holder whose lease expired stopped heartbeating: no work until it speaks again.
    assert farm.is_silent(holder)
    assert await dispatch_once(farm) == 0
    farm.heard_from(holder)  # what the agent service does on the holder's next message

    # The job goes out again, after its backoff, with a bigger token; the old holder's token
    # is stale.
    assert await dispatch_once(farm) == 0
    clock.now = record.available_at
    assert await dispatch_once(farm) == 1
    (second,) = assigns(holder)
    assert second.lease.job_id == job
    assert second.lease.fencing_token > first.lease.fencing_token
    assert second.attempt == 2
    stale = await farm.complete(
        "agent-a", [pb.Completed(lease=first.lease, output_url="file:///z.mp4")]
    )
    assert stale == []
    assert (await get(farm, job)).state == JobState.LEASED


async def test_reaper_handles_a_disconnected_holder(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    holder = farm._sessions.register("agent-a", slots=1)
    (job,) = await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 1
    (first,) = assigns(holder)
    farm._sessions.unregister(holder)

    clock.advance(TTL + 1)
    assert await reap_once(farm) == 1
    assert drain(holder) == []  # nobody to tell
    clock.advance(RETRY_BASE)
    other = farm._sessions.register("agent-b", slots=1)
    assert await dispatch_once(farm) == 1
    (second,) = assigns(other)
    assert second.lease.job_id == job
    assert second.lease.fencing_token > first.lease.fencing_token
    assert (await get(farm, job)).lease_owner == "agent-b"


async def test_renewed_lease_is_not_reaped(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    holder = farm._sessions.register("agent-a", slots=1)
    (job,) = await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 1
    (assign,) = assigns(holder)

    clock.advance(TTL - 1)
    assert await farm.renew("agent-a", [(job, assign.lease.fencing_token)]) == {job}
    clock.advance(TTL - 1)
    assert await reap_once(farm) == 0
    assert (await get(farm, job)).state == JobState.LEASED
    assert drain(holder) == []
    clock.advance(2)
    assert await reap_once(farm) == 1


# --- retries -------------------------------------------------------------------------------


async def test_retryable_failure_backs_off_before_redispatch(
    lease_farm: Farm, clock: FakeClock
) -> None:
    farm = lease_farm
    session = farm._sessions.register("agent-a", slots=1)
    await submit(farm, clock, 1)
    token = 0
    for attempt in (1, 2):
        assert await dispatch_once(farm) == 1
        (assign,) = assigns(session)
        assert assign.attempt == attempt
        assert assign.lease.fencing_token > token
        token = assign.lease.fencing_token

        failed_at = clock.now
        failed = await farm.fail(
            "agent-a",
            pb.Failed(
                lease=assign.lease,
                error_class=ErrorClass.BROWSER_CRASHED,
                message="chromium died",
                retryable=True,
            ),
        )
        assert failed is not None
        assert failed.state == JobState.QUEUED
        assert failed.error_class == ErrorClass.BROWSER_CRASHED
        delay = RETRY_BASE * 2 ** (attempt - 1)
        assert failed_at + delay * 0.5 <= failed.available_at <= failed_at + delay
        # What the agent service does when it acknowledges a Failed.
        farm.settled(session, assign.lease, accepted=True)
        drain(session)

        # Not before the backoff has run out...
        assert await dispatch_once(farm) == 0
        clock.now = failed.available_at - 0.01
        assert await dispatch_once(farm) == 0
        assert drain(session) == []
        # ...but as soon as it has.
        clock.now = failed.available_at

    assert await dispatch_once(farm) == 1
    (last,) = assigns(session)
    assert last.attempt == 3
    # The third and last attempt fails for good.
    dead = await farm.fail(
        "agent-a", pb.Failed(lease=last.lease, error_class=ErrorClass.ENCODE_ERROR, retryable=True)
    )
    assert dead is not None
    assert dead.state == JobState.FAILED
    assert dead.error_class == ErrorClass.ENCODE_ERROR


async def test_non_retryable_failure_fails_at_once(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    session = farm._sessions.register("agent-a", slots=1)
    await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 1
    (assign,) = assigns(session)
    failed = await farm.fail(
        "agent-a",
        pb.Failed(
            lease=assign.lease,
            error_class=ErrorClass.TEMPLATE_SCRIPT_ERROR,
            message="ReferenceError: x is not defined",
            retryable=False,
        ),
    )
    assert failed is not None
    assert failed.state == JobState.FAILED
    assert failed.finished_at == clock.now
    assert failed.error_message == "ReferenceError: x is not defined"
    farm.settled(session, assign.lease, accepted=True)
    drain(session)
    clock.advance(10_000)
    assert await dispatch_once(farm) == 0


async def test_the_coordinator_classifies_failures_not_the_agent(
    lease_farm: Farm, clock: FakeClock
) -> None:
    farm = lease_farm
    session = farm._sessions.register("agent-a", slots=1)
    await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 1
    (assign,) = assigns(session)
    # The agent says "retry", but a broken template never renders: failed at once. The enum is
    # what counts (the string is for coordinators that predate it).
    claims_retryable = pb.Failed(
        lease=assign.lease,
        error=pb.ERROR_CLASS_TEMPLATE_LOAD_ERROR,
        error_class=ErrorClass.CAPTURE_TIMEOUT,
        retryable=True,
    )
    failed = await farm.fail("agent-a", claims_retryable)
    assert failed is not None
    assert (failed.state, failed.error_class) == (JobState.FAILED, ErrorClass.TEMPLATE_LOAD_ERROR)
    farm.settled(session, assign.lease, accepted=True)
    drain(session)
    clock.advance(10_000)
    assert await dispatch_once(farm) == 0


async def test_failure_with_stale_token_changes_nothing(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    session = farm._sessions.register("agent-a", slots=1)
    (job,) = await submit(farm, clock, 1)
    assert await dispatch_once(farm) == 1
    (assign,) = assigns(session)
    before = await get(farm, job)
    stale = pb.LeaseRef(job_id=job, fencing_token=assign.lease.fencing_token + 1)
    failed = pb.Failed(lease=stale, error_class="INTERNAL", retryable=True)
    assert await farm.fail("agent-a", failed) is None
    assert await farm.fail("agent-a", pb.Failed(lease=pb.LeaseRef(job_id="missing"))) is None
    # The right token from another agent is refused too.
    stolen = pb.Failed(lease=assign.lease, error_class="INTERNAL", retryable=True)
    assert await farm.fail("agent-b", stolen) is None
    assert await get(farm, job) == before


# --- cancel --------------------------------------------------------------------------------


async def test_cancel_leased_job_tells_the_holder(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    holder = farm._sessions.register("agent-a", slots=1)
    bystander = farm._sessions.register("agent-b", slots=1)
    jobs = await submit(farm, clock, 2)
    assert await dispatch_once(farm) == 2
    (assign,) = assigns(holder)
    target = assign.lease.job_id
    assert target in jobs
    assigns(bystander)

    clock.advance(3)
    after = await farm.cancel(target)
    assert after is not None
    assert after.state == JobState.CANCELLED
    assert after.finished_at == clock.now
    (cancel,) = cancels(holder)
    assert cancel.lease == assign.lease
    assert farm.held(holder) == {}
    assert drain(bystander) == []

    # The holder is fenced: its result is refused and the job stays cancelled.
    late = await farm.complete(
        "agent-a", [pb.Completed(lease=assign.lease, output_url="file:///a.mp4")]
    )
    assert late == []
    assert (await get(farm, target)).state == JobState.CANCELLED
    # Its slot is free again, but a cancelled job is never handed out.
    assert await dispatch_once(farm) == 0


async def test_cancel_queued_and_finished_jobs(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    queued = await farm.submit(spec())
    after = await farm.cancel(queued.id)
    assert after is not None
    assert after.state == JobState.CANCELLED

    session = farm._sessions.register("agent-a", slots=1)
    assert await dispatch_once(farm) == 0  # the cancelled job is not dispatched
    assert await farm.cancel("missing") is None

    done = await farm.submit(spec())
    assert await dispatch_once(farm) == 1
    (assign,) = assigns(session)
    completed = await farm.complete(
        "agent-a", [pb.Completed(lease=assign.lease, output_url="file:///d.mp4")]
    )
    assert completed
    result = await farm.cancel(done.id)
    assert result is not None
    assert result.state == JobState.SUCCEEDED
    assert drain(session) == []
    assert [await get(farm, done.id)] == completed


# --- submit --------------------------------------------------------------------------------


async def test_submit_queues_a_valid_job(lease_farm: Farm, clock: FakeClock) -> None:
    record = await lease_farm.submit(spec(frames=5, priority=3))
    assert record.state == JobState.QUEUED
    assert record.frames_total == 5
    assert record.priority == 3
    assert record.max_attempts == 3
    assert record.created_at == record.available_at == clock.now
    assert record.output_url.startswith("file://")
    assert record.output_url.endswith(f"{record.content_key}.mp4")
    # The source is stored once, apart from the job.
    full = spec(frames=5, priority=3)
    assert pb.JobSpec.FromString(record.spec) == sources.without_source(full)
    assert record.source_key == jobspec.source_key(full)
    assert await lease_farm._store.get_source(record.source_key) == (
        sources.source_only(full).SerializeToString()
    )


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            pb.JobSpec(
                template=pb.Template(html="<p>x</p>"),
                output=pb.OutputSettings(width=65, height=64, fps=10, frames=5),
            ),
            id="odd-width",
        ),
        pytest.param(
            pb.JobSpec(
                template=pb.Template(html="<p>x</p>"),
                output=pb.OutputSettings(width=64, height=64, fps=10, duration_seconds=0),
            ),
            id="zero-duration",
        ),
        pytest.param(
            pb.JobSpec(output=pb.OutputSettings(width=64, height=64, fps=10, frames=5)),
            id="no-source",
        ),
    ],
)
async def test_submit_rejects_invalid_specs(lease_farm: Farm, bad: pb.JobSpec) -> None:
    with pytest.raises(FramefleetError) as raised:
        await lease_farm.submit(bad)
    assert raised.value.error_class == ErrorClass.INVALID_JOB
    assert await lease_farm._store.list_jobs([], 10) == []
    assert not lease_farm._leases.woken
