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
from typing import NamedTuple

from framefleet.coordinator.config import Clock
from framefleet.coordinator.sessions import Session
from framefleet.v1 import framefleet_pb2 as pb

# A timed wake fires this much after the job's available_at, so that the claim (which compares
# with the clock then) surely finds it claimable.
WAKE_MARGIN_SECONDS = 0.001


class Granted(NamedTuple):
    token: int
    at: float  # when it was granted (or kept), by the clock
    parent_id: str | None  # a chunk's job: its watchers see the chunk's progress


class LeaseBook:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        # session -> job id -> its lease; a session's entry goes with it, a lease's when the
        # agent is done with it or it is taken away: no entry outlives the stream.
        self._held: weakref.WeakKeyDictionary[Session, dict[str, Granted]] = (
            weakref.WeakKeyDictionary()
        )
        # Sessions one of whose leases expired: they stopped heartbeating (frozen,
        # partitioned) and get no work until they speak again.
        self._silent: weakref.WeakSet[Session] = weakref.WeakSet()
        # Sessions whose Hello's leases are not counted yet: no work until they are, or an
        # agent could be handed more than its slots.
        self._joining: weakref.WeakSet[Session] = weakref.WeakSet()
        self._work = asyncio.Event()

    # --- the work signal -------------------------------------------------------------------

    def wake(self) -> None:
        """There may be work to hand out: a submit, a requeue, a freed slot, a new agent."""
        self._work.set()

    def wake_at(self, when: float) -> None:
        """Work becomes claimable at ``when`` (the clock's time; a retry's backoff ends then):
        wake then, not on the dispatcher's next tick. Work another coordinator made claimable
        is not known here; the tick finds it."""
        delay = when - self._clock()
        if delay <= 0:
            self.wake()
        else:
            asyncio.get_running_loop().call_later(delay + WAKE_MARGIN_SECONDS, self.wake)

    async def wait_for_work(self, tick: float) -> None:
        """Until woken or ``tick`` seconds pass; then the signal is taken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), tick)
        self._work.clear()

    @property
    def woken(self) -> bool:
        return self._work.is_set()

    # --- per session -----------------------------------------------------------------------

    def _leases(self, session: Session) -> dict[str, Granted]:
        return self._held.setdefault(session, {})

    def held(self, session: Session) -> dict[str, int]:
        """The leases granted on this stream: job id -> fencing token."""
        return {job_id: granted.token for job_id, granted in self._leases(session).items()}

    def parent_of(self, session: Session, job_id: str) -> str | None:
        """The job a chunk leased on this stream belongs to (None: not a chunk, not held)."""
        granted = self._leases(session).get(job_id)
        return None if granted is None else granted.parent_id

    def free_slots(self, session: Session) -> int:
        if session.draining or session in self._silent or session in self._joining:
            return 0
        return max(0, session.slots - len(self._leases(session)))

    def grant(
        self, session: Session, job_id: str, token: int, parent_id: str | None = None
    ) -> None:
        """The dispatcher assigned this lease on this stream."""
        self._leases(session)[job_id] = Granted(token, self._clock(), parent_id)

    def joining(self, session: Session) -> None:
        """A new stream: it takes no work until ``joined`` (its reported leases kept)."""
        self._joining.add(session)

    def joined(self, session: Session) -> None:
        """The stream's reported leases are counted: its free slots may take work."""
        self._joining.discard(session)
        self.wake()

    def keep(self, session: Session, job_id: str, token: int, parent_id: str | None = None) -> None:
        """A reconnecting agent reported a lease the store agrees it holds."""
        self.grant(session, job_id, token, parent_id)

    def settle(self, session: Session, lease: pb.LeaseRef, accepted: bool) -> None:
        """The agent is done with a lease (completed, failed, handed back): the slot is free,
        the agent gets its acknowledgement, and the dispatcher may fill the slot."""
        held = self._leases(session).get(lease.job_id)
        if held is not None and held.token == lease.fencing_token:
            del self._leases(session)[lease.job_id]
        session.send(pb.ConnectResponse(ack=pb.Ack(lease=lease, accepted=accepted)))
        self.wake()

    def cancel(self, session: Session, job_id: str, token: int, reason: str) -> None:
        """The lease is no longer the agent's (cancelled, expired, stale): it drops the job."""
        self._leases(session).pop(job_id, None)
        lease = pb.LeaseRef(job_id=job_id, fencing_token=token)
        session.send(pb.ConnectResponse(cancel=pb.Cancel(lease=lease, reason=reason)))

    def forget(self, session: Session) -> None:
        """The stream ended: its leases are the store's to settle now (the agent reconnects
        with them, or they expire). The session may live on (the console lists the last
        ones gone), its leases here must not."""
        self._held.pop(session, None)
        self._silent.discard(session)
        self._joining.discard(session)

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
            (job_id, granted.token)
            for job_id, granted in leases.items()
            if job_id not in reported and granted.at < cutoff
        ]
        for job_id, _ in lost:
            del leases[job_id]
        return lost
