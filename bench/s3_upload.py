"""S3 output: streaming the MP4 into a multipart upload while rendering, against rendering to a
local file and uploading it afterwards; and the agent's peak memory for a short and a long video.

Part 1 renders the referral example (ada.json, 1280x720, 30 fps, 12 s) with the agent's real
pipeline (``framefleet.agent.render.render``: Chromium, libx264, the sink) into moto's S3 server on
loopback, two ways, alternating for ``--rounds`` rounds:

- direct: the output URL is s3://..., so parts go up while later frames are captured;
- write-then-upload: the output URL is a local file; once it is complete, the file is uploaded
  with the same S3 sink (same part size, same parts in flight).

It reports the time from the last captured frame to a complete object (the "tail": what a job
waits for after its last frame) and checks that both objects hold the same bytes.

``--link-mbps N`` sends the agent's S3 traffic through tests/s3_fault_proxy.py, in its own
process, emulating one shared uplink of N Mbit/s: on loopback uploading costs next to nothing,
so that is where the two ways differ least.

Part 2 renders a cheap synthetic template (tests/templates/noise.html: seeded noise, 320x180,
30 fps, CRF 0, so even a short video spans several parts) for 10 s and for 120 s straight into
S3 (loopback), each in a fresh process, and reports that process's peak RSS (VmHWM, over its
whole life: Playwright, encoder, sink) and the tracemalloc peak of Python allocations during the
render. Chromium runs in its own processes and is not counted. Neither may grow with length.

    .venv/bin/python bench/s3_upload.py [--rounds 3] [--configs 23:8MiB,23:5MiB,0:8MiB]
                                        [--short 10 --long 120] [--skip-memory]
    .venv/bin/python bench/s3_upload.py --link-mbps 100 --skip-memory   # an emulated uplink
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framefleet.agent.browser import Chromium
from framefleet.agent.limits import RenderLimits
from framefleet.agent.render import RenderResult, render
from framefleet.agent.template_page import TemplatePage
from framefleet.core import jobspec
from framefleet.outputs.s3 import S3Upload
from framefleet.outputs.s3_client import MIB, S3Settings, close_shared_clients, parse_size
from framefleet.v1 import framefleet_pb2 as pb

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "examples" / "referral" / "template" / "referral.html"
PARAMS = ROOT / "examples" / "referral" / "ada.json"
NOISE = ROOT / "tests" / "templates" / "noise.html"
BUCKET = "framefleet-bench"
READ_CHUNK = 1 * MIB


@dataclass
class Config:
    crf: int
    part_size: int

    @property
    def label(self) -> str:
        return f"CRF {self.crf}, {self.part_size // MIB} MiB parts"


@dataclass
class TailRun:
    tail: float  # seconds from the last captured frame to a complete object
    render_tail: float  # of which until render() returned (encoder flush, and the sink's finish)
    size: int
    parts: int  # 0: a single PutObject
    digest: str


def parse_configs(text: str) -> list[Config]:
    configs = []
    for item in text.split(","):
        crf, _, size = item.partition(":")
        configs.append(Config(int(crf), parse_size(size or "8MiB")))
    return configs


async def render_to(
    page: TemplatePage, spec: pb.JobSpec, url: str
) -> tuple[float, float, RenderResult]:
    """The agent's render into ``url``; returns (last frame captured, render returned, result)."""
    last = 0.0

    def progress(done: int, total: int, fps: float, upload_id: str) -> None:
        nonlocal last
        if done == total:
            last = time.perf_counter()

    assign = pb.Assign(spec=spec, output_url=url, source_key=jobspec.source_key(spec))
    result = await render(assign, page, RenderLimits(), progress)
    return last, time.perf_counter(), result


async def describe(s3: S3Client, key: str) -> tuple[int, int, str]:
    """Size, parts (0 for a PutObject) and SHA-256 of an object, read back from S3."""
    head = await s3.head_object(Bucket=BUCKET, Key=key)
    etag = head["ETag"].strip('"')
    parts = int(etag.rsplit("-", 1)[1]) if "-" in etag else 0
    response = await s3.get_object(Bucket=BUCKET, Key=key)
    async with response["Body"] as body:
        digest = hashlib.sha256(await body.read()).hexdigest()
    return head["ContentLength"], parts, digest


async def direct(page: TemplatePage, spec: pb.JobSpec, s3: S3Client, key: str) -> TailRun:
    last, done, _ = await render_to(page, spec, f"s3://{BUCKET}/{key}")
    return TailRun(done - last, done - last, *await describe(s3, key))


