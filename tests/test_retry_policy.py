"""The retry policy on its own (pure decisions), and swapped into a Farm: the decision it
makes is what the store applies, so changing the policy is an edit in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.dispatcher import dispatch_once
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.lease_reaper import reap_once
from framefleet.coordinator.retry_policy import RetryPolicy
from framefleet.coordinator.store import JobRecord, JobState, JobStore, Transition
from framefleet.coordinator.store.open import open_store
from framefleet.core.backoff import Backoff
from framefleet.core.errors import ErrorClass
from framefleet.v1 import framefleet_pb2 as pb
from tests.test_leases import FakeClock, assigns, spec

T0 = 1_700_000_000.0


def leased(attempt: int = 1, max_attempts: int = 3, interruptions: int = 0) -> JobRecord:
    return JobRecord(
        id="j",
        state=JobState.LEASED,
        spec=b"",
        content_key="k",
        output_url="file:///k.mp4",
        frames_total=1,
        priority=0,
        max_attempts=max_attempts,
        created_at=T0,
        available_at=T0,
        attempt=attempt,
        lease_owner="agent-a",
        fencing_token=1,
        interruptions=interruptions,
    )


POLICY = RetryPolicy(Backoff(base=2.0, cap=300.0), max_interruptions=2)


def test_backoff_doubles_with_jitter_in_its_upper_half_and_a_cap() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    for retry in range(1, 12):
        ceiling = min(300.0, 2.0 * 2 ** (retry - 1))
        assert backoff.ceiling(retry) == ceiling
        samples = [backoff.delay(retry) for _ in range(200)]
        assert all(ceiling * 0.5 <= s <= ceiling for s in samples), (retry, min(samples))
        assert len(set(samples)) > 1, "jittered"
    assert backoff.delay(50) <= 300.0


@pytest.mark.parametrize(
    ("error_class", "retried"),
    [
        (ErrorClass.BROWSER_CRASHED, True),
        (ErrorClass.OUTPUT_ERROR, True),
        ("SOMETHING_NEW", True),  # unknown classes are INTERNAL: retried
        (ErrorClass.TEMPLATE_SCRIPT_ERROR, False),
        (ErrorClass.TEMPLATE_LOAD_ERROR, False),
    ],
)
def test_failures_are_classified_by_error_class(error_class: str, retried: bool) -> None:
    decision = POLICY.failed(leased(attempt=1), error_class, "boom", T0)
    assert decision.state == (JobState.QUEUED if retried else JobState.FAILED)
    assert decision.error_message == "boom"
    if retried:
        assert T0 + 1.0 <= decision.available_at <= T0 + 2.0
    # Out of attempts, nothing is retried.
    last = POLICY.failed(leased(attempt=3), error_class, "boom", T0)
    assert last.state == JobState.FAILED
    assert last.spends_attempt and not last.interruption


def test_unknown_error_classes_are_recorded_as_internal() -> None:
    assert POLICY.failed(leased(), "NOPE", "x", T0).error_class == ErrorClass.INTERNAL


def test_expired_and_lost_leases_spend_the_attempt_and_back_off() -> None:
    for decide, klass in (
        (POLICY.expired, ErrorClass.LEASE_EXPIRED),
        (POLICY.agent_lost, ErrorClass.AGENT_LOST),
    ):
        retry = decide(leased(attempt=2), T0)
        assert (retry.state, retry.error_class, retry.spends_attempt) == (
            JobState.QUEUED,
            klass,
            True,
        )
        assert T0 + 2.0 <= retry.available_at <= T0 + 4.0
        assert "agent-a" in (retry.error_message or "")
        assert decide(leased(attempt=3), T0).state == JobState.FAILED


def test_interruptions_have_their_own_budget() -> None:
    first = POLICY.interrupted(leased(attempt=3, interruptions=0), T0)
    assert first == Transition(JobState.QUEUED, T0, spends_attempt=False, interruption=True)
    over = POLICY.interrupted(leased(interruptions=2), T0)
    assert (over.state, over.error_class, over.interruption) == (
        JobState.FAILED,
        ErrorClass.INTERRUPTED,
        True,
    )
    assert over.error_message == "handed back by draining agents 3 times"
    # A hand-back that never reached the agent counts nothing.
    back = POLICY.handed_back(leased(attempt=3), T0)
    assert back == Transition(JobState.QUEUED, T0, spends_attempt=False)


# --- a swapped policy through a Farm -------------------------------------------------------


@dataclass(frozen=True)
class PatientPolicy(RetryPolicy):
    """A different policy: a crashed browser is never retried, an expired lease is retried a
    minute later and without spending the attempt."""

    def failed(self, job: JobRecord, error_class: str, message: str, now: float) -> Transition:
        if error_class == ErrorClass.BROWSER_CRASHED:
            return Transition(JobState.FAILED, now, error_class, message)
        return super().failed(job, error_class, message, now)

    def expired(self, job: JobRecord, now: float) -> Transition:
        return replace(super().expired(job, now), available_at=now + 60, spends_attempt=False)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("policy", [None, PatientPolicy()], ids=["default", "patient"])
async def test_a_swapped_policy_changes_what_happens(
    store: JobStore, tmp_path: Path, policy: RetryPolicy | None
) -> None:
    clock = FakeClock(T0)
    config = CoordinatorConfig(lease_ttl=20.0, default_destination=str(tmp_path), clock=clock)
    farm = Farm(store, config, policy)
    session = farm._sessions.register("agent-a", slots=2)
    crashes = (await farm.submit(spec(variant=1))).id
    freezes = (await farm.submit(spec(variant=2))).id
    assert await dispatch_once(farm) == 2
    leases = {a.lease.job_id: a.lease for a in assigns(session)}

    crashed = pb.Failed(lease=leases[crashes], error_class=ErrorClass.BROWSER_CRASHED)
    after_crash = await farm.fail("agent-a", crashed)
    clock.advance(21)
    assert await reap_once(farm) == 1
    after_expiry = await store.get(freezes)
    assert after_crash is not None and after_expiry is not None

    if policy is None:
        assert after_crash.state == JobState.QUEUED
        assert after_expiry.attempt == 1
        assert after_expiry.available_at <= clock.now + 2.0
    else:
        assert after_crash.state == JobState.FAILED
        assert after_expiry.attempt == 0
        assert after_expiry.available_at == clock.now + 60
    assert after_expiry.state == JobState.QUEUED
