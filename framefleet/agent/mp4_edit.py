"""The sound track's edit list in a fragmented MP4's init segment.

FFmpeg's AAC encoder puts AAC_PRIMING samples before the sound (encoder delay). A plain MP4
skips them with an edit list (``edts``/``elst``: the track's presentation starts that far into
its media), as the HyperFrames CLI's files do; a fragmented MP4's empty moov gets none from the
muxer (its packets are not known yet, and with frag_discont a negative decode time would be
written as a huge unsigned one). So the sound's packets are dated from 0, priming included
(framefleet/agent/sound_samples.py), and this module writes the edit list into the audio trak of the
init segment the muxer made: segment_duration 0 (the whole media, as FFmpeg writes it for a
fragmented file), media_time the priming. Players (FFmpeg, browsers) then start the sound on
its first real sample, in step with the first frame."""

from __future__ import annotations

BOX_HEADER = 8
# Boxes between moov and the handler type that names the track's kind.
_TO_HANDLER = (b"mdia", b"hdlr")


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each box in data[start:end]."""
    found = []
    at = start
    while at + BOX_HEADER <= end:
        size = int.from_bytes(data[at : at + 4], "big")
        if size < BOX_HEADER or at + size > end:
            raise ValueError(f"a malformed box at byte {at} of the init segment")
        found.append((bytes(data[at + 4 : at + 8]), at, at + size))
        at += size
    return found


def edit_list(media_time: int) -> bytes:
    """An edts box with one edit: the whole media (duration 0), from ``media_time`` (in the
    track's timescale), at rate 1."""
    elst = (
        (28).to_bytes(4, "big") + b"elst" + bytes(4)  # version 0, no flags
        + (1).to_bytes(4, "big")  # one entry
        + bytes(4)  # segment_duration 0: to the end of the (fragmented) media
        + media_time.to_bytes(4, "big")
        + (0x00010000).to_bytes(4, "big")  # media_rate 1.0
    )  # fmt: skip
    return (BOX_HEADER + len(elst)).to_bytes(4, "big") + b"edts" + elst


def _handler(data: bytes, trak: tuple[bytes, int, int]) -> bytes:
    _, start, end = trak
    for kind in _TO_HANDLER:
        box = next((b for b in _boxes(data, start + BOX_HEADER, end) if b[0] == kind), None)
        if box is None:
            return b""
        _, start, end = box
    # hdlr: header, version and flags (4), pre_defined (4), handler_type (4)
    return bytes(data[start + 16 : start + 20])


def with_sound_edit(init: bytes, media_time: int) -> bytes:
    """The init segment (ftyp, moov) with ``edit_list(media_time)`` in its sound track (after
    its tkhd), the trak's and moov's sizes grown to match. Unchanged without a sound track."""
    for kind, start, end in _boxes(init, 0, len(init)):
        if kind != b"moov":
            continue
        for trak in _boxes(init, start + BOX_HEADER, end):
            if trak[0] != b"trak" or _handler(init, trak) != b"soun":
                continue
            children = _boxes(init, trak[1] + BOX_HEADER, trak[2])
            if any(child[0] == b"edts" for child in children):
                return init
            tkhd_end = next(child[2] for child in children if child[0] == b"tkhd")
            box = edit_list(media_time)
            out = bytearray(init[:tkhd_end] + box + init[tkhd_end:])
            for at in (start, trak[1]):  # moov, then the trak inside it
                size = int.from_bytes(out[at : at + 4], "big") + len(box)
                out[at : at + 4] = size.to_bytes(4, "big")
            return bytes(out)
    return init
