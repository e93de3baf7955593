"""Zero width, fps or duration given explicitly is INVALID_JOB (issue 26), told apart from a
field left unset (the default) by the proto's field presence; the SDK and CLI send only what
was given."""

from __future__ import annotations

from pathlib import Path

import pytest

from framefleet.core import jobspec
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

TEMPLATE = Path(__file__).parent / "templates" / "solid.html"


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ({"width": 0}, "width 0"),
        ({"height": 0}, "height 0"),
        ({"fps": 0}, "fps 0"),
        ({"duration_seconds": 0.0}, "duration 0s"),
        ({"frames": 0}, "0 frames"),
        ({"frames": 0, "duration_seconds": 4.0}, "0 frames"),  # frames wins, even at zero
    ],
)
def test_a_zero_given_is_refused(given: dict[str, float], reason: str) -> None:
    output = pb.OutputSettings(**{"duration_seconds": 2.0, **given})  # type: ignore[arg-type]
    with pytest.raises(FramefleetError) as refused:
        jobspec.resolve_output(output)
    assert refused.value.error_class == ErrorClass.INVALID_JOB
    assert reason in str(refused.value)


def test_unset_takes_the_defaults() -> None:
    output = jobspec.resolve_output(pb.OutputSettings(duration_seconds=2.0))
    assert (output.width, output.height, output.fps, output.frames) == (1280, 720, 30, 60)


def test_the_sdk_sends_only_what_was_given() -> None:
    spec = jobspec.template_job(TEMPLATE, {}, frames=3)
    assert not spec.output.HasField("width") and not spec.output.HasField("duration_seconds")
    assert jobspec.validate(spec).frames == 3
    zero = jobspec.template_job(TEMPLATE, {}, width=0, frames=3)
    assert zero.output.HasField("width")
    with pytest.raises(FramefleetError) as refused:
        jobspec.validate(zero)
    assert refused.value.error_class == ErrorClass.INVALID_JOB


def test_the_wire_keeps_a_zero_given() -> None:
    sent = pb.OutputSettings(fps=0)
    received = pb.OutputSettings.FromString(sent.SerializeToString())
    assert received.HasField("fps") and not received.HasField("width")
