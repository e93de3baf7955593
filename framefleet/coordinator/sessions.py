"""Connected agents: one session per agent stream (its leases are in lease_book.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from framefleet.core.source_cache import HeldSources
from framefleet.v1 import framefleet_pb2 as pb

# Agents whose stream ended are remembered (newest first) so the console can show them.
GONE_KEPT = 20


@dataclass(eq=False)  # one per stream, compared by identity
class Session:
    agent_id: str
    slots: int
    epoch: int
    # The agent said it is draining (a spot notice, SIGTERM): it takes no new work.
    draining: bool = False
    outbox: asyncio.Queue[pb.ConnectResponse] = field(default_factory=asyncio.Queue)
    # Sources sent on this stream that the agent still holds for later jobs (its ledger's
    # mirror: framefleet/core/source_cache.py).
    sources_held: HeldSources = field(default_factory=HeldSources)
    handler: asyncio.Task[object] | None = None
    # Closed because a newer stream of the same agent took over.
    replaced: bool = False
    # What the console shows: the labels of its Hello (version), when it last spoke.
    labels: dict[str, str] = field(default_factory=dict)
    last_seen: float = 0.0

    def send(self, message: pb.ConnectResponse) -> None:
        self.outbox.put_nowait(message)


class Sessions:
    def __init__(self) -> None:
        self._by_agent: dict[str, Session] = {}
        self._epochs: dict[str, int] = {}
        self._turn = 0
        self._gone: dict[str, Session] = {}  # agent id -> its last session, once it ended
        self._joined = asyncio.Event()  # set (and replaced) whenever an agent registers

    async def close_previous(self, agent_id: str) -> None:
        """Closes the stream an agent id already has and waits until it has ended (and
        unregistered), so that a new stream never overlaps the old one's leases."""
        while (old := self._by_agent.get(agent_id)) is not None:
            if old.handler is None or old.handler is asyncio.current_task():
                return
            old.replaced = True
            old.handler.cancel()
            await asyncio.wait([old.handler])
            if self._by_agent.get(agent_id) is old:  # it ended without unregistering
                del self._by_agent[agent_id]

    def register(self, agent_id: str, slots: int) -> Session:
        """A new stream for an agent id starts a new epoch and fences the old session."""
        old = self._by_agent.get(agent_id)
        if old is not None and old.handler is not None:
            old.handler.cancel()
        epoch = self._epochs.get(agent_id, 0) + 1
        self._epochs[agent_id] = epoch
        session = Session(agent_id, slots, epoch, handler=asyncio.current_task())
        self._by_agent[agent_id] = session
        self._gone.pop(agent_id, None)
        joined, self._joined = self._joined, asyncio.Event()
        joined.set()
        return session

    async def wait_for(self, count: int) -> None:
        """Until at least ``count`` agents are connected."""
        while len(self._by_agent) < count:
            await self._joined.wait()

    def unregister(self, session: Session) -> None:
        if self._by_agent.get(session.agent_id) is session:
            del self._by_agent[session.agent_id]
            if not session.replaced:
                self._gone.pop(session.agent_id, None)
                self._gone[session.agent_id] = session
                while len(self._gone) > GONE_KEPT:
                    del self._gone[next(iter(self._gone))]

    def gone(self) -> list[Session]:
        """The last session of agents that disconnected and did not come back, newest first."""
        return list(reversed(self._gone.values()))

    def get(self, agent_id: str | None) -> Session | None:
        return None if agent_id is None else self._by_agent.get(agent_id)

    def all(self) -> list[Session]:
        return list(self._by_agent.values())

    def rotated(self) -> list[Session]:
        """All sessions, starting one further along on each call, so that work arriving one
        job at a time is spread over agents instead of filling the first one."""
        sessions = self.all()
        if not sessions:
            return sessions
        self._turn = (self._turn + 1) % len(sessions)
        return sessions[self._turn :] + sessions[: self._turn]
