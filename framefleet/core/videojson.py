"""VideoJSON documents (VideoFlow's portable video format) as a job source: read one from disk
with its files inlined, fill in its parameters, and check it against the schema and the rules
the schema cannot say. Every refusal is INVALID_JOB and names the JSON path at fault."""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import re
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from framefleet.core.errors import ErrorClass, FramefleetError

# Same cap as a template bundle: a document carries its images and fonts as data: URLs.
MAX_DOCUMENT_BYTES = 48 * 1024 * 1024
MAX_PIXELS = 3840 * 2160
# The font the agent's runtime always has (bundled from npm, see agent/videoflow). VideoFlow
# quotes fontFamily, so even "serif" names a font, not the CSS generic.
BUNDLED_FONTS = frozenset({"noto sans"})
MEDIA_TYPES = frozenset({"video", "audio"})
# Sound properties framefleet mixes: volume (static, 0..MAX_VOLUME; above 1 amplifies) and mute.
MAX_VOLUME = 4.0
UNSUPPORTED_SOUND = {"pan": 0, "pitch": 1}  # property: the only value accepted (its default)
# The agent's resampler's range for a media layer's speed (agent/soundtrack.py MIN/MAX_RATE).
MIN_SPEED, MAX_SPEED = 1 / 16, 16
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")
# Media types for font files, which mimetypes may not know.
_SOURCE_SUFFIXES = {
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
    ".mov": "video/quicktime",
}

Json = Any


def invalid(message: str) -> FramefleetError:
    return FramefleetError(ErrorClass.INVALID_JOB, message)


def _path(parts: Iterator[str | int] | list[str | int]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][\w$]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --- reading --------------------------------------------------------------------------------


# Deeper than any real document; bounds the validator's recursion.
MAX_DEPTH = 64


def parse(text: str) -> dict[str, Json]:
    """The document as JSON; refuses text that is not one JSON object."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise invalid(f"the VideoJSON document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise invalid(
            f"VideoJSON $: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})"
        ) from None
    except RecursionError:
        raise invalid(f"VideoJSON $: nested more than {MAX_DEPTH} deep") from None
    if not isinstance(document, dict):
        raise invalid("VideoJSON $: the document must be a JSON object")
    # Checked without recursion before the schema validator (which recurses) sees it.
    pending: list[tuple[Json, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise invalid(f"VideoJSON $: nested more than {MAX_DEPTH} deep")
        if isinstance(value, dict):
            pending += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            pending += [(v, depth + 1) for v in value]
    return document


def _data_url(path: Path) -> str:
    mime = _SOURCE_SUFFIXES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    data = base64.b64encode(path.read_bytes()).decode()
    return f"data:{mime or 'application/octet-stream'};base64,{data}"


def _inline(value: Json, root: Path, where: str) -> Json:
    """A relative ``source`` naming a file beside the document becomes a data: URL."""
    if not isinstance(value, str) or not value or PLACEHOLDER.search(value):
        return value
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):  # data:, http:, … left to validation
        return value
    candidate = (root / value).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise invalid(f"VideoJSON {where}: {value!r} must stay inside the document's folder")
    if not candidate.is_file():
        raise invalid(f"VideoJSON {where}: no file {value!r} beside the document")
    return _data_url(candidate)


def _inline_layers(layers: Json, root: Path, where: str) -> None:
    if not isinstance(layers, list):
        return
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            continue
        settings = layer.get("settings")
        if isinstance(settings, dict) and "source" in settings:
            settings["source"] = _inline(settings["source"], root, f"{where}[{i}].settings.source")
        _inline_layers(layer.get("children"), root, f"{where}[{i}].children")


def load(path: str | Path) -> str:
    """Reads a VideoJSON file; sources that name files beside it (images, fonts in ``fonts``)
    are inlined as data: URLs, so the document that travels with the job is self-contained."""
    path = Path(path)
    if not path.is_file():
        raise FramefleetError(ErrorClass.TEMPLATE_NOT_FOUND, f"no VideoJSON file at {path}")
    try:
        document = parse(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise invalid(f"{path} is not UTF-8 text: {e}") from None
    root = path.parent
    _inline_layers(document.get("layers"), root, "$.layers")
    fonts = document.get("fonts")
    if isinstance(fonts, list):
        for i, font in enumerate(fonts):
            if isinstance(font, dict) and "source" in font:
                font["source"] = _inline(font["source"], root, f"$.fonts[{i}].source")
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


# --- parameters -----------------------------------------------------------------------------


def _lookup(params: dict[str, Json], name: str) -> tuple[bool, Json]:
    if name in params:
        return True, params[name]
    value: Json = params
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _as_text(value: Json) -> str:
    """How JavaScript would print a JSON value into a string (12, 1.5, true, null)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def substitute(document: Json, params: dict[str, Json], *, complete: bool = True) -> Json:
    """Fills ``{{name}}`` placeholders in every string value of the document from the job's
    parameters. A string that is exactly one placeholder takes the parameter's JSON value
    (a number stays a number); inside a longer string it is printed as text. ``{{a.b}}`` reads
    a nested parameter. A placeholder with no parameter is refused, or with ``complete=False``
    (variants to come) left as it is."""

    def walk(value: Json, parts: list[str | int]) -> Json:
        if isinstance(value, str):
            if "{{" not in value:
                return value
            whole = PLACEHOLDER.fullmatch(value)
            if whole:
                found, param = _lookup(params, whole.group(1))
                if not found and not complete:
                    return value
                if not found:
                    raise invalid(
                        f"VideoJSON {_path(parts)}: no parameter {whole.group(1)!r} for {value!r}"
                    )
                return param

            def one(match: re.Match[str]) -> str:
                found, param = _lookup(params, match.group(1))
                if not found and not complete:
                    return match.group(0)
                if not found:
                    raise invalid(
                        f"VideoJSON {_path(parts)}: no parameter {match.group(1)!r} for "
                        f"{match.group(0)!r}"
                    )
                return _as_text(param)

            return PLACEHOLDER.sub(one, value)
        if isinstance(value, list):
            return [walk(v, [*parts, i]) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: walk(v, [*parts, k]) for k, v in value.items()}
        return value

    return walk(document, [])


