"""The retry policy: the one place that decides, for every way an attempt can end without
success, whether the job gets another attempt and when.

Outcomes: an agent's failure (classified here by its error class; the agent's own
``retryable`` flag is not trusted), a lease that expired, a lease an agent lost by restarting,
an interruption (a draining agent handing the job back, with its own budget) and a plain
hand-back (an assignment lost in transit). Each yields a ``Transition`` that the store applies
only while the lease is still held by the same owner with the same token, so the store holds no
policy and changing the policy is an edit to this file alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.store.base import JobRecord, JobState, Transition
from framefleet.core.backoff import Backoff
from framefleet.core.errors import RETRYABLE, ErrorClass


def classify(error_class: str) -> ErrorClass:
    """The error class an agent reported; anything unknown is INTERNAL."""
    try:
        return ErrorClass(error_class)
    except ValueError:
        return ErrorClass.INTERNAL


# The coordinator's defaults (CoordinatorConfig, where each is written once).
DEFAULT_BACKOFF = Backoff(base=CoordinatorConfig.retry_base, cap=CoordinatorConfig.retry_cap)


@dataclass(frozen=True)
class RetryPolicy:
    backoff: Backoff = DEFAULT_BACKOFF
    # Hand-backs by draining agents a job may take before it fails as INTERRUPTED.
    max_interruptions: int = CoordinatorConfig.max_interruptions
    # Failures another attempt may fix; the others (a broken template) fail the job at once.
    retryable: frozenset[ErrorClass] = field(default=RETRYABLE)

    @classmethod
    def from_config(cls, config: CoordinatorConfig) -> RetryPolicy:
        return cls(Backoff(config.retry_base, config.retry_cap), config.max_interruptions)

    def failed(self, job: JobRecord, error_class: str, message: str, now: float) -> Transition:
        """The agent reported a failure."""
        klass = classify(error_class)
        return self._retry_or_fail(job, klass, message, now, klass in self.retryable)

    def expired(self, job: JobRecord, now: float) -> Transition:
        """The holder stopped heartbeating; the attempt counts, and the retry backs off like
        any other (a job that freezes its agent must not spin through the fleet)."""
        message = f"lease expired: agent {job.lease_owner} stopped heartbeating"
        return self._retry_or_fail(job, ErrorClass.LEASE_EXPIRED, message, now, True)

    def agent_lost(self, job: JobRecord, now: float) -> Transition:
        """The holder came back without the job (it restarted): the attempt counts, so a job
        that keeps killing its agent runs out of attempts."""
        message = f"agent {job.lease_owner} restarted without this job"
        return self._retry_or_fail(job, ErrorClass.AGENT_LOST, message, now, True)

    def interrupted(self, job: JobRecord, now: float) -> Transition:
        """A draining agent (spot notice, scale-in) handed the job back: no attempt is spent,
        but past the interruption budget the job fails."""
        count = job.interruptions + 1
        if count > self.max_interruptions:
            message = f"handed back by draining agents {count} times"
            return Transition(
                JobState.FAILED, now, ErrorClass.INTERRUPTED, message, False, interruption=True
            )
        return Transition(JobState.QUEUED, now, spends_attempt=False, interruption=True)

    def handed_back(self, job: JobRecord, now: float) -> Transition:
        """The assignment never reached the agent: requeued at once, nothing counted."""
        return Transition(JobState.QUEUED, now, spends_attempt=False)

    def _retry_or_fail(
        self, job: JobRecord, klass: ErrorClass, message: str, now: float, retry: bool
    ) -> Transition:
        if retry and job.attempt < job.max_attempts:
            return Transition(
                JobState.QUEUED, now + self.backoff.delay(job.attempt), klass, message
            )
        return Transition(JobState.FAILED, now, klass, message)
