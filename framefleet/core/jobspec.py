"""Job rules shared by every side: defaults, validation, frame count and content key."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from google.protobuf import json_format, struct_pb2

from framefleet.core import chunks, hyperframes, naming, sources
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

# Bump when a change to the agent's rendering or encoding changes output bytes:
# it is part of every content key, so old cached outputs are not reused.
RENDERER_VERSION = "13"
# The VideoFlow browser runtime VideoJSON jobs render with (agent/videoflow/package.json).
VIDEOFLOW_RUNTIME = "@videoflow/renderer-browser@1.2.2"

MIN_SIDE, MAX_SIDE = 16, 4096
MAX_PIXELS = 3840 * 2160
MAX_FPS = 120
MAX_SECONDS = 600
MAX_FRAMES = MAX_SECONDS * 60
MAX_BUNDLE_BYTES = 48 * 1024 * 1024
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
ASSET_SUFFIXES = frozenset(
    ".css .js .mjs .json .woff .woff2 .ttf .otf .png .jpg .jpeg .gif .webp .svg .avif"
    " .mp4 .webm .mov .m4a .aac .mp3 .wav .ogg .opus .flac".split()
)
DEFAULT_MAX_ATTEMPTS = 3
# Limits on what a job carries besides its source (network input: each is refused by name).
MAX_PARAMS_BYTES = 64 * 1024
MAX_PARAMS_DEPTH = 32
MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE = 32, 63, 256
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_LIMIT = 10
# Output formats: container -> (video codec, default CRF, highest CRF). Sound goes with them:
# AAC in MP4, Opus in WebM (framefleet/agent/encoder.py).
# HLS: a fragmented MP4 and a VOD playlist of byte ranges of it (the output is the playlist).
# MOV (ProRes), GIF and PNG sequences have no CRF (None): a ProRes profile sets a MOV's
# quality, and GIF and PNG are what they are. A MOV's sound is PCM; a GIF and a PNG sequence
# have none (framefleet/agent/file_encoders.py).
FORMATS: dict[str, tuple[str, int | None, int]] = {
    "mp4": ("h264", 23, 51),
    "webm": ("vp9", 32, 63),
    "hls": ("h264", 23, 51),
    "mov": ("prores", None, 0),
    "gif": ("gif", None, 0),
    "png-sequence": ("png", None, 0),
}
# A PNG sequence is one ZIP of frame_000000.png, ... (stored, not compressed again).
SUFFIXES = {
    "mp4": "mp4",
    "webm": "webm",
    "hls": "m3u8",
    "mov": "mov",
    "gif": "gif",
    "png-sequence": "zip",
}
# ProRes profiles (HyperFrames' names; prores_ks calls 422 "standard"): 4444 keeps alpha
# (yuva444p10le), the rest are 4:2:2 (yuv422p10le).
PRORES_PROFILES = ("4444", "hq", "422", "lt", "proxy")
# HyperFrames' resolution presets (its CANVAS_DIMENSIONS, aliases and matching rule): the
# output's size; the page keeps its layout size and is drawn at the device scale factor that
# fills it. An orientation-free name (1080p, 4k, ...) takes the page's orientation.
RESOLUTIONS = {
    "landscape": (1920, 1080), "portrait": (1080, 1920), "square": (1080, 1080),
    "landscape-4k": (3840, 2160), "portrait-4k": (2160, 3840), "square-4k": (2160, 2160),
    "landscape-1440p": (2560, 1440), "portrait-1440p": (1440, 2560),
    "square-1440p": (1440, 1440), "landscape-720p": (1280, 720), "portrait-720p": (720, 1280),
    "square-720p": (720, 720), "landscape-480p": (854, 480), "portrait-480p": (480, 854),
    "square-480p": (480, 480),
}  # fmt: skip
RESOLUTION_ALIASES = {
    "1080p": "landscape", "hd": "landscape", "1080p-portrait": "portrait",
    "portrait-1080p": "portrait", "4k": "landscape-4k", "uhd": "landscape-4k",
    "4k-portrait": "portrait-4k", "1080p-square": "square", "square-1080p": "square",
    "4k-square": "square-4k", "1440p": "landscape-1440p", "qhd": "landscape-1440p",
    "1440p-portrait": "portrait-1440p", "1440p-square": "square-1440p",
    "720p": "landscape-720p", "720p-portrait": "portrait-720p", "720p-square": "square-720p",
    "480p": "landscape-480p", "480p-portrait": "portrait-480p", "480p-square": "square-480p",
}  # fmt: skip
ORIENTATION_FREE = frozenset({"1080p", "hd", "4k", "uhd", "1440p", "qhd", "720p", "480p"})
MAX_SCALE = 10
# HyperFrames' quality names -> {codec: (crf, preset)}, its own numbers (its ENCODER_PRESETS:
# draft, "standard" at CRF 16 for looks, "high" for delivery), for VP9 too; the preset is
# x264's (VP9 encodes at one speed, framefleet/agent/encoder.py). A job with no quality name keeps
# framefleet's defaults (CRF 23 veryfast, VP9 CRF 32), not HyperFrames' "looks".
QUALITIES = {
    "draft": {"h264": (28, "ultrafast"), "vp9": (28, "")},
    "looks": {"h264": (16, "medium"), "vp9": (16, "")},
    "delivery": {"h264": (15, "fast"), "vp9": (15, "")},
}


@dataclass(frozen=True)
class Output:
    """Output settings with defaults filled in: what the agent encodes."""

    width: int
    height: int
    fps: int
    frames: int
    codec: str
    crf: int
    preset: str
    format: str = "mp4"
    # ProRes profile ("mov" only).
    profile: str = ""
    # A partial render: frame n of the output is frame start_frame + n of the source.
    start_frame: int = 0
    # The page's layout size under a resolution preset (0: the output's own size); Chromium
    # draws it at width / page_width device pixels per CSS pixel.
    page_width: int = 0
    page_height: int = 0
    # HyperFrames' quality name ("": none): beyond CRF and preset it sets how the agent
    # captures, converts and encodes as HyperFrames' producer does (agent/hf_quality.py).
    quality: str = ""

    @property
    def page_size(self) -> tuple[int, int]:
        return (self.page_width or self.width, self.page_height or self.height)

    @property
    def scale(self) -> float:
        """Chromium's device scale factor: output pixels per CSS pixel."""
        return self.width / self.page_size[0]


