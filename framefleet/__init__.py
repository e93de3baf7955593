"""framefleet: an async gRPC render farm for programmatic video.

This package is the Python SDK (``framefleet.client``), the CLI (``framefleet.cli``), the
generated stubs (``framefleet.v1``) and the job rules shared by coordinator and agent.
"""

from framefleet.client import AsyncClient, Client, JobFailed
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import template_job, video_json_job

__all__ = [
    "AsyncClient",
    "Client",
    "ErrorClass",
    "FramefleetError",
    "JobFailed",
    "template_job",
    "video_json_job",
]