# --- checking -------------------------------------------------------------------------------


@cache
def schema() -> dict[str, Json]:
    """The committed JSON Schema (framefleet/core/videojson.schema.json)."""
    loaded: dict[str, Json] = json.loads(
        files("framefleet.core").joinpath("videojson.schema.json").read_text(encoding="utf-8")
    )
    return loaded


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(), format_checker=None)


def _unknown_fields(error: Any) -> list[str] | None:
    """For an error about fields a schema does not allow: the fields it does not know at all
    (a field it knows but whose value is wrong also makes unevaluatedProperties fail)."""
    if error.validator not in ("additionalProperties", "unevaluatedProperties"):
        return None
    if not isinstance(error.instance, dict):
        return None
    known = set(error.schema.get("properties", {}))
    patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
    for group in error.schema.get("allOf", []):
        ref = group.get("$ref", "").rsplit("/", 1)[-1]
        known |= set(schema()["$defs"].get(ref, {}).get("properties", {}))
    return [k for k in error.instance if k not in known and not any(p.match(k) for p in patterns)]


def _describe(error: Any) -> str:
    """One schema error as a sentence that names the JSON path at fault."""
    where = error.json_path
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    extra = _unknown_fields(error)
    if extra:
        return f"{_path([*error.absolute_path, extra[0]])}: unknown field {extra[0]!r}"
    if custom:
        got = json.dumps(error.instance, ensure_ascii=False)
        return f"{where}: {custom} (got {got if len(got) <= 60 else got[:57] + '...'})"
    return f"{where}: {error.message}"


def _layers(
    layers: Json, parts: list[str | int]
) -> Iterator[tuple[dict[str, Json], list[str | int]]]:
    for i, layer in enumerate(layers if isinstance(layers, list) else []):
        if isinstance(layer, dict):
            yield layer, [*parts, i]
            yield from _layers(layer.get("children"), [*parts, i, "children"])


def _placeholder(value: Json) -> bool:
    return isinstance(value, str) and PLACEHOLDER.search(value) is not None


def check(document: Json, *, placeholders: bool = False) -> None:
    """Refuses a document that is not a VideoJSON document framefleet can render. With
    ``placeholders``, a value still holding a ``{{placeholder}}`` (a parameter that variants
    will bring) is not judged; everything else is."""
    errors = list(_validator().iter_errors(document))
    if placeholders:
        errors = [e for e in errors if not _placeholder(e.instance)]
    # A known field with a wrong value also fails unevaluatedProperties on the object around
    # it: keep the error that says what is wrong with the value (or none, for a placeholder).
    errors = [e for e in errors if _unknown_fields(e) != []]
    if errors:
        from jsonschema.exceptions import best_match

        raise invalid(f"VideoJSON {_describe(best_match(errors))}")
    if _number(document.get("width")) * _number(document.get("height")) > MAX_PIXELS:
        raise invalid(
            f"VideoJSON $.width: {document['width']}x{document['height']} is larger than 3840x2160"
        )
    fonts = {str(f.get("family")).strip().lower() for f in _dicts(document.get("fonts"))}
    seen: dict[str, str] = {}
    for layer, parts in _layers(document.get("layers"), ["layers"]):
        where = _path(parts)
        kind, layer_id = layer.get("type"), layer.get("id")
        if kind in MEDIA_TYPES:
            _check_media(layer, parts, placeholders)
        if isinstance(layer_id, str) and not _placeholder(layer_id):
            if layer_id in seen:
                raise invalid(
                    f"VideoJSON {where}.id: {layer_id!r} is already the id of {seen[layer_id]}"
                )
            seen[layer_id] = where
        properties = layer.get("properties")
        families = []
        if isinstance(properties, dict):
            families.append((f"{where}.properties.fontFamily", properties.get("fontFamily")))
        for a, animation in enumerate(_dicts(layer.get("animations"))):
            at = f"{where}.animations[{a}]"
            previous = -math.inf
            for k, keyframe in enumerate(_dicts(animation.get("keyframes"))):
                time = keyframe.get("time")
                if animation.get("property") == "fontFamily":
                    families.append((f"{at}.keyframes[{k}].value", keyframe.get("value")))
                if not isinstance(time, (int, float)):
                    continue
                if time < previous:
                    raise invalid(
                        f"VideoJSON {at}.keyframes[{k}].time: {time:g} comes before the "
                        f"previous keyframe's {previous:g}; keyframe times must ascend"
                    )
                previous = time
        for at, family in families:
            if family is None or (placeholders and _placeholder(family)):
                continue
            if str(family).strip().lower() not in BUNDLED_FONTS | fonts:
                raise invalid(
                    f"VideoJSON {at}: font {family!r} is not bundled; renders are offline, so "
                    "add its file under $.fonts (or use Noto Sans, the default)"
                )


