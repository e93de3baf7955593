"""What unchanged frames cost: a template that holds still for the second half of its length
against the same template moving throughout.

Both render through the agent's real pipeline (``framefleet.agent.render.render``: BeginFrame
capture, encode, MP4 written) on one page, alternating for several rounds (ABBA). While the page
holds still, a frame costs a BeginFrame that reports no damage, and the encoder reuses the
converted picture: the ratio of the medians says how much that saves.

    .venv/bin/python bench/damage_skip.py [--rounds 3] [--frames 360] [--capture screenshot]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pipeline_fps import Run, fmt_row, median, run_pipeline, timed

from framefleet.agent.browser import CAPTURE, CAPTURE_MODES, Chromium
from framefleet.agent.template_page import TemplatePage
from framefleet.core import jobspec

TEMPLATE = Path(__file__).resolve().parent / "templates" / "motion.html"
WIDTH, HEIGHT, FPS = 1280, 720, 30


async def bench(args: argparse.Namespace) -> int:
    seconds = args.frames / FPS
    specs = {
        "moves throughout": jobspec.template_job(
            TEMPLATE, {}, width=WIDTH, height=HEIGHT, fps=FPS, frames=args.frames
        ),
        "still 2nd half": jobspec.template_job(
            TEMPLATE, {"hold": seconds / 2}, width=WIDTH, height=HEIGHT, fps=FPS, frames=args.frames
        ),
    }
    runs: dict[str, list[Run]] = {name: [] for name in specs}
    reused: dict[str, int] = {}
    chromium = await Chromium.launch(capture=args.capture)
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        with tempfile.TemporaryDirectory(prefix="framefleet-bench-") as tmp:
            for spec in specs.values():  # warm-up, not counted
                await run_pipeline(page, spec, Path(tmp), -1, "")
            load_before = os.getloadavg()
            names = list(specs)
            for n in range(args.rounds):
                for name in names if n % 2 == 0 else names[::-1]:
                    run = run_pipeline(page, specs[name], Path(tmp), n, "")
                    runs[name].append(await timed(run))
                    reused[name] = page.frames_reused
                done = ", ".join(f"{name} {runs[name][-1].fps:.1f} fps" for name in names)
                print(f"round {n + 1}/{args.rounds}: {done}", flush=True)
        await page.close()
    finally:
        await chromium.close()
    load_after = os.getloadavg()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"damage_skip: motion.html, {WIDTH}x{HEIGHT} @ {FPS} fps, {args.frames} frames, "
        f"{args.rounds} rounds, capture {args.capture}"
    )
    print(
        f"{when}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print()
    print(f"{'':<20}{'fps':>8}  {'cpu ms':>8}  {'cores':>6}   fps per round")
    print(f"{'template':<20}{'median':>8}  {'/frame':>8}  {'busy':>6}")
    for name in specs:
        print(fmt_row(name, runs[name]) + f"   (frames reused: {reused[name]})")
    moving, still = (median([r.seconds for r in runs[name]]) for name in specs)
    print()
    print(f"render time still-half / moving (medians): {still / moving:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=360, help="frames per render (360 = 12 s)")
    parser.add_argument("--capture", choices=CAPTURE_MODES, default=CAPTURE)
    args = parser.parse_args()
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
