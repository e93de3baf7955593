"""The CPU features the agent's media code may use, pinned, so one job gives one file on any host.

x264 and FFmpeg pick their assembly at run time from the CPU they find, and their output depends
on the pick (measured on the same pictures; bench/README.md, "The same bytes on every CPU"):

- x264 with AVX-512 is not even deterministic: its AVX-512 ``mbtree_propagate_list`` works on 8
  macroblocks at a time and scatters the lanes past the end of a row into the reference costs,
  so what is in memory there changes the macroblock tree, and so the bytes (run to run, in one
  process, whenever the lowres width in macroblocks is not a multiple of 8: 160, 176, 1080 px).
- x264 with SSE2 only, or none, makes other choices than x264 with SSSE3 to AVX2.
- FFmpeg with no SIMD decodes Chromium's JPEGs to other pictures; its AAC encoder makes other
  bytes with SSE2 than with AVX2/FMA3.

So every agent runs both with one fixed set, x86-64-v3 (AVX2, FMA3, BMI1/2, LZCNT and what they
imply) without AVX-512: the same code on every CPU that has the set, which is every x86-64
server CPU since 2015 (Intel Haswell, AMD Zen). A host without it cannot make the fleet's bytes,
and ``pin()`` says so instead of encoding different ones.
"""

from __future__ import annotations

import ctypes
import platform
from functools import cache
from pathlib import Path

from framefleet.core.errors import ErrorClass, FramefleetError

# x264's own name for the x86-64-v3 set (its ``asm`` option; AVX-512 excluded).
X264_ASM = "AVX2"
# FFmpeg's AV_CPU_FLAG_* bits for the same set (libavutil/cpu.h): MMX, MMXEXT, SSE, SSE2, SSE3,
# SSSE3, SSE4.1, SSE4.2, CMOV, AVX, AVX2, FMA3, BMI1, BMI2; no "slow" hints, no AVX-512.
FFMPEG_CPU_FLAGS = (
    0x0001 | 0x0002 | 0x0008 | 0x0010 | 0x0040 | 0x0080 | 0x0100 | 0x0200
    | 0x1000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000
)  # fmt: skip
# The /proc/cpuinfo names of that set: a host must have every one (abm is LZCNT, pni SSE3).
REQUIRED_FEATURES = frozenset(
    "mmx sse sse2 pni ssse3 sse4_1 sse4_2 cmov avx avx2 fma abm bmi1 bmi2".split()
)
X86_64 = ("x86_64", "amd64")


def missing_features(machine: str, cpu_flags: set[str]) -> list[str]:
    """What this host lacks of the pinned set (the machine itself, if it is not x86-64)."""
    if machine.lower() not in X86_64:
        return [f"x86-64 (this host is {machine})"]
    return sorted(REQUIRED_FEATURES - cpu_flags)


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def _libavutil() -> ctypes.CDLL:
    """The libavutil PyAV loaded (its wheel bundles one): found in this process's mappings,
    so the flags are set in the very library that PyAV's codecs and filters ask."""
    import av  # noqa: F401  (loads libavutil)

    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "/libavutil" in path:
            return ctypes.CDLL(path)
    raise FramefleetError(ErrorClass.ENCODE_ERROR, "PyAV's libavutil is not loaded")


@cache
def pin() -> None:
    """Checks the host has the pinned set and makes FFmpeg use exactly it, once per process,
    before any codec or filter opens (they read the flags when they open); x264 gets its set
    from the encoder's options (``X264_ASM``)."""
    missing = missing_features(platform.machine(), _cpu_flags())
    if missing:
        raise FramefleetError(
            ErrorClass.ENCODE_ERROR,
            "this CPU lacks " + ", ".join(missing) + ": agents encode with x86-64-v3 "
            "(AVX2) so every host makes the same bytes (docs/explanation/architecture.md)",
        )
    avutil = _libavutil()
    avutil.av_force_cpu_flags(ctypes.c_int(FFMPEG_CPU_FLAGS))
    if avutil.av_get_cpu_flags() != FFMPEG_CPU_FLAGS:
        raise FramefleetError(ErrorClass.ENCODE_ERROR, "FFmpeg did not take the pinned flags")