# Output fields added after content keys existed: left out of the key at their defaults, so
# the keys (and cached outputs) of jobs that do not use them stay as they were.
_LATER_FIELDS = {
    "profile": "", "start_frame": 0, "page_width": 0, "page_height": 0, "quality": "",
}  # fmt: skip


def has_alpha(output: Output) -> bool:
    """The output keeps the page's transparency (PNG captures over a transparent default)."""
    prores_4444 = (output.format, output.profile) == ("mov", "4444")
    return output.format in ("webm", "png-sequence") or prores_4444


def invalid(message: str) -> FramefleetError:
    return FramefleetError(ErrorClass.INVALID_JOB, message)


def open_length(spec: pb.JobSpec) -> bool:
    """A HyperFrames composition given no length (no frames, no duration): as in HyperFrames,
    its length is its own, known once it has loaded (its root timeline, or its last timed
    clip; agent/hyperframes.js compositionLength), so its Output has frames 0 until then."""
    return (
        spec.WhichOneof("source") == "template"
        and not spec.output.HasField("frames")
        and not spec.output.HasField("duration_seconds")
        and hyperframes.composition_root(spec.template.html) is not None
    )


def resolve_output(o: pb.OutputSettings, *, open_length: bool = False) -> Output:
    """Fills defaults for what is unset and checks bounds (a zero given is refused, never
    taken for the default); raises INVALID_JOB with the reason. With ``open_length`` (see
    open_length()) and no length set, frames is 0: the page's own."""
    width = o.width if o.HasField("width") else 1280
    height = o.height if o.HasField("height") else 720
    fps = o.fps if o.HasField("fps") else 30
    for name, side in (("width", width), ("height", height)):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise invalid(f"{name} {side} is outside {MIN_SIDE}..{MAX_SIDE}")
        if side % 2:
            raise invalid(f"{name} {side} is odd; H.264 4:2:0 needs even dimensions")
    if width * height > MAX_PIXELS:
        raise invalid(f"{width}x{height} is larger than 3840x2160")
    if not 1 <= fps <= MAX_FPS:
        raise invalid(f"fps {fps} is outside 1..{MAX_FPS}")
    page = (0, 0)
    if o.resolution:
        page, (width, height) = (width, height), _preset(o.resolution, width, height)
    start, frames = 0, _length(o, fps, open_length)
    if o.HasField("start_seconds") or o.HasField("end_seconds"):
        start, frames = _cut(o, fps, frames)
    container = o.format or "mp4"
    if container not in FORMATS:
        raise invalid(f"format {container!r} is not one of {', '.join(FORMATS)}")
    codec, default_crf, max_crf = FORMATS[container]
    if (o.codec or codec) != codec:
        raise invalid(f"codec {o.codec!r} does not go in {container} (it takes {codec})")
    if o.profile and container != "mov":
        raise invalid(f"profile {o.profile!r}: only a mov (ProRes) output has profiles")
    if default_crf is None:  # MOV, GIF: no CRF, preset or quality name
        for name in ("crf", "preset", "quality"):
            if o.HasField(name) if name == "crf" else getattr(o, name):
                raise invalid(
                    f"{name} does not apply to {container}"
                    + (": choose a ProRes profile" if container == "mov" else "")
                )
        profile = (o.profile or "4444") if container == "mov" else ""
        if profile and profile not in PRORES_PROFILES:
            raise invalid(f"profile {profile!r} is not one of {', '.join(PRORES_PROFILES)}")
        return Output(width, height, fps, frames, codec, 0, "", container, profile, start, *page)
    if o.quality and o.quality not in QUALITIES:
        raise invalid(f"quality {o.quality!r} is not one of {', '.join(QUALITIES)}")
    # No quality name: framefleet's own defaults (CRF per format, veryfast).
    quality_crf, quality_preset = QUALITIES[o.quality][codec] if o.quality else (default_crf, "")
    crf = o.crf if o.HasField("crf") else quality_crf
    if not 0 <= crf <= max_crf:
        raise invalid(f"crf {crf} is outside 0..{max_crf} ({codec})")
    preset = o.preset or quality_preset or "veryfast"
    if preset not in X264_PRESETS:
        raise invalid(f"preset {preset!r} is not one of {', '.join(X264_PRESETS)}")
    return Output(
        width, height, fps, frames, codec, crf, preset, container, "", start, *page, o.quality
    )


