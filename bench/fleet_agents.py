"""Simulated agents for bench/fleet_sim.py: many agent streams from one process.

Each simulated agent is the real agent's stream link (``framefleet.agent.link.StreamLink``:
Hello with the leases held, the Welcome's heartbeat cadence, the full lease set in every
heartbeat, results resent until acknowledged, reconnects with the shared backoff) over its own
TLS channel with its own agent certificate, as in production. Its peer renders nothing: an
Assign is Completed after ``--render-ms``. A kill drops the stream and the channel without a
word (no Released, no drain) and forgets every job, as a killed process would; the restart is a
fresh agent with the same id.

Driven by the parent over stdin (``churn``, ``stop``); prints ``ready`` once every agent is
welcomed; on ``stop`` writes what it saw (Assign arrival times, accepted Acks) as JSON to --out.

    python bench/fleet_agents.py --trust DIR --addresses A[,B] --first 0 --count 500 --out F
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from framefleet.agent.link import Coordinator, StreamLink  # noqa: E402
from framefleet.core.backoff import Backoff  # noqa: E402
from framefleet.core.channel import Tls, open_channel  # noqa: E402
from framefleet.v1 import framefleet_pb2 as pb  # noqa: E402
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc  # noqa: E402


def agent_id(n: int) -> str:
    return f"sim-{n:05d}"


@dataclass
class Record:
    """What this process's agents saw, over all their incarnations."""

    # (job id, fencing token, wall-clock time the Assign was read)
    assigns: list[tuple[str, int, float]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    kills: int = 0
    streams: int = 0


@dataclass
class Held:
    lease: pb.LeaseRef
    task: asyncio.Task[None] | None = None
    result: pb.ConnectRequest | None = None


class SimPeer:
    """The link's Peer: completes each Assign after a simulated render."""

    def __init__(self, record: Record, render_s: float) -> None:
        self.record = record
        self.render_s = render_s
        self.jobs: dict[str, Held] = {}
        self.link: StreamLink | None = None

    @property
    def draining(self) -> bool:
        return False

    def leases(self) -> list[pb.LeaseRef]:
        return [held.lease for held in self.jobs.values()]

    def unacknowledged(self) -> list[pb.ConnectRequest]:
        return [held.result for held in self.jobs.values() if held.result is not None]

    def stream_opened(self) -> None:
        pass  # renders nothing, so keeps no sources

    def handle(self, message: pb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "bundle":
            for inner in message.bundle.messages:
                self.handle(inner)
        elif kind == "assign":
            lease = message.assign.lease
            self.record.assigns.append((lease.job_id, lease.fencing_token, time.time()))
            held = Held(pb.LeaseRef(job_id=lease.job_id, fencing_token=lease.fencing_token))
            # An assembly joins chunks: quicker than a render.
            seconds = self.render_s / 4 if message.assign.chunk_urls else self.render_s
            held.task = asyncio.get_running_loop().create_task(self._render(held, seconds))
            self.jobs[lease.job_id] = held
        elif kind == "cancel":
            held_now = self.jobs.get(message.cancel.lease.job_id)
            if held_now is not None and held_now.lease == message.cancel.lease:
                del self.jobs[held_now.lease.job_id]
                if held_now.task is not None:
                    held_now.task.cancel()
        elif kind == "ack":
            ack = message.ack
            held_now = self.jobs.get(ack.lease.job_id)
            if held_now is not None and held_now.lease == ack.lease and held_now.result:
                del self.jobs[ack.lease.job_id]
            if ack.accepted:
                self.record.accepted[ack.lease.job_id] += 1
            else:
                self.record.refused += 1

    async def _render(self, held: Held, seconds: float) -> None:
        await asyncio.sleep(seconds)
        held.result = pb.ConnectRequest(completed=pb.Completed(lease=held.lease, frames=1))
        if self.link is not None:
            self.link.send(held.result)

    def kill(self) -> None:
        for held in self.jobs.values():
            if held.task is not None:
                held.task.cancel()
        self.jobs.clear()


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.record = Record()
        self.addresses: list[str] = args.addresses.split(",")
        self.running: dict[int, tuple[asyncio.Task[None], SimPeer, StreamLink]] = {}
        # Reconnects as the real agent's, a little quicker at first: a restarted agent is back
        # within a second.
        self.backoff = Backoff(base=0.2, cap=2.0)

    def start(self, n: int) -> StreamLink:
        trust: Path = self.args.trust
        tls = Tls(trust / "ca.pem", trust / f"{agent_id(n)}.pem", trust / f"{agent_id(n)}.key")
        turn = [n % len(self.addresses)]  # agents spread over the coordinators

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[Coordinator]:
            # Each (re)connect goes to the next coordinator, as through a load balancer.
            address = self.addresses[turn[0] % len(self.addresses)]
            turn[0] += 1
            async with open_channel(address, tls) as channel:
                yield pb_grpc.AgentServiceStub(channel)

        peer = SimPeer(self.record, self.args.render_ms / 1000)
        hello = pb.Hello(agent_id=agent_id(n), slots=self.args.slots, labels={"sim": "1"})
        link = StreamLink(connect, hello, peer, self.backoff)
        peer.link = link
        self.running[n] = (asyncio.get_running_loop().create_task(link.run()), peer, link)
        return link

    async def kill(self, n: int) -> None:
        task, peer, link = self.running.pop(n)
        self.record.streams += link.streams
        task.cancel()
        peer.kill()
        await asyncio.gather(task, return_exceptions=True)
        self.record.kills += 1

    async def churn(self) -> None:
        """Every --kill-every seconds, one agent dies and comes back --down seconds later: a
        busy one (holding leases) when there is one, so that kills cost work."""
        rng = random.Random(self.args.first)
        while True:
            await asyncio.sleep(self.args.kill_every)
            busy = [n for n, (_, peer, _) in self.running.items() if peer.jobs]
            n = rng.choice(sorted(busy or self.running))
            await self.kill(n)
            asyncio.get_running_loop().call_later(self.args.down, self.start, n)

    def report(self) -> dict[str, object]:
        streams = self.record.streams + sum(link.streams for _, _, link in self.running.values())
        return {
            "assigns": self.record.assigns,
            "accepted": dict(self.record.accepted),
            "refused": self.record.refused,
            "kills": self.record.kills,
            "streams": streams,
        }


async def commands() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trust", type=Path, required=True, help="CA and agent certificates")
    parser.add_argument("--addresses", required=True, help="coordinators' agent addresses")
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--render-ms", type=float, default=200)
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds, while churning")
    parser.add_argument("--down", type=float, default=0.5, help="seconds a killed agent is gone")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # A killed coordinator ends hundreds of streams at once: not worth a warning each.
    logging.getLogger("framefleet").setLevel(logging.ERROR)
    fleet = Fleet(args)
    links = []
    for n in range(args.first, args.first + args.count):
        links.append(fleet.start(n))
        if n % 50 == 49:
            await asyncio.sleep(0.05)  # a ramp, not one burst of TLS handshakes
    await asyncio.gather(*(link.connected.wait() for link in links))
    print("ready", flush=True)
    churn: asyncio.Task[None] | None = None
    async for command in commands():
        if command == "churn" and churn is None:
            churn = asyncio.create_task(fleet.churn())
        elif command == "calm" and churn is not None:
            churn.cancel()
            churn = None
        elif command == "stop":
            break
    args.out.write_text(json.dumps(fleet.report()))
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
