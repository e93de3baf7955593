"""How many slots, how many x264 threads, and whether the encoder should run niced: measured.

An agent's slots are pages of one Chromium, each rendering its own job through the real
pipeline (``agent.render.render``: BeginFrame capture, JPEG decode, H.264 encode, MP4 written).
Every configuration (slots x x264 threads x encoder nice) renders the same template on that
many pages at once; configurations alternate for several rounds (order reversed every other
round) and the medians count. Per configuration: delivered frames per second of the whole box
(all slots together), CPU milliseconds per frame of the process tree, and cores kept busy.
The agent's defaults (agent/capacity.py, agent/encoder.py) come from these numbers
(bench/README.md, "Slots, x264 threads and encoder priority").

    .venv/bin/python bench/slots.py [--rounds 3] [--frames 360] [--slots 1,2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline_fps import PARAMS, TEMPLATE, Run, load_params, median, run_pipeline, timed

import agent.encoder
from agent.browser import Chromium
from agent.template_page import TemplatePage
from framefleet.core import jobspec
from framefleet.v1 import framefleet_pb2 as pb

WIDTH, HEIGHT, FPS = 1280, 720, 30


@dataclass(frozen=True)
class Config:
    slots: int
    threads: int
    nice: int

    def __str__(self) -> str:
        return f"slots {self.slots}  x264 threads {self.threads}  encoder nice {self.nice:>2}"


async def run_config(
    pages: list[TemplatePage], spec: pb.JobSpec, config: Config, out: Path, n: int, key: str
) -> Run:
    """``config.slots`` renders at once, one per page: all their frames over the wall time."""
    agent.encoder.X264_THREADS = config.threads  # read when each encoder opens
    agent.encoder.ENCODER_NICE = config.nice

    async def all_slots() -> Run:
        started = time.perf_counter()
        runs = await asyncio.gather(
            *(
                run_pipeline(page, spec, out, n * 100 + i, key)
                for i, page in enumerate(pages[: config.slots])
            )
        )
        return Run(sum(r.frames for r in runs), time.perf_counter() - started)

    return await timed(all_slots())


async def bench(args: argparse.Namespace) -> int:
    spec = jobspec.template_job(
        args.template, load_params(Path(args.params)), width=WIDTH, height=HEIGHT, fps=FPS,
        frames=args.frames,
    )  # fmt: skip
    key = jobspec.source_key(spec)  # warm pages swap parameters in place, as in a batch
    configs = [
        Config(s, t, n) for s, t, n in itertools.product(args.slots, args.threads, args.nice)
    ]
    runs: dict[Config, list[Run]] = {c: [] for c in configs}
    chromium = await Chromium.launch()
    try:
        # One context and page per slot, as the agent's page pool gives each job.
        pages = [
            await TemplatePage.open(await chromium.browser.new_context())
            for _ in range(max(args.slots))
        ]
        with tempfile.TemporaryDirectory(prefix="framefleet-bench-") as tmp:
            warmup = Config(max(args.slots), max(args.threads), 0)
            await run_config(pages, spec, warmup, Path(tmp), -1, key)
            load_before = os.getloadavg()[0]
            for n in range(args.rounds):
                for config in configs if n % 2 == 0 else configs[::-1]:
                    run = await run_config(pages, spec, config, Path(tmp), n, key)
                    runs[config].append(run)
                    print(f"round {n + 1}/{args.rounds}: {config}: {run.fps:.1f} fps", flush=True)
        for page in pages:
            await page.close()
    finally:
        await chromium.close()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"slots: {Path(args.template).name}, {WIDTH}x{HEIGHT} @ {FPS} fps, {args.frames} frames "
        f"per slot, {args.rounds} rounds, capture beginframe"
    )
    print(
        f"{when}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print()
    print(f"{'':<44}{'fps':>8}  {'cpu ms':>8}  {'cores':>6}   fps per round")
    print(f"{'configuration':<44}{'median':>8}  {'/frame':>8}  {'busy':>6}")
    best = max(configs, key=lambda c: median([r.fps for r in runs[c]]))
    for config in configs:
        rs = runs[config]
        per_round = "  ".join(f"{r.fps:6.1f}" for r in rs)
        print(
            f"{config!s:<44}{median([r.fps for r in rs]):8.1f}  "
            f"{median([r.cpu_ms_per_frame for r in rs]):8.1f}  "
            f"{median([r.cores for r in rs]):6.2f}   {per_round}"
            + ("   <- most fps" if config == best else "")
        )
    return 0


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=360, help="frames per slot (360 = 12 s)")
    parser.add_argument("--slots", type=numbers, default=[1, 2], help="e.g. 1,2")
    parser.add_argument("--threads", type=numbers, default=[1, 2], help="x264 threads, e.g. 1,2")
    parser.add_argument("--nice", type=numbers, default=[0, 10], help="encoder nice, e.g. 0,10")
    parser.add_argument("--template", default=str(TEMPLATE), help="HTML template or folder")
    parser.add_argument("--params", default=str(PARAMS), help="JSON object of parameters")
    args = parser.parse_args()
    if args.rounds < 1 or args.frames < 1 or min(args.slots) < 1 or min(args.threads) < 1:
        parser.error("--rounds, --frames, --slots and --threads must be at least 1")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