def _preset(name: str, width: int, height: int) -> tuple[int, int]:
    """A resolution preset's size, for a page laid out at width x height."""
    wanted = name.lower()
    preset = wanted if wanted in RESOLUTIONS else RESOLUTION_ALIASES.get(wanted)
    if preset is None:
        names = ", ".join([*RESOLUTIONS, *RESOLUTION_ALIASES])
        raise invalid(f"resolution {name!r} is not one of {names}")
    if wanted in ORIENTATION_FREE:  # the same tier in the page's orientation
        tier = _tier(preset)
        preset = next(
            (p for p in RESOLUTIONS if _tier(p) == tier and _fits(p, width, height)), preset
        )
    size = RESOLUTIONS[preset]
    if not _fits(preset, width, height):
        raise invalid(
            f"resolution {name} ({size[0]}x{size[1]}) is not the shape of the {width}x{height}"
            " page: a preset draws the page at a higher device scale factor, it does not lay"
            " it out again; set width and height of that shape, or no preset"
        )
    if size[0] > MAX_SCALE * width:
        raise invalid(
            f"resolution {name} is more than {MAX_SCALE}x the {width}x{height} page"
            " (Chromium scales a view at most that much): lay the page out larger"
        )
    return size


def _tier(preset: str) -> str:
    return preset[preset.index("-") :] if "-" in preset else ""


def _fits(preset: str, width: int, height: int) -> bool:
    """HyperFrames' rule: the same shape, or within a pixel's rounding when scaling down
    (854x480 for a 16:9 page)."""
    w, h = RESOLUTIONS[preset]
    drift = abs(w * height - h * width)
    return drift == 0 or (w < width and drift < min(width, height))


