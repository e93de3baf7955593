"""Build VideoJSON documents in Python with the flow API of @videoflow/core 1.2.

The calls mirror VideoFlow's (``addText`` is :meth:`VideoFlow.add_text`, ``fadeIn`` is
:meth:`Layer.fade_in`, ``{ waitFor }`` is ``wait_for=``), property and setting names are
VideoFlow's own (``{"fontSize": 6}``), and :meth:`VideoFlow.compile` returns the document that
``await $.compile()`` returns for the same calls (layer ids aside: both are random UUIDs), which
tests/test_videoflow_builder.py checks against the real package under Node::

    from framefleet.videoflow import VideoFlow

    flow = VideoFlow(name="Card", width=1280, height=720, fps=30)
    title = flow.add_text({"text": "Hi {{name}}", "fontSize": 6}, {"sourceDuration": "3s"})
    title.fade_in("1s")
    flow.wait("1s")
    with flow.group({"position": [0.5, 0.7]}, {"transitionIn": {"transition": "zoom"}}):
        flow.add_shape({"width": 30, "height": 10, "fill": "#0e1524"})
    document = flow.compile()

Times take VideoFlow's forms: seconds as a number, or ``"2s"``, ``"500ms"``, ``"60f"``,
``"01:30"``. Layers that need their media probed (video, audio) are not offered.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

Time = float | int | str
Easing = str  # "step" | "linear" | "easeIn" | "easeOut" | "easeInOut"
Props = dict[str, Any]

_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def _parse_float(text: str) -> float:
    """JavaScript's parseFloat: the longest numeric prefix, else NaN."""
    match = _FLOAT_PREFIX.match(text.lstrip())
    return float(match.group(0).replace("Infinity", "inf")) if match else math.nan


def _js_round(x: float) -> int:
    """JavaScript's Math.round: halves round up."""
    floor = math.floor(x)
    return int(floor + 1 if x - floor >= 0.5 else floor)


def parse_time(time: Time, fps: float = 30) -> float:
    """Seconds for a VideoFlow time (5, "5s", "500ms", "2m", "1h", "120f", "01:30")."""
    if isinstance(time, (int, float)):
        return float(time)
    t = str(time).strip()
    if re.fullmatch(r"[\d:]+", t) and ":" in t:
        parts = [float(p) if p else 0.0 for p in t.split(":")]
        hours = minutes = seconds = frames = 0.0
        if len(parts) == 2:
            minutes, seconds = parts
        elif len(parts) == 3:
            hours, minutes, seconds = parts
        elif len(parts) == 4:
            hours, minutes, seconds, frames = parts
        return hours * 3600 + minutes * 60 + seconds + frames / fps
    if t.endswith("f"):
        return _parse_float(t[:-1]) / fps
    if t.endswith("ms"):
        return _parse_float(t[:-2]) / 1000
    if t.endswith("h"):
        return _parse_float(t[:-1]) * 3600
    if t.endswith("m"):
        return _parse_float(t[:-1]) * 60
    if t.endswith("s"):
        return _parse_float(t[:-1])
    if re.fullmatch(r"[\d.]+", t):
        return _parse_float(t)
    raise ValueError(f'Invalid time format: "{time}"')


def time_to_frames(time: Time, fps: float) -> int:
    return _js_round(parse_time(time, fps) * fps)


