"""Fleet simulator: N simulated agents against real coordinator processes on PostgreSQL.

The agents are bench/fleet_agents.py processes (--procs of them), each holding many agent
streams with the real protocol over loopback TLS, one agent certificate each; they render
nothing (an Assign is Completed after --render-ms). Plain and chunked jobs are submitted
through the SDK at --rate while busy agents are killed (stream dropped without a word) and
restarted. With --coordinators 2, two coordinators share one PostgreSQL table, the agents are
spread over both, and the second is SIGKILLed halfway through the submissions: its agents
reconnect to the first. --soak: 1,000 short jobs under fast churn, memory sampled throughout.

What it prints (--json: one JSON object):
  lost        jobs not succeeded once everything settled (must be 0)
  duplicated  jobs (or chunks) whose Completed the coordinator accepted more than once
  dispatch_*  from the moment the store made a job claimable (its available_at: submit,
              requeue, or the last chunk done for an assembly) to its Assign read at the agent,
              for the attempt that succeeded
  heartbeat_cpu_s_per_agent_min  coordinator CPU seconds per agent-minute of heartbeats, over
              an idle window with every agent connected (no jobs yet)
  coordinator_rss_mb / agent_rss_mb  resident memory sampled every second

    .venv/bin/python bench/fleet_sim.py --agents 1000 --json
    .venv/bin/python bench/fleet_sim.py --agents 200 --coordinators 2 --json
    .venv/bin/python bench/fleet_sim.py --agents 200 --soak --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from framefleet import AsyncClient  # noqa: E402
from framefleet.v1 import framefleet_pb2 as pb  # noqa: E402
from tests.farm_processes import FarmProcesses, Process  # noqa: E402
from tests.postgres_server import start_postgres  # noqa: E402

TEMPLATE = "<!doctype html><body><script>framefleet.onParams(() => {});</script></body>"
READY_TIMEOUT = 120.0
SLOW_MS = 50.0  # dispatches above the target are listed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_over(pids: list[int], seconds: float) -> float:
    """CPU seconds the processes use over the next ``seconds``."""
    before = sum(map(cpu_seconds, pids))
    await asyncio.sleep(seconds)
    return sum(map(cpu_seconds, pids)) - before


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spec(n: int, chunked: bool, max_attempts: int) -> pb.JobSpec:
    """A one-second job, or an eight-second one in four chunks (plus its assembly)."""
    frames, chunks = (80, 4) if chunked else (10, 1)
    job = pb.JobSpec(
        template=pb.Template(html=TEMPLATE),
        output=pb.OutputSettings(width=64, height=64, fps=10, frames=frames),
        chunks=chunks,
        max_attempts=max_attempts,
    )
    job.params.update({"n": n})  # every job its own content: no cache hits
    return job


@dataclass
class Memory:
    """RSS of the coordinators and the agent processes, sampled every second."""

    pids: dict[str, list[int]]
    samples: dict[str, list[float]] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            for role, pids in self.pids.items():
                total = sum(rss_mb(pid) for pid in pids)
                if total:
                    self.samples.setdefault(role, []).append(round(total, 1))
            await asyncio.sleep(1.0)

    def summary(self, role: str) -> dict[str, float]:
        values = self.samples.get(role, [0.0])
        return {"start": values[0], "max": max(values), "end": values[-1]}


class Agents:
    """The simulated agent processes (bench/fleet_agents.py)."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.outs: list[Path] = []

    async def start(self, args: argparse.Namespace, trust: Path, addresses: str, tmp: Path) -> None:
        per = -(-args.agents // args.procs)
        for first in range(0, args.agents, per):
            out = tmp / f"agents-{first}.json"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "bench" / "fleet_agents.py"),
                *("--trust", str(trust), "--addresses", addresses, "--out", str(out)),
                *("--first", str(first), "--count", str(min(per, args.agents - first))),
                *("--slots", str(args.slots), "--render-ms", str(args.render_ms)),
                *("--kill-every", str(args.kill_every), "--down", str(args.down)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
            self.outs.append(out)
        await asyncio.wait_for(asyncio.gather(*(self._line(p, "ready") for p in self.procs)),
                               READY_TIMEOUT)  # fmt: skip

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process, expected: str) -> None:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode().strip()
        if line != expected:
            raise RuntimeError(f"agent process said {line!r}, not {expected!r}")

    def tell(self, command: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{command}\n".encode())

    async def stop(self) -> list[dict[str, Any]]:
        self.tell("stop")
        await asyncio.gather(*(self._line(p, "stopped") for p in self.procs))
        await asyncio.gather(*(p.wait() for p in self.procs))
        return [json.loads(out.read_text()) for out in self.outs]

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


async def submit_all(
    args: argparse.Namespace, addresses: list[str], victim: Process | None
) -> tuple[list[str], float]:
    """Submits --jobs at --rate, every --chunked-every'th one chunked, round-robin over the
    coordinators; SIGKILLs ``victim`` halfway (and returns when). A submit the dying
    coordinator cannot answer is repeated on the other with its request id (so it is never
    queued twice)."""
    clients = [AsyncClient(address) for address in addresses]
    alive = list(range(len(clients)))
    ids: list[str] = []
    killed_at = 0.0

    async def one(n: int) -> None:
        request_id = f"sim-{n}"
        chunked = bool(args.chunked_every) and n % args.chunked_every == 0
        job = spec(n, chunked, args.max_attempts)
        for attempt in range(10):
            client = clients[alive[(n + attempt) % len(alive)]]
            try:
                ids.append((await client.submit(job, request_id=request_id)).id)
                return
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError(f"job {n} could not be submitted")

    started = time.monotonic()
    tasks = []
    try:
        for n in range(args.jobs):
            if victim is not None and n == args.jobs // 2:
                victim.popen.send_signal(signal.SIGKILL)
                killed_at = time.time()
                alive.remove(1)
            await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return ids, killed_at


async def settled(url: str, ids: list[str], within: float) -> list[asyncpg.Record]:
    """Every job row once the submitted jobs have all ended (or `within` seconds passed)."""
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            open_jobs = await connection.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1) AND state IN ('queued', 'leased')",
                ids,
            )
            if not open_jobs:
                break
            await asyncio.sleep(0.5)
        return list(
            await connection.fetch(
                "SELECT id, parent_id, state, fencing_token, available_at, error_class FROM jobs"
            )
        )
    finally:
        await connection.close()


