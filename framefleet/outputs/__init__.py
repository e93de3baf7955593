"""Output sinks: where encoded bytes go, chosen by the destination URL's scheme.

Both the agent (writing renders) and the coordinator (writing batch manifests, aborting the
uploads of lost agents) use this layer; it depends only on the shared core. A new sink is one
module with ``open_upload``, ``abort_upload``, ``check``, ``size``, ``copy``, ``read``,
``delete`` and ``assemble`` plus a line in ``framefleet.outputs.registry``. HLS outputs are sets of
objects (outputs.hls).
"""

from framefleet.outputs.base import Upload
from framefleet.outputs.registry import (
    abort_upload,
    assemble,
    check,
    copy,
    delete,
    open_upload,
    register,
    schemes,
    size,
    supports,
    write,
)

__all__ = [
    "Upload",
    "abort_upload",
    "assemble",
    "check",
    "copy",
    "delete",
    "open_upload",
    "register",
    "schemes",
    "size",
    "supports",
    "write",
]