def media_data(source: str, where: str) -> bytes:
    """The bytes of a media layer's source, a base64 data: URL (the schema has checked its
    type prefix)."""
    head, comma, body = source.partition(",")
    if not comma or not head.endswith(";base64"):
        raise invalid(f"VideoJSON {where}: a media source must be a base64 data: URL")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise invalid(f"VideoJSON {where}: the data: URL is not valid base64") from None


def _check_media(layer: dict[str, Json], parts: list[str | int], placeholders: bool) -> None:
    """Video and audio layers: what the agent mixes and draws (see agent/videojson.py)."""
    where = _path(parts)
    if "children" in parts:
        raise invalid(
            f"VideoJSON {where}: {layer['type']} layers inside a group are not supported yet"
        )
    settings, properties = layer.get("settings"), layer.get("properties")
    speed = settings.get("speed", 1) if isinstance(settings, dict) else 1
    if isinstance(speed, (int, float)) and speed and not MIN_SPEED <= abs(speed) <= MAX_SPEED:
        raise invalid(
            f"VideoJSON {where}.settings.speed: {speed:g}; media layers play at "
            f"{MIN_SPEED:g} to {MAX_SPEED:g} times (either way)"
        )
    source = settings.get("source") if isinstance(settings, dict) else None
    if isinstance(source, str) and not (placeholders and _placeholder(source)):
        media_data(source, f"{where}.settings.source")
    if not isinstance(properties, dict):
        return
    volume = properties.get("volume", 1)
    if not (placeholders and _placeholder(volume)):
        if isinstance(volume, bool) or not isinstance(volume, (int, float)):
            raise invalid(f"VideoJSON {where}.properties.volume: must be a number")
        if not 0 <= volume <= MAX_VOLUME:
            raise invalid(
                f"VideoJSON {where}.properties.volume: {volume:g} is outside 0..{MAX_VOLUME:g}"
            )
    for name, default in UNSUPPORTED_SOUND.items():
        value = properties.get(name, default)
        if value != default and not (placeholders and _placeholder(value)):
            raise invalid(f"VideoJSON {where}.properties.{name}: {name} is not supported yet")
    for a, animation in enumerate(_dicts(layer.get("animations"))):
        if animation.get("property") in {"volume", "mute", *UNSUPPORTED_SOUND}:
            raise invalid(
                f"VideoJSON {where}.animations[{a}].property: animated "
                f"{animation['property']} is not supported yet (a static value is)"
            )


def _dicts(values: Json) -> list[dict[str, Json]]:
    """The objects in a list (what the schema has checked, or left to variants)."""
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _number(value: Json) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def resolve(text: str, params: dict[str, Json], *, variants: bool = False) -> dict[str, Json]:
    """The document a job renders: parsed, parameters filled in, checked. With ``variants``
    (a batch's shared spec, whose rows bring the parameters), placeholders without a parameter
    yet are allowed; each row is checked in full when it renders."""
    document: dict[str, Json] = substitute(parse(text), params, complete=not variants)
    check(document, placeholders=variants)
    return document


def output_defaults(text: str) -> dict[str, Json]:
    """The document's own size, rate and length, for output settings a job leaves unset; empty
    when the document is not readable (validation will say why)."""
    try:
        document = parse(text)
    except FramefleetError:
        return {}
    defaults: dict[str, Json] = {}
    for key in ("width", "height", "fps"):
        value = document.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if float(value).is_integer() and 0 < value < 2**31:
                defaults[key] = int(value)
    duration = document.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        if math.isfinite(duration) and duration > 0:
            defaults["duration"] = float(duration)
    return defaults
