"""How many pages an agent runs at once, sized from the machine it is on.

Each slot is one Chromium page capturing plus its x264 encoder (niced, agent/encoder.py). The
default is one slot per core and one per PAGE_MEMORY of available memory, whichever is fewer:
on a 2-core box two slots delivered more frames per second than one (bench/slots.py; numbers
and the rule in bench/README.md, "Slots, x264 threads and encoder priority").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CORES_PER_SLOT = 1
PAGE_MEMORY = 768 * 1024 * 1024


def available_memory() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Capacity:
    cores: int
    memory: int
    slots: int

    def describe(self) -> str:
        return (
            f"{self.cores} cores, {self.memory / 2**30:.1f} GiB available -> {self.slots} slot(s)"
            f" (1 per {CORES_PER_SLOT} core, 1 per {PAGE_MEMORY // 2**20} MiB; --slots overrides)"
        )


def measure(override: int | None = None) -> Capacity:
    cores = len(os.sched_getaffinity(0))
    memory = available_memory()
    slots = override or max(1, min(cores // CORES_PER_SLOT, memory // PAGE_MEMORY))
    return Capacity(cores, memory, slots)