# Property defaults of each layer type (VideoFlow's propertiesDefinition), for animations that
# start from a property's current value.
_VISUAL: Props = {
    "visible": True, "opacity": 1, "position": [0.5, 0.5], "scale": 1, "rotation": 0,
    "anchor": [0.5, 0.5], "backgroundColor": "transparent", "borderWidth": 0,
    "borderStyle": "solid", "borderColor": "#000000", "innerBorder": False, "borderRadius": 0,
    "boxShadow": False, "boxShadowBlur": 0, "boxShadowOffset": [0, 0], "boxShadowSpread": 0,
    "boxShadowColor": "#000000", "outlineWidth": 0, "outlineStyle": "none",
    "outlineColor": "#000000", "outlineOffset": 0, "filterBlur": 0, "filterBrightness": 1,
    "filterContrast": 1, "filterGrayscale": 0, "filterSepia": 0, "filterInvert": 0,
    "filterHueRotate": 0, "filterSaturate": 1, "blendMode": "normal", "perspective": 100,
}  # fmt: skip
_TEXTUAL: Props = {
    **_VISUAL,
    "fontSize": 4, "fontFamily": "Noto Sans", "fontWeight": 600, "fontStyle": "normal",
    "fontStretch": 100, "color": "#FFFFFF", "textAlign": "center", "verticalAlign": "middle",
    "padding": 0, "textStroke": False, "textStrokeWidth": 0, "textStrokeColor": "#000000",
    "textShadow": False, "textShadowColor": "#000000", "textShadowOffset": [0, 0],
    "textShadowBlur": 0, "letterSpacing": 0, "lineHeight": 1, "textTransform": "none",
    "textDecoration": "none", "wordSpacing": 0, "textIndent": 0, "direction": "ltr",
    "wrap": True,
}  # fmt: skip
_SHAPE: Props = {
    **_VISUAL,
    "width": 100, "height": 100, "fill": "#ffffff", "strokeColor": "#000000", "strokeWidth": 0,
    "strokeAlignment": "inner", "strokeDash": 0, "strokeGap": 0, "strokeLinejoin": "miter",
    "cornerRadius": 0, "sides": 6, "innerRadius": 0.5,
}  # fmt: skip
_EFFECT_PARAM = re.compile(r"^effects\.([a-zA-Z_][\w-]*)(?:\[(\d+)\])?\.([a-zA-Z_]\w*)$")


class _Undefined:
    """JavaScript's undefined: a value JSON.stringify leaves out."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()


def _nullish(value: Any) -> bool:
    return value is None or value is UNDEFINED


def _coalesce(value: Any, fallback: Any) -> Any:
    """JavaScript's ``value ?? fallback``."""
    return fallback if _nullish(value) else value


def _truthy(value: Any) -> bool:
    """JavaScript's truthiness: {} and [] are true, 0, "" and NaN are not."""
    if _nullish(value) or value is False or value == "":
        return False
    if isinstance(value, (int, float)):
        return value != 0 and not math.isnan(value)
    return True


# --- layers ---------------------------------------------------------------------------------


class Layer:
    """A layer on the flow: what ``$.addText()`` and friends return."""

    type: ClassVar[str] = "base"
    settings_keys: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Props] = {}

    def __init__(self, flow: VideoFlow, properties: Props, settings: Props) -> None:
        self.flow = flow
        self.id = str(uuid.uuid4())
        self.properties = properties
        self.settings = settings
        self.removed = False

    def set(self, values: Props) -> Self:
        """Sets properties at the current flow time (a step keyframe)."""
        self.flow._push({"statement": "set", "id": self.id, "value": values})
        return self

    def animate(
        self,
        from_: Props,
        to: Props,
        *,
        duration: Time = "0.25s",
        easing: Easing | None = None,
        wait: bool | None = None,
    ) -> Self:
        """Tweens from one state to another; ``wait=False`` runs beside the flow."""
        settings = {"duration": duration, "easing": easing, "wait": wait}
        self.flow._push(
            {"statement": "animate", "id": self.id, "from": from_, "to": to, "settings": settings}
        )
        return self

    def fade_in(
        self, duration: Time = "300ms", easing: Easing | None = None, wait: bool | None = None
    ) -> Self:
        return self.animate(
            {"opacity": 0, "visible": True}, {"opacity": 1}, duration=duration, easing=easing,
            wait=wait,
        )  # fmt: skip

    def fade_out(
        self, duration: Time = "300ms", easing: Easing | None = None, wait: bool | None = None
    ) -> Self:
        return self.animate(
            {"opacity": 1}, {"opacity": 0, "visible": False}, duration=duration, easing=easing,
            wait=wait,
        )  # fmt: skip

    def show(self) -> Self:
        return self.set({"visible": True})

    def hide(self) -> Self:
        return self.set({"visible": False})

    def remove(self, in_: Time | None = None) -> Self:
        """Ends the layer now, or ``in_`` from now (without moving the flow)."""
        if self.removed:
            raise ValueError("Layer already removed")
        self.removed = True
        self.flow._push({"statement": "removeLayer", "id": self.id, "in": _coalesce(in_, 0)})
        return self


