"""bench/fleet_sim.py kept working: a small fleet (20 simulated agents over TLS, two agent
processes) against two coordinators on one PostgreSQL table, busy agents killed and
restarted throughout and one coordinator SIGKILLed halfway (its agents move to the other):
every job succeeds, none is completed twice. The one-coordinator mode runs the same code,
less the kill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SIM = Path(__file__).resolve().parents[1] / "bench" / "fleet_sim.py"


def test_small_fleet_loses_nothing_and_runs_nothing_twice() -> None:
    # A busy agent killed every half second in each agent process: retries back off from
    # 0.2 s, not the default 2 s, so a job killed several times still ends within the run.
    args = "--agents 20 --jobs 40 --rate 20 --heartbeat-interval 1 --idle 0.5 --kill-every 0.5"
    args += " --down 0.2 --render-ms 300 --retry-base 0.2 --timeout 40 --coordinators 2 --json"
    run = subprocess.run(
        [sys.executable, str(SIM), *args.split()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert (result["agents"], result["jobs"], result["chunked_jobs"]) == (20, 40, 8)
    assert result["rows"] == 40 + 8 * 4  # each chunked job: its 4 chunks besides itself
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
    assert result["agent_kills"] > 0
    assert result["coordinator_killed"]
    # Every succeeded row's final Assign was seen arriving at an agent.
    assert result["dispatch_samples"] == result["rows"]
    assert result["coordinator_errors_logged"] == 0