def errors_logged(farm: FarmProcesses) -> int:
    """Errors in the coordinators' log (both write coordinator.log)."""
    log = farm.root / "logs" / "coordinator.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if '"level": "error"' in line or line.startswith("Traceback"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    postgres = start_postgres()
    tmp = Path(tempfile.mkdtemp(prefix="fleet-sim-"))
    farm = FarmProcesses(tmp)
    agents = Agents()
    memory_task: asyncio.Task[None] | None = None
    try:
        url = await postgres.create_database()
        settings = ["--heartbeat-interval", str(args.heartbeat_interval)]
        settings += ["--retry-base", str(args.retry_base)]
        coordinators, client_addresses, agent_addresses = [], [], []
        for _ in range(args.coordinators):
            farm.agent_address = ""  # each coordinator its own agent port
            coordinators.append(farm.start_coordinator(url, tmp / "out", *settings))
            client_addresses.append(farm.address)
            agent_addresses.append(farm.agent_address)
        pids = [c.popen.pid for c in coordinators]
        # The coordinators' own background work (dispatcher tick, reaper, samplers), no agents.
        baseline_cpu = await cpu_over(pids, args.idle)
        assert farm.trust is not None
        for n in range(args.agents):
            farm.trust.agent_cert(f"sim-{n:05d}")
        await agents.start(args, farm.trust.root, ",".join(agent_addresses), tmp)
        roles = {"coordinator": pids[:1], "coordinator_2": pids[1:]}
        memory = Memory({**roles, "agents": [p.pid for p in agents.procs]})
        memory_task = asyncio.create_task(memory.run())
        # Heartbeats alone: every agent connected, no work yet.
        idle_cpu = await cpu_over(pids, args.idle)
        agent_minutes = args.agents * args.idle / 60

        agents.tell("churn")
        victim = coordinators[1] if args.coordinators > 1 else None
        started, started_at = time.monotonic(), time.time()
        ids, killed_at = await submit_all(args, client_addresses, victim)
        rows = await settled(url, ids, args.timeout)
        elapsed = time.monotonic() - started
        agents.tell("calm")
        memory_task.cancel()  # before the agent processes exit
        seen = await agents.stop()
    finally:
        agents.kill()
        farm.close()
        postgres.stop()
        errors = errors_logged(farm)
        if args.keep:
            print(f"logs and certificates kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    assigned = {(j, t): at for s in seen for j, t, at in s["assigns"]}
    attempts: dict[str, int] = {}
    for job_id, _ in assigned:
        attempts[job_id] = attempts.get(job_id, 0) + 1
    accepted: dict[str, int] = {}
    for s in seen:
        for job_id, count in s["accepted"].items():
            accepted[job_id] = accepted.get(job_id, 0) + count
    by_id = {r["id"]: r for r in rows}
    submitted = set(ids)
    lost = [i for i in submitted if i not in by_id or by_id[i]["state"] != "succeeded"]
    waits, first_waits, slow = [], [], []
    for r in rows:
        at = assigned.get((r["id"], r["fencing_token"]))
        if r["state"] == "succeeded" and at is not None:
            waits.append(1000 * (at - r["available_at"]))
            if attempts[r["id"]] == 1:
                first_waits.append(waits[-1])
            if waits[-1] > SLOW_MS:  # when, into the submissions, and how long
                slow.append((round(r["available_at"] - started_at, 2), round(waits[-1], 1)))
    return {
        "mode": "soak" if args.soak else f"{args.coordinators} coordinator(s)",
        "agents": args.agents,
        "agent_processes": args.procs,
        "slots_per_agent": args.slots,
        "jobs": len(ids),
        "chunked_jobs": sum(
            1 for n in range(args.jobs) if args.chunked_every and n % args.chunked_every == 0
        ),
        "rows": len(rows),
        "lost": len(lost),
        "lost_states": sorted(
            {f"{by_id[i]['state']}:{by_id[i]['error_class']}" for i in lost if i in by_id}
        ),
        "duplicated": sum(1 for count in accepted.values() if count > 1),
        "dispatch_p50_ms": round(statistics.median(waits), 1) if waits else 0.0,
        "dispatch_p99_ms": round(percentile(waits, 0.99), 1),
        "dispatch_max_ms": round(max(waits, default=0.0), 1),
        "dispatch_samples": len(waits),
        "dispatch_slow": sorted(slow)[:40],
        # Without the jobs requeued after a kill (those wait for the dispatcher's tick).
        "dispatch_p99_first_attempt_ms": round(percentile(first_waits, 0.99), 1),
        "heartbeat_interval_s": args.heartbeat_interval,
        "heartbeat_cpu_s_per_agent_min": round((idle_cpu - baseline_cpu) / agent_minutes, 5),
        "coordinator_cpu_idle_s": {
            "no_agents": round(baseline_cpu, 2),
            "agents": round(idle_cpu, 2),
        },
        "idle_window_s": args.idle,
        "coordinator_rss_mb": memory.summary("coordinator"),
        "coordinator_2_rss_mb": memory.summary("coordinator_2") if victim else None,
        "agent_rss_mb": memory.summary("agents"),
        "rss_samples": memory.samples,
        "reassigned": sum(1 for count in attempts.values() if count > 1),
        "agent_kills": sum(s["kills"] for s in seen),
        "agent_streams": sum(s["streams"] for s in seen),
        "refused_results": sum(s["refused"] for s in seen),
        "coordinator_killed": victim is not None,
        "coordinator_killed_at_s": round(killed_at - started_at, 2) if killed_at else None,
        "coordinator_errors_logged": errors,
        "run_s": round(elapsed, 1),
        "jobs_per_s": round(len(ids) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2, help="agent processes")
    parser.add_argument("--slots", type=int, default=2, help="per agent")
    parser.add_argument("--jobs", type=int, default=None, help="default 300 (soak: 1000)")
    parser.add_argument("--rate", type=float, default=None, help="jobs/s (default 20, soak 10)")
    parser.add_argument("--chunked-every", type=int, default=None, help="every Nth job in chunks")
    parser.add_argument("--render-ms", type=float, default=None, help="default 500 (soak 100)")
    parser.add_argument("--kill-every", type=float, default=None, help="s per agent process")
    parser.add_argument("--down", type=float, default=0.5, help="seconds a killed agent is gone")
    # The churn here is far above a real fleet's: at the default 3 attempts, a job whose agent
    # is killed three times fails as AGENT_LOST, by design (retry_policy.py).
    parser.add_argument("--max-attempts", type=int, default=10, help="per job")
    parser.add_argument("--coordinators", type=int, choices=[1, 2], default=1)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="coordinator's")
    parser.add_argument("--retry-base", type=float, default=2.0, help="coordinator's, s")
    parser.add_argument("--idle", type=float, default=None, help="heartbeat window, s")
    parser.add_argument("--timeout", type=float, default=120.0, help="for jobs to settle, s")
    parser.add_argument("--soak", action="store_true", help="1,000 short jobs, fast churn")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the logs (path on stderr)")
    args = parser.parse_args()
    soak = args.soak
    args.jobs = args.jobs or (1000 if soak else 300)
    args.rate = args.rate or (10.0 if soak else 20.0)
    args.chunked_every = (
        args.chunked_every if args.chunked_every is not None else (0 if soak else 5)
    )
    args.render_ms = args.render_ms or (100.0 if soak else 500.0)
    args.kill_every = args.kill_every or (1.0 if soak else 2.0)
    args.idle = args.idle if args.idle is not None else 2 * args.heartbeat_interval
    args.procs = max(1, min(args.procs, args.agents))
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key != "rss_samples":
            print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