def _length(o: pb.OutputSettings, fps: int, open_length: bool) -> int:
    """The source's whole length in frames (0: its own, known once loaded)."""
    if o.HasField("frames"):
        frames = o.frames
    elif o.HasField("duration_seconds"):
        if not o.duration_seconds > 0:
            raise invalid(f"duration {o.duration_seconds:g}s: a duration must be greater than zero")
        if o.duration_seconds > MAX_SECONDS:
            raise invalid(f"duration {o.duration_seconds}s is longer than {MAX_SECONDS}s")
        frames = round(o.duration_seconds * fps)
    elif open_length:
        frames = 0
    else:
        raise invalid("set a duration greater than zero, or a frame count")
    if (frames or not open_length) and (
        not 1 <= frames <= MAX_FRAMES or frames > MAX_SECONDS * fps
    ):
        raise invalid(f"{frames} frames is outside 1..{min(MAX_FRAMES, MAX_SECONDS * fps)}")
    return frames


def _cut(o: pb.OutputSettings, fps: int, frames: int) -> tuple[int, int]:
    """A partial render's first source frame and its length in frames (0: to the end of a
    source whose length is its own)."""
    start_s = o.start_seconds if o.HasField("start_seconds") else 0.0
    if not 0 <= start_s <= MAX_SECONDS:
        raise invalid(f"start {start_s:g}s is outside 0..{MAX_SECONDS}s")
    start = round(start_s * fps)
    end = frames
    if o.HasField("end_seconds"):
        if not start_s < o.end_seconds <= MAX_SECONDS:
            raise invalid(f"end {o.end_seconds:g}s is not after start {start_s:g}s")
        end = round(o.end_seconds * fps)
        if frames and end > frames:
            raise invalid(f"end {o.end_seconds:g}s is past the source's {frames / fps:g}s")
    if end and end <= start:
        raise invalid(f"start {start_s:g}s is not before the end ({end / fps:g}s)")
    return start, (end - start if end else 0)


def validate(spec: pb.JobSpec, *, variants: bool = False) -> Output:
    """Everything a job must satisfy before it is queued. ``variants``: the spec is shared by
    rows that bring their own parameters (a batch), so a VideoJSON placeholder may still lack
    its parameter here."""
    check_limits(spec)
    sources.source_for(spec).validate(spec, variants=variants)
    naming.fields(spec.output_name)
    chunks.check(spec)
    output = resolve_output(spec.output, open_length=open_length(spec))
    if not output.frames and spec.chunks > 1:
        raise invalid("a composition that takes its length from its timeline cannot be split")
    return output


def check_limits(spec: pb.JobSpec) -> None:
    """The caps on parameters, labels, priority and attempts (before anything reads them)."""
    check_params(spec.params)
    if len(spec.labels) > MAX_LABELS:
        raise invalid(f"{len(spec.labels)} labels: at most {MAX_LABELS}")
    for key, value in spec.labels.items():
        if not key or len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE:
            raise invalid(
                f"label {key[:20]!r}: keys are 1..{MAX_LABEL_KEY} characters,"
                f" values at most {MAX_LABEL_VALUE}"
            )
    low, high = PRIORITY_RANGE
    if not low <= spec.priority <= high:
        raise invalid(f"priority {spec.priority} is outside {low}..{high}")
    if spec.max_attempts > MAX_ATTEMPTS_LIMIT:
        raise invalid(f"max_attempts {spec.max_attempts} is above {MAX_ATTEMPTS_LIMIT}")


def check_params(params: struct_pb2.Struct) -> None:
    """Parameters: at most MAX_PARAMS_BYTES serialized, nested at most MAX_PARAMS_DEPTH deep."""
    size = params.ByteSize()
    if size > MAX_PARAMS_BYTES:
        raise invalid(f"parameters are {size} bytes: at most {MAX_PARAMS_BYTES}")
    # Iterative, so a hostile nesting cannot exhaust the stack.
    pending: list[tuple[struct_pb2.Value, int]] = [(value, 1) for value in params.fields.values()]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_PARAMS_DEPTH:
            raise invalid(f"parameters are nested more than {MAX_PARAMS_DEPTH} deep")
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            pending += [(v, depth + 1) for v in value.struct_value.fields.values()]
        elif kind == "list_value":
            pending += [(v, depth + 1) for v in value.list_value.values]


