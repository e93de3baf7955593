"""Do x264's and FFmpeg's bytes depend on the CPU features they find? (issue 22)

Encodes the same synthetic pictures (tests/test_chunks.py's moving bar, 176 px wide, 207 frames
at 30 fps, MP4 with and without sound) with x264's assembly restricted to each instruction set
in turn and FFmpeg's SIMD likewise, RUNS times each in this one process, and prints per setting
how many different files came out and a hash of each. One process per FFmpeg setting (FFmpeg
reads its flags when a codec opens; av_force_cpu_flags is per process).

    .venv/bin/python bench/cpu_bytes.py [--runs 10]

A set this host lacks is skipped (forcing it would be an illegal instruction).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# x264's cumulative set names (its `asm` option), oldest first; "0" is no assembly.
X264_SETS = ["0", "SSE2", "SSSE3", "AVX", "AVX2", "AVX512"]
# FFmpeg's AV_CPU_FLAG_* for: none, up to SSE2, the pinned x86-64-v3 set (agent/pinned_cpu.py).
FFMPEG_SETS = {"none": 0, "SSE2": 0x1 | 0x2 | 0x8 | 0x10, "x86-64-v3": -1}
HOST_NEEDS = {"SSE2": "sse2", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "AVX512": "avx512bw"}


def one_ffmpeg_setting(flags: int, runs: int) -> dict[str, dict[str, int]]:
    """In a child process: every x264 set under one FFmpeg setting -> {file hash: count}."""
    import ctypes

    from framefleet.agent import pinned_cpu
    from tests.test_chunks import jpegs
    from tests.test_determinism import PICTURES, encode

    pinned_cpu.pin()
    if flags >= 0:
        pinned_cpu._libavutil().av_force_cpu_flags(ctypes.c_int(flags))
    host = pinned_cpu._cpu_flags()
    results: dict[str, dict[str, int]] = {}
    for x264 in X264_SETS:
        if x264 in HOST_NEEDS and HOST_NEEDS[x264] not in host:
            continue
        pinned_cpu.X264_ASM = x264  # read when each segment's x264 opens
        for sound in (False, True):
            output = dataclasses.replace(PICTURES, format="mp4")
            images = jpegs(output)
            files = collections.Counter(encode(output, sound, images) for _ in range(runs))
            results[f"{x264}{' + sound' if sound else ''}"] = dict(files)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_ffmpeg_setting(args.child, args.runs)))
        return
    print(f"| FFmpeg SIMD | x264 asm | files in {args.runs} runs | hashes |")
    print("|---|---|---|---|")
    for name, flags in FFMPEG_SETS.items():
        child = [sys.executable, __file__, "--runs", str(args.runs), "--child", str(flags)]
        found = json.loads(subprocess.run(child, capture_output=True, check=True).stdout)
        for x264, files in found.items():
            hashes = ", ".join(f"{h} x{n}" if len(files) > 1 else h for h, n in files.items())
            print(f"| {name} | {x264} | {len(files)} | {hashes} |")


if __name__ == "__main__":
    main()
