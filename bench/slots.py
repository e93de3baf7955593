"""How many slots, how many x264 threads, and whether the encoder should run niced: measured.

An agent's slots are pages, each rendering its own job through the real
pipeline (``framefleet.agent.render.render``: BeginFrame capture, JPEG decode, H.264 encode,
MP4 written).
Every configuration (slots x x264 threads x encoder nice) renders the same template on that
many pages at once; configurations alternate for several rounds (order reversed every other
round) and the medians count. Per configuration: delivered frames per second of the whole box
(all slots together), CPU milliseconds per frame of the process tree, and cores kept busy.
``--browsers shared,per-slot`` compares the slots' pages in one Chromium (their draws take turns)
with one Chromium per slot, and prints the browsers' memory (PSS and summed RSS) for each.
The agent's defaults (agent/capacity.py, agent/encoder.py) come from these numbers
(bench/README.md, "Slots, x264 threads and encoder priority").

    .venv/bin/python bench/slots.py [--rounds 3] [--frames 360] [--slots 1,2] [--threads 1,2]
        [--nice 0,10] [--browsers shared,per-slot]
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

import psutil
from pipeline_fps import PARAMS, TEMPLATE, Run, load_params, median, run_pipeline, timed

from framefleet.agent import encoder
from framefleet.agent.browser import Chromium
from framefleet.agent.template_page import TemplatePage
from framefleet.core import jobspec
from framefleet.v1 import framefleet_pb2 as pb

WIDTH, HEIGHT, FPS = 1280, 720, 30


@dataclass(frozen=True)
class Config:
    slots: int
    threads: int
    nice: int
    browsers: str = "shared"

    def __str__(self) -> str:
        return (
            f"slots {self.slots}  x264 threads {self.threads}  encoder nice {self.nice:>2}"
            f"  {self.browsers}"
        )


async def run_config(
    pages: list[TemplatePage], spec: pb.JobSpec, config: Config, out: Path, n: int, key: str
) -> Run:
    """``config.slots`` renders at once, one per page: all their frames over the wall time."""
    encoder.X264_THREADS = config.threads  # read when each encoder opens
    encoder.ENCODER_NICE = config.nice

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
        Config(*c) for c in itertools.product(args.slots, args.threads, args.nice, args.browsers)
    ]
    runs: dict[Config, list[Run]] = {c: [] for c in configs}
    slots = max(args.slots)
    # One context and page per slot, as the agent's page pool gives each job: all of them in
    # one Chromium ("shared"), or each in its own ("per-slot").
    browsers: dict[str, list[tuple[Chromium, int]]] = {}
    pages: dict[str, list[TemplatePage]] = {}
    try:
        for mode in args.browsers:
            browsers[mode], pages[mode] = [], []
            for _ in range(slots if mode == "per-slot" else 1):
                before = set(psutil.Process().children())
                chromium = await Chromium.launch()
                (driver,) = set(psutil.Process().children()) - before
                browsers[mode].append((chromium, driver.pid))
            for i in range(slots):
                chromium = browsers[mode][i % len(browsers[mode])][0]
                pages[mode].append(await TemplatePage.open(await chromium.browser.new_context()))
        with tempfile.TemporaryDirectory(prefix="framefleet-bench-") as tmp:
            for mode in args.browsers:
                warmup = Config(slots, max(args.threads), 0, mode)
                await run_config(pages[mode], spec, warmup, Path(tmp), -1, key)
            memory = {mode: browser_memory(browsers[mode]) for mode in args.browsers}
            load_before = os.getloadavg()[0]
            for n in range(args.rounds):
                for config in configs if n % 2 == 0 else configs[::-1]:
                    run = await run_config(pages[config.browsers], spec, config, Path(tmp), n, key)
                    runs[config].append(run)
                    print(f"round {n + 1}/{args.rounds}: {config}: {run.fps:.1f} fps", flush=True)
    finally:
        for mode_pages in pages.values():
            for page in mode_pages:
                await page.close()
        for mode_browsers in browsers.values():
            for chromium, _ in mode_browsers:
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
    for mode, (pss, rss) in memory.items():
        print(
            f"Chromium memory, {mode}, {slots} pages after warm-up: PSS {pss >> 20} MiB, "
            f"RSS summed {rss >> 20} MiB"
        )
    print()
    print(f"{'':<54}{'fps':>8}  {'cpu ms':>8}  {'cores':>6}   fps per round")
    print(f"{'configuration':<54}{'median':>8}  {'/frame':>8}  {'busy':>6}")
    best = max(configs, key=lambda c: median([r.fps for r in runs[c]]))
    for config in configs:
        rs = runs[config]
        per_round = "  ".join(f"{r.fps:6.1f}" for r in rs)
        print(
            f"{config!s:<54}{median([r.fps for r in rs]):8.1f}  "
            f"{median([r.cpu_ms_per_frame for r in rs]):8.1f}  "
            f"{median([r.cores for r in rs]):6.2f}   {per_round}"
            + ("   <- most fps" if config == best else "")
        )
    return 0


def browser_memory(browsers: list[tuple[Chromium, int]]) -> tuple[int, int]:
    """PSS and RSS of the Chromium processes (under each Playwright driver). PSS splits pages
    that processes share between them; summed RSS counts Chromium's binary once per process."""
    pss = rss = 0
    for _, driver in browsers:
        for process in psutil.Process(driver).children(recursive=True):
            try:
                info = process.memory_full_info()
            except psutil.Error:
                continue
            pss, rss = pss + info.pss, rss + info.rss
    return pss, rss


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=360, help="frames per slot (360 = 12 s)")
    parser.add_argument("--slots", type=numbers, default=[1, 2], help="e.g. 1,2")
    parser.add_argument("--threads", type=numbers, default=[1, 2], help="x264 threads, e.g. 1,2")
    parser.add_argument("--nice", type=numbers, default=[0, 10], help="encoder nice, e.g. 0,10")
    parser.add_argument(
        "--browsers",
        type=lambda text: text.split(","),
        default=["shared"],
        help="shared (slots' pages in one Chromium), per-slot (one Chromium each), or both",
    )
    parser.add_argument("--template", default=str(TEMPLATE), help="HTML template or folder")
    parser.add_argument("--params", default=str(PARAMS), help="JSON object of parameters")
    args = parser.parse_args()
    if args.rounds < 1 or args.frames < 1 or min(args.slots) < 1 or min(args.threads) < 1:
        parser.error("--rounds, --frames, --slots and --threads must be at least 1")
    if not set(args.browsers) <= {"shared", "per-slot"}:
        parser.error("--browsers takes shared, per-slot or both")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
