"""What HyperFrames' quality names (draft, looks, delivery: ``Output.quality``) set beyond CRF and
preset (framefleet/core/jobspec.py QUALITIES), as HyperFrames' producer (0.9.84) renders them:

- capture: JPEG at quality 100, 80 for draft (its resolveCaptureJpegQuality), where framefleet's
  own is 92;
- colour: the JPEG's full-range BT.601 YUV to 8-bit RGB (nearest chroma, accurate rounding),
  then to limited-range BT.709 4:2:0 (nearest), its SDR_CAPTURE_TO_BT709_FILTER. framefleet's
  own path converts YUV to YUV (libavfilter's colorspace: faster, and nearer the exact value),
  which puts pale flat colours up to 2 levels from HyperFrames' (docs/benchmarks.md,
  "HyperFrames' regression suite");
- x264: no B-frames and aq-mode 3, and above ultrafast aq-strength 0.8 and deblock 1,1 (its
  buildEncoderArgs).

A job without a quality name keeps framefleet's own capture and encoding, and its bytes."""

from __future__ import annotations

JPEG_QUALITY = 92  # framefleet's own capture
# HyperFrames' capture chain, as libavfilter filters (name, arguments).
RGB_CONVERSION = [
    ("scale", "in_color_matrix=bt601:in_range=pc:flags=neighbor+accurate_rnd"),
    ("format", "gbrp"),
    ("scale", "out_color_matrix=bt709:out_range=tv:flags=neighbor"),
    ("format", "yuv420p"),
]


def jpeg_quality(quality: str) -> int:
    if not quality:
        return JPEG_QUALITY
    return 80 if quality == "draft" else 100


def x264_params(quality: str, preset: str) -> list[str]:
    if not quality:
        return []
    params = ["bframes=0", "aq-mode=3"]
    if preset != "ultrafast":
        params += ["aq-strength=0.8", "deblock=1,1"]
    return params
