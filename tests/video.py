"""Reading outputs back as a user would: decode the MP4 and look at pixels."""

from __future__ import annotations

from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlparse

import av
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]


def path_of(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(unquote(parsed.path))


def decode(path: Path) -> list[Frame]:
    with av.open(str(path)) as container:
        return [cast(Frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def is_colour(pixel: Frame, rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= tolerance))
