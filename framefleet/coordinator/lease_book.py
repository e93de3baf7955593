"""The coordinator's one record of the leases each connected agent holds, and the one signal
that there may be work to hand out.

The store is the truth about leases; this book is the coordinator's view of each agent stream:
which leases it granted on it (so slots are counted and lost assignments noticed), which
agents went silent, and when the dispatcher should look for work. The dispatcher grants, the
agent service keeps, renews and settles, the reaper marks silent, a cancel fences; nothing
else changes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Collection

from framefleet.coordinator.config import Clock
from framefleet.coordinator.sessions import Session
from framefleet.v1 import framefleet_pb2 as pb


class LeaseBook:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        # session -> job id -> (fencing token, time granted); a session's entry goes with it.
        self._held: weakref.WeakKeyDictionary[Session, dict[str, tuple[int, float]]] = (
            weakref.WeakKeyDictionary()
        )
        # Sessions one of whose leases expired: they stopped heartbeating (frozen,
        # partitioned) and get no work until they speak again.
        self._silent: weakref.WeakSet[Session] = weakref.WeakSet()
        self._work = asyncio.Event()

    # --- the work signal -------------------------------------------------------------------

    def wake(self) -> None:
        """There may be work to hand out: a submit, a requeue, a freed slot, a new agent."""
        self._work.set()

    async def wait_for_work(self, tick: float) -> None:
        """Until woken or ``tick`` seconds pass; then the signal is taken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), tick)
        self._work.clear()

    @property
    def woken(self) -> bool:
        return self._work.is_set()

    # --- per session -----------------------------------------------------------------------

    def _leases(self, session: Session) -> dict[str, tuple[int, float]]:
        return self._held.setdefault(session, {})

    def held(self, session: Session) -> dict[str, int]:
        """The leases granted on this stream: job id -> fencing token."""
        return {job_id: token for job_id, (token, _) in self._leases(session).items()}

    def free_slots(self, session: Session) -> int:
        if session.draining or session in self._silent:
            return 0
        return max(0, session.slots - len(self._leases(session)))

    def grant(self, session: Session, job_id: str, token: int) -> None:
        """The dispatcher assigned this lease on this stream."""
        self._leases(session)[job_id] = (token, self._clock())

    def keep(self, session: Session, job_id: str, token: int) -> None:
        """A reconnecting agent reported a lease the store agrees it holds."""
        self.grant(session, job_id, token)

    def settle(self, session: Session, lease: pb.LeaseRef, accepted: bool) -> None:
        """The agent is done with a lease (completed, failed, handed back): the slot is free,
        the agent gets its acknowledgement, and the dispatcher may fill the slot."""
        held = self._leases(session).get(lease.job_id)
        if held is not None and held[0] == lease.fencing_token:
            del self._leases(session)[lease.job_id]
        session.send(pb.ConnectResponse(ack=pb.Ack(lease=lease, accepted=accepted)))
        self.wake()

    def cancel(self, session: Session, job_id: str, token: int, reason: str) -> None:
        """The lease is no longer the agent's (cancelled, expired, stale): it drops the job."""
        self._leases(session).pop(job_id, None)
        lease = pb.LeaseRef(job_id=job_id, fencing_token=token)
        session.send(pb.ConnectResponse(cancel=pb.Cancel(lease=lease, reason=reason)))

    def mark_silent(self, session: Session) -> None:
        self._silent.add(session)

    def is_silent(self, session: Session) -> bool:
        return session in self._silent

    def heard_from(self, session: Session) -> None:
        """The agent spoke: if it was silent, it may take work again."""
        if session in self._silent:
            self._silent.discard(session)
            self.wake()

    def lost_in_transit(
        self, session: Session, reported: Collection[str], grace: float
    ) -> list[tuple[str, int]]:
        """Leases granted more than ``grace`` seconds ago that the agent's heartbeat does not
        list: the Assign never arrived. They leave the book; the caller requeues them."""
        cutoff = self._clock() - grace
        leases = self._leases(session)
        lost = [
            (job_id, token)
            for job_id, (token, granted_at) in leases.items()
            if job_id not in reported and granted_at < cutoff
        ]
        for job_id, _ in lost:
            del leases[job_id]
        return lost