async def write_then_upload(
    page: TemplatePage, spec: pb.JobSpec, s3: S3Client, key: str, tmp: Path
) -> TailRun:
    path = tmp / "render.mp4"
    last, rendered, _ = await render_to(page, spec, path.as_uri())
    upload = S3Upload(f"s3://{BUCKET}/{key}")

    def feed() -> None:
        with path.open("rb") as f:
            while chunk := f.read(READ_CHUNK):
                upload.write(chunk)

    try:
        await asyncio.to_thread(feed)
        await upload.complete()
    except BaseException:
        await upload.abort()
        raise
    done = time.perf_counter()
    path.unlink()
    return TailRun(done - last, rendered - last, *await describe(s3, key))


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (Linux)."""
    values: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


@dataclass
class MemoryRun:
    seconds: int
    frames: int
    size: int
    parts: int
    rss_before: int  # after Chromium's launch and the page's first load, before rendering
    rss_peak: int  # VmHWM over the process's whole life
    heap_peak: int  # tracemalloc peak during the render
    render_seconds: float


async def memory_case(seconds: int) -> MemoryRun:
    """One fresh process renders one video straight into S3 (run with --memory-case)."""
    from tests.moto_server import s3_client

    spec = jobspec.template_job(
        NOISE,
        {"color": "rgb(200, 60, 60)"},
        width=320,
        height=180,
        fps=30,
        duration=seconds,
        crf=0,
        preset="ultrafast",
    )
    key = f"memory/{seconds}s.mp4"
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        warm = jobspec.template_job(NOISE, {}, width=320, height=180, fps=30, frames=5)
        await render_to(page, warm, f"s3://{BUCKET}/memory/warm.mp4")
        before = proc_status()["VmRSS"]
        tracemalloc.start()
        try:
            started = time.perf_counter()
            _, done, result = await render_to(page, spec, f"s3://{BUCKET}/{key}")
            heap_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        peak = proc_status()["VmHWM"]
        await page.close()
    finally:
        await close_shared_clients()
        await chromium.close()
    async with s3_client(os.environ["FRAMEFLEET_BENCH_MOTO"]) as s3:
        head = await s3.head_object(Bucket=BUCKET, Key=key)
        await s3.delete_object(Bucket=BUCKET, Key=key)  # moto keeps objects in memory
    etag = head["ETag"].strip('"')
    parts = int(etag.rsplit("-", 1)[1]) if "-" in etag else 0
    return MemoryRun(
        seconds, result.frames, head["ContentLength"], parts, before, peak, heap_peak,
        done - started,
    )  # fmt: skip


def run_memory_case(seconds: int) -> MemoryRun:
    """Runs a memory case in a fresh process, so one case's peak cannot hide another's."""
    child = subprocess.run(
        [sys.executable, __file__, "--memory-case", str(seconds)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"memory case {seconds} s failed:\n{child.stderr[-3000:]}")
    return MemoryRun(**json.loads(child.stdout.strip().splitlines()[-1]))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def bench(args: argparse.Namespace, moto_url: str, endpoint: str, tmp: Path) -> int:
    from tests.moto_server import CREDENTIALS, s3_client

    configs = parse_configs(args.configs) if args.configs else []
    params: dict[str, Any] = args.params_data
    os.environ.update(CREDENTIALS)
    os.environ["AWS_CONFIG_FILE"] = str(tmp / "no-aws-config")
    os.environ["FRAMEFLEET_S3_ENDPOINT"] = endpoint
    os.environ["FRAMEFLEET_BENCH_MOTO"] = moto_url
    tails: dict[str, dict[str, list[TailRun]]] = {}
    memory: list[MemoryRun] = []
    load_before = os.getloadavg()
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        if configs:
            chromium = await Chromium.launch()
            try:
                page = await TemplatePage.open(await chromium.browser.new_context())
                await tail_runs(args, params, configs, page, s3, tmp, tails)
                await page.close()
            finally:
                await close_shared_clients()
                await chromium.close()
    if not args.skip_memory:
        os.environ["FRAMEFLEET_S3_ENDPOINT"] = moto_url  # loopback: memory, not the link
        os.environ["FRAMEFLEET_S3_PART_SIZE"] = str(parse_size(args.memory_part_size))
        for seconds in (args.short, args.long):
            memory.append(await asyncio.to_thread(run_memory_case, seconds))
            m = memory[-1]
            print(
                f"memory, {seconds} s: peak RSS {m.rss_peak / MIB:.1f} MiB, "
                f"Python heap peak {m.heap_peak / MIB:.1f} MiB, {m.parts} parts",
                flush=True,
            )
    report(args, tails, memory, load_before, os.getloadavg())
    return 0


async def tail_runs(
    args: argparse.Namespace,
    params: dict[str, Any],
    configs: list[Config],
    page: TemplatePage,
    s3: S3Client,
    tmp: Path,
    tails: dict[str, dict[str, list[TailRun]]],
) -> None:
    for config in configs:
        os.environ["FRAMEFLEET_S3_PART_SIZE"] = str(config.part_size)
        spec = jobspec.template_job(
            args.template, params, width=1280, height=720, fps=30, duration=12, crf=config.crf
        )
        runs = tails.setdefault(config.label, {"direct": [], "write-then-upload": []})
        # Warm-up, not counted: the page, the JIT, the S3 client and its connections.
        warm = jobspec.template_job(args.template, params, width=1280, height=720, frames=10)
        await direct(page, warm, s3, "warm.mp4")
        for n in range(args.rounds):
            order = ["direct", "write-then-upload"]
            if n % 2:
                order.reverse()  # neither mode always runs first
            for mode in order:
                if mode == "direct":
                    result = await direct(page, spec, s3, f"direct-{n}.mp4")
                else:
                    result = await write_then_upload(page, spec, s3, f"file-{n}.mp4", tmp)
                runs[mode].append(result)
                print(
                    f"{config.label}, round {n + 1}: {mode} tail {result.tail:.3f} s "
                    f"(render returned after {result.render_tail:.3f} s), "
                    f"{result.size / MIB:.1f} MiB, {result.parts} parts",
                    flush=True,
                )


def report(
    args: argparse.Namespace,
    tails: dict[str, dict[str, list[TailRun]]],
    memory: list[MemoryRun],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    link = f"a {args.link_mbps:g} Mbit/s emulated uplink" if args.link_mbps else "loopback"
    print()
    print(
        f"s3_upload: moto's S3 server over {link}; S3 sink defaults (3 parts in flight)\n"
        f"{when}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    if tails:
        print()
        print(
            f"{Path(args.template).name} ({Path(args.params).name}), 1280x720 @ 30 fps, "
            f"360 frames: seconds from the last captured frame to a complete object, "
            f"median of {args.rounds} rounds"
        )
        print(
            f"{'config':<24}{'output':>8}{'parts':>7}{'direct':>9}{'write+upload':>14}"
            f"{'(flush':>8}{'upload)':>9}{'ratio':>8}   same bytes"
        )
        for label, runs in tails.items():
            d, w = runs["direct"], runs["write-then-upload"]
            direct_tail, file_tail = median([r.tail for r in d]), median([r.tail for r in w])
            flush = median([r.render_tail for r in w])
            upload = median([r.tail - r.render_tail for r in w])
            same = len({r.digest for r in d + w}) == 1
            print(
                f"{label:<24}{d[0].size / MIB:>6.1f}Mi{d[0].parts:>7}{direct_tail:>9.3f}"
                f"{file_tail:>14.3f}{flush:>8.3f}{upload:>9.3f}"
                f"{file_tail / direct_tail:>7.1f}x   {'yes' if same else 'NO'}"
            )
        print("  parts: 0 = a single PutObject; ratio: write+upload / direct")
    if memory:
        print()
        print(
            f"one fresh process per video rendering {NOISE.name} 320x180 @ 30 fps, CRF 0, "
            f"{parse_size(args.memory_part_size) // MIB} MiB parts, straight into S3"
        )
        print(
            f"{'video':<8}{'frames':>7}{'output':>10}{'parts':>7}{'RSS before':>12}"
            f"{'peak RSS':>10}{'Python heap peak':>18}{'render':>9}"
        )
        for m in memory:
            print(
                f"{m.seconds:>4} s  {m.frames:>7}{m.size / MIB:>8.1f}Mi{m.parts:>7}"
                f"{m.rss_before / MIB:>10.1f}Mi{m.rss_peak / MIB:>8.1f}Mi"
                f"{m.heap_peak / MIB:>16.1f}Mi{m.render_seconds:>8.1f}s"
            )
        short, long = memory
        print(
            f"ratio {long.seconds} s / {short.seconds} s: "
            f"length x{long.frames / short.frames:.0f}, output x{long.size / short.size:.1f}, "
            f"peak RSS x{long.rss_peak / short.rss_peak:.2f}, "
            f"Python heap peak x{long.heap_peak / short.heap_peak:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--configs",
        default="23:8MiB,23:5MiB,0:8MiB",
        help="CRF:part size pairs for part 1, '' to skip it (default 23:8MiB,23:5MiB,0:8MiB)",
    )
    parser.add_argument("--template", default=str(TEMPLATE), help="HTML template for part 1")
    parser.add_argument("--params", default=str(PARAMS), help="JSON object of parameters")
    parser.add_argument(
        "--link-mbps", type=float, default=0.0, help="emulate an uplink of N Mbit/s (part 1)"
    )
    parser.add_argument("--short", type=int, default=10, help="short video, seconds (default 10)")
    parser.add_argument("--long", type=int, default=120, help="long video, seconds (default 120)")
    parser.add_argument(
        "--memory-part-size",
        default=str(S3Settings.part_size),
        help="part size for part 2 (default: the sink's, 5 MiB)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip part 2")
    parser.add_argument("--memory-case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # tests/ is not installed: moto's server helpers live there
    if args.memory_case:
        print(json.dumps(asdict(asyncio.run(memory_case(args.memory_case)))))
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.params_data = json.loads(Path(args.params).read_text())
    from tests.moto_server import MotoServer

    tmp = Path(tempfile.mkdtemp(prefix="framefleet-s3-bench-"))
    moto = MotoServer.start(tmp / "moto.log")
    proxy: subprocess.Popen[str] | None = None
    try:
        endpoint = moto.url
        if args.link_mbps:
            # The link emulator runs in its own process: no CPU time taken from the render here.
            proxy = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "s3_fault_proxy.py"),
                 "--upstream-port", str(moto.port), "--link-mbps", str(args.link_mbps)],
                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            assert proxy.stdout is not None
            endpoint = proxy.stdout.readline().strip()
        return asyncio.run(bench(args, moto.url, endpoint, tmp))
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait()
        moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