class TextLayer(Layer):
    type = "text"
    defaults = {**_TEXTUAL, "text": "Type your text here"}


class CaptionsLayer(Layer):
    type = "captions"
    settings_keys = ("captions", "maxCharsPerLine", "maxLines")
    defaults = {**_TEXTUAL, "text": UNDEFINED}


class ImageLayer(Layer):
    type = "image"
    settings_keys = ("source", "mediaDuration", "sourceEnd")
    defaults = {**_VISUAL, "fit": "contain"}


class ShapeLayer(Layer):
    type = "shape"
    settings_keys = ("shapeType",)
    defaults = _SHAPE


class GroupLayer(Layer):
    """A group: layers added while it is open (``with flow.group(...):``, or in its builder
    callback) belong to it, timed from the group's start."""

    type = "group"
    defaults = _VISUAL

    def __init__(self, flow: VideoFlow, properties: Props, settings: Props) -> None:
        super().__init__(flow, properties, settings)
        self.actions: list[Props] = []
        self._outer: list[Props] | None = None

    def __enter__(self) -> Self:
        self._outer = self.flow._pointer
        self.flow._pointer = self.actions
        return self

    def __exit__(
        self,
        kind: builtins.type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._outer is not None
        self.flow._pointer = self._outer
        self._outer = None


# --- the flow -------------------------------------------------------------------------------


class VideoFlow:
    """A video described as a flow of calls; :meth:`compile` turns it into VideoJSON."""

    def __init__(
        self,
        *,
        name: str = "Untitled Video",
        width: int = 1920,
        height: int = 1080,
        fps: int = 30,
        background_color: str = "#000000",
        easing: Easing = "easeInOut",
        font_family: str = "Noto Sans",
    ) -> None:
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self.background_color = background_color
        self.easing, self.font_family = easing, font_family
        self.layers: list[Layer] = []
        self.flow: list[Props] = []
        self._pointer = self.flow

    def _push(self, action: Props) -> None:
        self._pointer.append(action)

    def wait(self, time: Time) -> Self:
        """Moves the flow time on."""
        self._push({"statement": "wait", "duration": time})
        return self

    def parallel(self, branches: Iterable[Callable[[], object]]) -> Self:
        """Runs each branch from the current time; the flow moves on by the longest."""
        initial = self._pointer
        actions: list[list[Props]] = []
        for branch in branches:
            self._pointer = []
            actions.append(self._pointer)
            branch()
        self._pointer = initial
        if not actions:
            raise ValueError("parallel() needs at least one branch")
        self._push({"statement": "parallel", "actions": actions})
        return self

    def _add(
        self,
        kind: type[Layer],
        properties: Props | None,
        settings: Props | None,
        wait_for: Time | None,
        index: int | None,
    ) -> Any:
        properties, settings = properties or {}, settings or {}
        layer = kind(self, properties, settings)
        self.layers.append(layer)
        self._push(
            {
                "statement": "addLayer",
                "id": layer.id,
                "type": kind.type,
                "settings": settings,
                "properties": properties,
                "options": _options(wait_for, index),
            }
        )
        return layer

    def add_text(
        self,
        properties: Props | None = None,
        settings: Props | None = None,
        *,
        wait_for: Time | None = None,
        index: int | None = None,
    ) -> TextLayer:
        layer: TextLayer = self._add(TextLayer, properties, settings, wait_for, index)
        return layer

    def add_image(
        self,
        properties: Props | None = None,
        settings: Props | None = None,
        *,
        wait_for: Time | None = None,
        index: int | None = None,
    ) -> ImageLayer:
        """An image; ``settings["source"]`` is a data: URL, or a file beside the document
        (``framefleet render`` inlines it)."""
        layer: ImageLayer = self._add(ImageLayer, properties, settings, wait_for, index)
        return layer

    def add_shape(
        self,
        properties: Props | None = None,
        settings: Props | None = None,
        *,
        wait_for: Time | None = None,
        index: int | None = None,
    ) -> ShapeLayer:
        """A rectangle, ellipse, polygon or star (``settings["shapeType"]``)."""
        layer: ShapeLayer = self._add(ShapeLayer, properties, settings, wait_for, index)
        return layer

    def add_captions(
        self,
        properties: Props | None = None,
        settings: Props | None = None,
        *,
        wait_for: Time | None = None,
        index: int | None = None,
    ) -> CaptionsLayer:
        layer: CaptionsLayer = self._add(CaptionsLayer, properties, settings, wait_for, index)
        return layer

    def group(
        self,
        properties: Props | None = None,
        settings: Props | None = None,
        builder: Callable[[GroupLayer], object] | None = None,
        *,
        wait_for: Time | None = None,
        index: int | None = None,
    ) -> GroupLayer:
        """A group of layers composited as one. Add its children in ``builder(group)`` or in
        ``with flow.group(...):``. The flow then moves to the group's end unless ``wait_for``
        says otherwise."""
        properties, settings = properties or {}, settings or {}
        layer = GroupLayer(self, properties, settings)
        self.layers.append(layer)
        self._push(
            {
                "statement": "group",
                "id": layer.id,
                "settings": settings,
                "properties": properties,
                "options": _options(wait_for, index),
                "actions": layer.actions,
            }
        )
        if builder is not None:
            with layer:
                builder(layer)
        return layer

    def compile(self) -> dict[str, Any]:
        """The VideoJSON document, as @videoflow/core's compile() makes it."""
        document: dict[str, Any] = _strip_undefined(_Compiler(self).compile())
        return document

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.compile(), indent=indent, ensure_ascii=False)