def params_dict(params: struct_pb2.Struct) -> dict[str, Any]:
    """The job's parameters as JSON values; whole numbers come back as ints, not 42.0."""

    def tidy(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: tidy(x) for k, x in v.items()}
        if isinstance(v, list):
            return [tidy(x) for x in v]
        return v

    result: dict[str, Any] = tidy(json_format.MessageToDict(params))
    return result


def source_key(spec: pb.JobSpec) -> str:
    """SHA-256 of the job's source (template and assets, or VideoJSON document): the identity
    under which the source is stored once and a page keeps it loaded between variants."""
    h = hashlib.sha256()
    h.update(sources.kind(spec).encode() + b"\0")
    for part in sources.source_for(spec).identity(spec):
        h.update(part)
    return h.hexdigest()


def content_key(spec: pb.JobSpec, source: str | None = None, output: Output | None = None) -> str:
    """SHA-256 of everything that affects the output's pixels and bytes. ``source`` and
    ``output`` are the spec's source key and resolved output when the caller has them (a
    batch computes them once, not per row)."""
    canonical = {
        "renderer": RENDERER_VERSION,
        "source": source or source_key(spec),
        "params": params_dict(spec.params),
        "output": {
            name: value
            for name, value in asdict(
                output or resolve_output(spec.output, open_length=open_length(spec))
            ).items()
            if _LATER_FIELDS.get(name, object()) != value
        },
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def output_key(key: str, container: str = "mp4") -> str:
    """Object name for a content key, spread over hashed prefixes (no hot prefix)."""
    return f"{key[:2]}/{key[2:4]}/{key}.{SUFFIXES[container]}"


def output_url(destination: str, key: str, container: str = "mp4") -> str:
    """Full output URL: a file:// URL for local directories, else destination/key."""
    return destination_url(destination) + output_key(key, container)


@functools.lru_cache(maxsize=256)
def destination_url(destination: str) -> str:
    """The destination as a URL prefix ending in "/" (local paths become file:// URLs)."""
    parsed = urlparse(destination)
    if parsed.scheme in ("", "file"):
        directory = Path(parsed.path if parsed.scheme else destination).expanduser().resolve()
        return directory.as_uri().rstrip("/") + "/"
    return destination.rstrip("/") + "/"


def load_template(path: str | Path) -> pb.Template:
    """Reads a template and the asset files beside it (fonts, images, scripts, media, nested
    compositions). ``path`` may be a HyperFrames project folder (its index.html)."""
    path = hyperframes.entry_file(path)
    if not path.is_file():
        raise FramefleetError(ErrorClass.TEMPLATE_NOT_FOUND, f"no template file at {path}")
    try:
        html = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise invalid(f"{path} is not UTF-8 text: {e}") from None
    template = pb.Template(html=html)
    root = path.parent
    real_root = root.resolve()
    # A HyperFrames project's nested compositions are HTML files of their own.
    nested = hyperframes.NESTED_SUFFIXES if hyperframes.composition_root(html) else frozenset()
    suffixes = ASSET_SUFFIXES | nested
    for asset in sorted(root.rglob("*")):
        relative = asset.relative_to(root)
        hidden = any(part.startswith(".") for part in relative.parts)
        skipped = any(part in hyperframes.SKIPPED_DIRS for part in relative.parts[:-1])
        wanted = asset.suffix.lower() in suffixes and not (hidden or skipped)
        if wanted and asset != path and asset.is_file():
            # A link out of the folder would ship whatever it points at (/etc/passwd) to the farm.
            if not asset.resolve().is_relative_to(real_root):
                raise invalid(
                    f"{asset} is a symbolic link to {asset.resolve()}, outside the template's "
                    f"folder {real_root}: copy the file into the folder instead"
                )
            template.assets[relative.as_posix()] = asset.read_bytes()
    return template


def template_job(
    template: str | Path,
    params: dict[str, Any] | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
    duration: float | None = None,
    frames: int | None = None,
    crf: int | None = None,
    preset: str = "",
    format: str = "",
    destination: str = "",
    priority: int = 0,
    max_attempts: int = 0,
    name: str = "",
    chunks: int = 0,
    chunk_frames: int = 0,
    profile: str = "",
    quality: str = "",
    start: float | None = None,
    end: float | None = None,
    resolution: str = "",
) -> pb.JobSpec:
    """A job spec for an HTML template file (or a HyperFrames project folder) and its
    parameters. Output settings not given (None) come from a HyperFrames composition root's
    data-width, data-height, data-fps and data-duration, else 1280x720 at 30 fps. ``name``: a
    readable output name besides the content-addressed one, e.g. "{row_key}.mp4" (see
    core.naming). ``chunks=N`` splits an MP4 into N chunks rendered at once (1: never),
    ``chunk_frames=F`` into chunks of F frames; by default the coordinator splits a long MP4
    by its free slots. ``format``: mp4, webm, hls, mov (ProRes ``profile``) or gif;
    ``quality``: draft, looks or delivery; ``start``/``end``: seconds of the source to render
    (a partial render); ``resolution``: a preset the page is drawn at (RESOLUTIONS)."""
    loaded = load_template(template)
    own = hyperframes.output_defaults(loaded.html)
    output = _output(own, width, height, fps, duration, frames)
    _options(output, format, preset, crf, profile, quality, start, end, resolution)
    spec = pb.JobSpec(template=loaded, output=output)
    spec.chunks, spec.chunk_frames = chunks, chunk_frames
    return _finish_spec(spec, params, destination, priority, max_attempts, name)


def _output(
    own: dict[str, Any],
    width: int | None,
    height: int | None,
    fps: int | None,
    duration: float | None,
    frames: int | None,
) -> pb.OutputSettings:
    """Output settings with only what was given (None: not given) or what the source says of
    itself set: a zero given stays, and is refused by validation rather than taken for
    "the default"."""
    output = pb.OutputSettings()
    for name, given, fallback in (
        ("width", width, own.get("width")),
        ("height", height, own.get("height")),
        ("fps", fps, own.get("fps")),
    ):
        value = given if given is not None else fallback
        if value is not None and (given is not None or value):
            setattr(output, name, round(value))
    if frames is not None:
        output.frames = frames
    if duration is not None:
        output.duration_seconds = duration
    elif frames is None and own.get("duration"):
        output.duration_seconds = own["duration"]
    return output


def _options(
    output: pb.OutputSettings,
    format: str,
    preset: str,
    crf: int | None,
    profile: str,
    quality: str,
    start: float | None,
    end: float | None,
    resolution: str,
) -> None:
    """The encoding options given (None, "": not given) onto ``output``."""
    output.format, output.preset, output.profile, output.quality = format, preset, profile, quality
    output.resolution = resolution
    if crf is not None:
        output.crf = crf
    if start is not None:
        output.start_seconds = start
    if end is not None:
        output.end_seconds = end


def _finish_spec(
    spec: pb.JobSpec,
    params: dict[str, Any] | None,
    destination: str,
    priority: int,
    max_attempts: int,
    name: str,
) -> pb.JobSpec:
    """The settings every job shares, whatever its source."""
    spec.destination, spec.priority, spec.max_attempts = destination, priority, max_attempts
    spec.output_name = name
    spec.params.update(params or {})
    return spec


def video_json_job(
    document: str | Path,
    params: dict[str, Any] | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
    duration: float | None = None,
    frames: int | None = None,
    crf: int | None = None,
    preset: str = "",
    format: str = "",
    destination: str = "",
    priority: int = 0,
    max_attempts: int = 0,
    name: str = "",
    chunks: int = 0,
    chunk_frames: int = 0,
    profile: str = "",
    quality: str = "",
    start: float | None = None,
    end: float | None = None,
    resolution: str = "",
) -> pb.JobSpec:
    """A job spec for a VideoJSON document: a ``.json`` file (files it names beside it are
    inlined as data: URLs) or the document's text. Output settings not given (None) come from the
    document's own width, height, fps and duration."""
    from framefleet.core import videojson

    text = str(document)
    if isinstance(document, Path) or not text.lstrip().startswith("{"):
        text = videojson.load(document)
    own = videojson.output_defaults(text)
    output = _output(own, width, height, fps, duration, frames)
    _options(output, format, preset, crf, profile, quality, start, end, resolution)
    spec = pb.JobSpec(video_json=text, output=output)
    spec.chunks, spec.chunk_frames = chunks, chunk_frames
    return _finish_spec(spec, params, destination, priority, max_attempts, name)
