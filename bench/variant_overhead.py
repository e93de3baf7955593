"""Per-variant overhead: a warm page that swaps parameters in place, against a cold load.

One agent page and the referral example. For each of N rows (examples/referral/rows.csv,
cycled) the page is made ready for the next variant, either by swapping the parameters into the
already loaded template (``TemplatePage.load`` with the same source key: what an agent does for
consecutive rows of one batch) or by a full navigation (no source key: what it would cost
without warm templates). Then one frame is captured, so the variant has really been applied.
The two modes alternate over several rounds; medians are reported side by side.

Target: the warm path adds well under 50 ms per variant.

    .venv/bin/python bench/variant_overhead.py [--rounds 3] [--variants 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from framefleet.agent.browser import Chromium
from framefleet.agent.template_page import TemplatePage
from framefleet.core import jobspec
from framefleet.core.variants import read_rows

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "examples" / "referral" / "template" / "referral.html"
ROWS = ROOT / "examples" / "referral" / "rows.csv"
SIZE = (1280, 720)
TARGET_MS = 50.0


async def variant_ms(page: TemplatePage, warm: bool, variants: int) -> float:
    """Median milliseconds to make the page show the next variant and capture its frame 0."""
    template = jobspec.load_template(TEMPLATE)
    key = jobspec.source_key(jobspec.template_job(TEMPLATE)) if warm else ""
    rows = read_rows(ROWS)
    await page.load(template, rows[0][1], SIZE, 30, key)  # the page holds the template
    times = []
    for n in range(variants):
        started = time.perf_counter()
        swapped = await page.load(template, rows[n % len(rows)][1], SIZE, 30, key)
        await page.frame(0.0, 10)
        times.append((time.perf_counter() - started) * 1000)
        assert swapped == warm
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", type=int, default=30)
    args = parser.parse_args()
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        template = jobspec.load_template(TEMPLATE)
        await page.load(template, read_rows(ROWS)[0][1], SIZE, 30, "")
        capture = []
        for _ in range(args.variants):
            started = time.perf_counter()
            await page.frame(0.0, 10)
            capture.append((time.perf_counter() - started) * 1000)
        results: dict[str, list[float]] = {"warm swap": [], "cold load": []}
        for _ in range(args.rounds):
            results["warm swap"].append(await variant_ms(page, True, args.variants))
            results["cold load"].append(await variant_ms(page, False, args.variants))
    finally:
        await chromium.close()
    frame = statistics.median(capture)
    print(f"{args.variants} variants x {args.rounds} rounds, 1280x720, referral example")
    print(f"{'mode':<10} {'ms/variant':>11} {'minus 1 frame':>14}   per round")
    for mode, values in results.items():
        median = statistics.median(values)
        rounds = " ".join(f"{v:6.1f}" for v in values)
        print(f"{mode:<10} {median:>11.1f} {median - frame:>14.1f}   {rounds}")
    warm = statistics.median(results["warm swap"]) - frame
    cold = statistics.median(results["cold load"]) - frame
    print(f"one capture alone: {frame:.1f} ms; warm overhead / cold overhead: {warm / cold:.2f}")
    verdict = "OK" if warm < TARGET_MS else "MISSED"
    print(f"warm overhead {warm:.1f} ms per variant (target < {TARGET_MS:.0f} ms: {verdict})")


if __name__ == "__main__":
    asyncio.run(main())