def _options(wait_for: Time | None, index: int | None) -> Props:
    options: Props = {}
    if wait_for is not None:
        options["waitFor"] = wait_for
    if index is not None:
        options["index"] = index
    return options


def _strip_undefined(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_undefined(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list):
        return [None if v is UNDEFINED else _strip_undefined(v) for v in value]
    return value


def _keep_easing(easing: Any) -> bool:
    return _truthy(easing) and easing != "linear"


def _js_string(value: Any) -> str:
    """JavaScript's String(value) for JSON-like values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join("" if _nullish(v) else _js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _utf16_prefix(text: str, units: int) -> tuple[str, bool]:
    data = text.encode("utf-16-le", "surrogatepass")
    return data[: units * 2].decode("utf-16-le", "surrogatepass"), len(data) > units * 2


# --- compile: a line-by-line port of VideoFlow.compile() ------------------------------------
#
# compile() is asynchronous in JavaScript, and the branches of a parallel() interleave at each
# await, which decides the order of layers added in different branches. The port runs the same
# steps as generators on a small model of the microtask queue, so that order matches too.


class _Promise:
    def __init__(self, loop: _Loop) -> None:
        self.loop = loop
        self.done = False
        self.value: Any = None
        self.reactions: list[Callable[[Any], None]] = []

    def resolve(self, value: Any) -> None:
        self.done, self.value = True, value
        for reaction in self.reactions:
            self.loop.queue_job(reaction, value)
        self.reactions = []

    def then(self, reaction: Callable[[Any], None]) -> None:
        if self.done:
            self.loop.queue_job(reaction, self.value)
        else:
            self.reactions.append(reaction)


Async = Generator[_Promise, Any, Any]


class _Loop:
    def __init__(self) -> None:
        self.jobs: deque[tuple[Callable[[Any], None], Any]] = deque()

    def queue_job(self, job: Callable[[Any], None], value: Any) -> None:
        self.jobs.append((job, value))

    def run(self) -> None:
        while self.jobs:
            job, value = self.jobs.popleft()
            job(value)

    def spawn(self, body: Async) -> _Promise:
        """Calls an async function: it runs until its first await."""
        promise = _Promise(self)

        def step(sent: Any) -> None:
            try:
                awaited = body.send(sent)
            except StopIteration as stop:
                promise.resolve(stop.value)
                return
            awaited.then(step)

        step(None)
        return promise

    def resolved(self, value: Any) -> _Promise:
        promise = _Promise(self)
        promise.resolve(value)
        return promise

    def all(self, promises: list[_Promise]) -> _Promise:
        result = _Promise(self)
        values: list[Any] = [None] * len(promises)
        remaining = [len(promises)]

        def settle(i: int) -> Callable[[Any], None]:
            def done(value: Any) -> None:
                values[i] = value
                remaining[0] -= 1
                if remaining[0] == 0:
                    result.resolve(values)

            return done

        for i, promise in enumerate(promises):
            promise.then(settle(i))
        return result


@dataclass
class _Compiled:
    id: str
    type: str
    start: int  # frames
    end: int | None  # frames; None: not known yet (JavaScript's false)
    speed: float
    source_start: float
    name: Any
    enabled: Any
    settings: Props
    index: int
    layer: Layer
    properties: dict[str, list[Props]] = field(default_factory=dict)
    media_duration: float | None = None
    source_end_unresolved: float | None = None
    parent: str | None = None
    child_ids: list[str] | None = None
    transition_in: Props | None = None
    transition_out: Props | None = None
    effects: list[Props] | None = None


def _transition(spec: Any, fps: float) -> Props | None:
    if not isinstance(spec, dict) or not _truthy(spec.get("transition")):
        return None
    duration: Any = spec.get("duration")
    out: Props = {
        "transition": _js_string(spec["transition"]),
        "duration": parse_time(duration, fps) if not _nullish(duration) else 0.2,
    }
    if _truthy(spec.get("easing")):
        out["easing"] = spec["easing"]
    if _truthy(spec.get("params")):
        out["params"] = dict(spec["params"])
    return out


def _effects(raw: Any) -> list[Props] | None:
    if not isinstance(raw, list) or not raw:
        return None
    effects = [
        {
            "effect": e["effect"],
            **({"params": dict(e["params"])} if _truthy(e.get("params")) else {}),
        }
        for e in raw
        if isinstance(e, dict) and isinstance(e.get("effect"), str)
    ]
    return effects or None


class _Compiler:
    def __init__(self, flow: VideoFlow) -> None:
        self.flow = flow
        self.fps = flow.fps
        self.compiled: dict[str, _Compiled] = {}
        self.loop = _Loop()

    def _layer(self, layer_id: str) -> Layer:
        for layer in self.flow.layers:
            if layer.id == layer_id:
                return layer
        raise ValueError(f"Layer {layer_id} not found")

    def _media_timings(self, settings: Props) -> Props:
        fps = self.fps
        if not _nullish(settings.get("sourceDuration")):
            media: Any = settings.get("mediaDuration")
            return {
                "sourceDuration": parse_time(settings["sourceDuration"], fps),
                "mediaDuration": None if _nullish(media) else parse_time(media, fps),
            }
        return {"sourceDuration": None, "mediaDuration": None}

    def _source_seconds(self, comp: _Compiled, t: int) -> float:
        fps = self.fps
        elapsed_timeline = (t - comp.start) / fps
        speed_abs = abs(comp.speed)
        elapsed_segment = elapsed_timeline * speed_abs
        if comp.speed < 0:
            duration = ((comp.end - comp.start) / fps) * speed_abs if comp.end is not None else 0
            return comp.source_start + duration - elapsed_segment
        return comp.source_start + elapsed_segment

    def _last_value(self, keyframes: list[Props], time: float, prop: str, layer: Layer) -> Any:
        if not keyframes:
            match = _EFFECT_PARAM.match(prop)
            if match:
                name, index, param = match.group(1), int(match.group(2) or 0), match.group(3)
                declared = layer.properties.get("effects")
                if isinstance(declared, list):
                    seen = 0
                    for effect in declared:
                        if isinstance(effect, dict) and effect.get("effect") == name:
                            if seen == index:
                                return (effect.get("params") or {}).get(param, UNDEFINED)
                            seen += 1
                return UNDEFINED
            return layer.defaults.get(prop, UNDEFINED)
        last = keyframes[0]
        for keyframe in keyframes:
            if keyframe["time"] <= time:
                last = keyframe
            else:
                break
        return last["value"]

    def _series(self, actions: list[Props], t: int = 0, parent: str | None = None) -> Async:
        fps = self.fps
        for action in actions:
            statement = action["statement"]
            if statement == "wait":
                t += time_to_frames(action["duration"], fps)
            elif statement == "parallel":
                branches = [self.loop.spawn(self._series(b, t, parent)) for b in action["actions"]]
                times = yield self.loop.all(branches)
                t = max(times)
            elif statement == "group":
                t = yield from self._group(action, t, parent)
            elif statement == "addLayer":
                t = yield from self._add_layer(action, t, parent)
            elif statement == "removeLayer":
                comp = self._comp(action["id"])
                remove_at = t + time_to_frames(_coalesce(action.get("in"), 0), fps)
                if comp.end is not None and comp.end < remove_at:
                    raise ValueError(f"Layer {action['id']} already ended at frame {comp.end}")
                comp.end = remove_at
            elif statement == "set":
                comp = self._comp(action["id"])
                at = self._source_seconds(comp, t)
                for prop, value in action["value"].items():
                    frames = [k for k in comp.properties.get(prop, []) if k["time"] != at]
                    frames.append({"time": at, "value": value, "easing": "step"})
                    comp.properties[prop] = sorted(frames, key=lambda k: k["time"])
            elif statement == "animate":
                t = self._animate(action, t)
        return t

    def _comp(self, layer_id: str) -> _Compiled:
        comp = self.compiled.get(layer_id)
        if comp is None:
            raise ValueError(f"Layer {layer_id} not found")
        return comp

    def _group(self, action: Props, t: int, parent: str | None) -> Async:
        fps = self.fps
        layer = self._layer(action["id"])
        settings, properties = action["settings"], action["properties"]
        start = (
            time_to_frames(settings["startTime"], fps)
            if not _nullish(settings.get("startTime"))
            else t
        )
        comp = _Compiled(
            id=action["id"],
            type="group",
            start=start,
            end=None,
            speed=1,
            source_start=0,
            name=settings.get("name", UNDEFINED),
            enabled=_coalesce(settings.get("enabled"), True),
            settings=settings,
            index=_coalesce(action["options"].get("index"), 0),
            layer=layer,
            child_ids=[],
            parent=parent,
            transition_in=_transition(settings.get("transitionIn"), fps),
            transition_out=_transition(settings.get("transitionOut"), fps),
            effects=_effects(properties.get("effects")),
        )
        self.compiled[action["id"]] = comp
        if parent:
            parent_comp = self.compiled.get(parent)
            if parent_comp is not None and parent_comp.child_ids is not None:
                parent_comp.child_ids.append(action["id"])
        for prop, value in properties.items():
            if prop != "effects":
                comp.properties[prop] = [{"time": 0, "value": value, "easing": "step"}]
        child_end = yield self.loop.spawn(self._series(action["actions"], 0, action["id"]))
        if not _nullish(settings.get("sourceDuration")):
            comp.end = start + time_to_frames(settings["sourceDuration"], fps)
        elif comp.child_ids:
            ends = [self.compiled[c].end for c in comp.child_ids if c in self.compiled]
            bounded = [e for e in ends if e is not None]
            comp.end = start + max([0, *bounded]) if bounded else None
        end_for_wait = comp.end if comp.end is not None else start + child_end
        wait_for = _coalesce(action["options"].get("waitFor"), "finish")
        return end_for_wait if wait_for == "finish" else t + time_to_frames(wait_for, fps)

    def _add_layer(self, action: Props, t: int, parent: str | None) -> Async:
        fps = self.fps
        layer = self._layer(action["id"])
        settings, properties, options = action["settings"], action["properties"], action["options"]
        source_start = (
            parse_time(settings["sourceStart"], fps)
            if not _nullish(settings.get("sourceStart"))
            else 0
        )
        speed = _coalesce(settings.get("speed"), 1)
        speed_abs = abs(speed) or 1
        start = (
            time_to_frames(settings["startTime"], fps)
            if not _nullish(settings.get("startTime"))
            else t
        )
        timings = yield self.loop.resolved(self._media_timings(settings))
        end: int | None = None
        if timings["sourceDuration"] is not None:
            end = start + _js_round((timings["sourceDuration"] / speed_abs) * fps)
        comp = _Compiled(
            id=action["id"],
            type=action["type"],
            start=start,
            end=end,
            speed=speed,
            source_start=source_start,
            name=settings.get("name", UNDEFINED),
            enabled=_coalesce(settings.get("enabled"), True),
            settings=settings,
            index=_coalesce(options.get("index"), 0),
            layer=layer,
            media_duration=timings["mediaDuration"],
            parent=parent,
            transition_in=_transition(settings.get("transitionIn"), fps),
            transition_out=_transition(settings.get("transitionOut"), fps),
            effects=_effects(properties.get("effects")),
        )
        self.compiled[action["id"]] = comp
        if parent:
            parent_comp = self.compiled.get(parent)
            if parent_comp is not None and parent_comp.child_ids is not None:
                parent_comp.child_ids.append(action["id"])
        for prop, value in properties.items():
            if prop != "effects":
                comp.properties[prop] = [{"time": source_start, "value": value, "easing": "step"}]
        wait_for = options.get("waitFor")
        if _truthy(wait_for):
            if wait_for == "finish":
                if end is not None:
                    t = end
            else:
                t += time_to_frames(wait_for, fps)
        return t

    def _animate(self, action: Props, t: int) -> int:
        fps = self.fps
        comp = self._comp(action["id"])
        before = t < comp.start
        past = comp.end is not None and t >= comp.end
        start_at = 0.0 if before or past else self._source_seconds(comp, t)
        settings = action["settings"]
        frames = time_to_frames(_coalesce(settings.get("duration"), "1s"), fps)
        speed_abs = abs(comp.speed) or 1
        span = (frames / fps) * speed_abs
        easing = next(
            (e for e in (settings.get("easing"), self.flow.easing) if _truthy(e)), "easeInOut"
        )
        props = list(dict.fromkeys([*action["from"], *action["to"]]))
        for prop in props:
            keyframes = comp.properties.setdefault(prop, [])
            start_value = _coalesce(
                action["from"].get(prop),
                self._last_value(keyframes, start_at, prop, comp.layer),
            )
            end_value = _coalesce(action["to"].get(prop), start_value)
            keyframes = [k for k in keyframes if k["time"] != start_at]
            keyframes.append({"time": start_at, "value": start_value, "easing": easing})
            end_at = start_at - span if comp.speed < 0 else start_at + span
            keyframes = [k for k in keyframes if k["time"] != end_at]
            keyframes.append({"time": end_at, "value": end_value, "easing": "step"})
            comp.properties[prop] = sorted(keyframes, key=lambda k: k["time"])
        if settings.get("wait") is not False:
            t += frames
        return t

    def compile(self) -> Props:
        fps = self.fps
        result = self.loop.spawn(self._series(self.flow.flow))
        self.loop.run()
        assert result.done
        total: int = result.value
        comps = list(self.compiled.values())
        project = total
        for comp in comps:
            if not comp.parent and comp.end is not None:
                project = max(project, comp.end)
        for comp in comps:
            if comp.end is not None:
                continue
            if comp.parent:
                parent = self.compiled.get(comp.parent)
                if parent is not None and parent.end is not None:
                    comp.end = parent.end - parent.start
                    continue
            comp.end = project
        for comp in comps:
            if comp.type != "group" or comp.end is not None or not comp.child_ids:
                continue
            ends = [self.compiled[c].end for c in comp.child_ids if c in self.compiled]
            bounded = [e for e in ends if e is not None]
            comp.end = comp.start + max([0, *bounded]) if bounded else project
        for comp in comps:
            if not comp.parent:
                continue
            parent = self.compiled.get(comp.parent)
            if parent is None or parent.end is None:
                continue
            local = parent.end - parent.start
            if comp.end is not None and comp.end > local:
                comp.end = local
        top = sorted((c for c in comps if not c.parent), key=lambda c: c.index)
        return {
            "name": self.flow.name,
            "duration": project / fps,
            "width": self.flow.width,
            "height": self.flow.height,
            "fps": fps,
            "backgroundColor": self.flow.background_color,
            "layers": [self._serialize(c) for c in top],
        }

    def _name(self, comp: _Compiled) -> str:
        if comp.type in ("text", "captions"):
            keyframes = comp.properties.get("text")
            if keyframes:
                raw = _js_string(_coalesce(keyframes[0]["value"], "")).strip()
                if _truthy(raw):
                    prefix, longer = _utf16_prefix(raw, 30)
                    return prefix + "\u2026" if longer else raw
            return "Captions" if comp.type == "captions" else "Text"
        source = comp.settings.get("source")
        if _truthy(source):
            filename = re.split(r"[/\\]", _js_string(source))[-1]
            base = re.split(r"[?#]", filename)[0]
            if base:
                return base
        return comp.type[:1].upper() + comp.type[1:]

    def _serialize(self, comp: _Compiled) -> Props:
        fps = self.fps
        static: Props = {}
        animations: list[Props] = []
        for prop, keyframes in comp.properties.items():
            if len(keyframes) == 1:
                static[prop] = keyframes[0]["value"]
                continue
            animations.append(
                {
                    "property": prop,
                    "keyframes": [
                        {
                            "time": k["time"],
                            "value": k["value"],
                            **({"easing": k["easing"]} if _keep_easing(k["easing"]) else {}),
                        }
                        for k in keyframes
                    ],
                }
            )
        assert comp.end is not None
        start_sec = comp.start / fps
        end_sec = comp.end / fps
        speed_abs = abs(comp.speed) or 1
        settings: Props = {
            "enabled": comp.enabled,
            "startTime": start_sec,
            "sourceDuration": (end_sec - start_sec) * speed_abs,
            "name": comp.name if _truthy(comp.name) else self._name(comp),
        }
        if comp.speed != 1:
            settings["speed"] = comp.speed
        if comp.source_start > 0:
            settings["sourceStart"] = comp.source_start
        if comp.media_duration is not None:
            settings["mediaDuration"] = comp.media_duration
        if comp.source_end_unresolved is not None:
            settings["sourceEnd"] = comp.source_end_unresolved
        for key in comp.layer.settings_keys:
            if key not in ("mediaDuration", "sourceEnd") and not _nullish(comp.settings.get(key)):
                settings[key] = comp.settings[key]
        out: Props = {
            "id": comp.id,
            "type": comp.type,
            "settings": settings,
            "properties": static,
            "animations": animations,
        }
        if comp.transition_in:
            out["transitionIn"] = comp.transition_in
        if comp.transition_out:
            out["transitionOut"] = comp.transition_out
        if comp.effects:
            out["effects"] = comp.effects
        if comp.type == "group" and comp.child_ids:
            children = [self.compiled[c] for c in comp.child_ids if c in self.compiled]
            out["children"] = [self._serialize(c) for c in sorted(children, key=lambda c: c.index)]
        return out
