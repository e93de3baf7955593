import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CLASS_UNSPECIFIED: _ClassVar[ErrorClass]
    ERROR_CLASS_INVALID_JOB: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_NOT_FOUND: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_LOAD_ERROR: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_SCRIPT_ERROR: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_READY_TIMEOUT: _ClassVar[ErrorClass]
    ERROR_CLASS_CAPTURE_TIMEOUT: _ClassVar[ErrorClass]
    ERROR_CLASS_BROWSER_CRASHED: _ClassVar[ErrorClass]
    ERROR_CLASS_ENCODE_ERROR: _ClassVar[ErrorClass]
    ERROR_CLASS_OUTPUT_ERROR: _ClassVar[ErrorClass]
    ERROR_CLASS_LEASE_EXPIRED: _ClassVar[ErrorClass]
    ERROR_CLASS_AGENT_LOST: _ClassVar[ErrorClass]
    ERROR_CLASS_INTERRUPTED: _ClassVar[ErrorClass]
    ERROR_CLASS_INTERNAL: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_FORBIDDEN: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_RESOURCE_LIMIT: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_FRAME_TIMEOUT: _ClassVar[ErrorClass]
    ERROR_CLASS_TEMPLATE_UNSUPPORTED: _ClassVar[ErrorClass]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_LEASED: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
ERROR_CLASS_UNSPECIFIED: ErrorClass
ERROR_CLASS_INVALID_JOB: ErrorClass
ERROR_CLASS_TEMPLATE_NOT_FOUND: ErrorClass
ERROR_CLASS_TEMPLATE_LOAD_ERROR: ErrorClass
ERROR_CLASS_TEMPLATE_SCRIPT_ERROR: ErrorClass
ERROR_CLASS_TEMPLATE_READY_TIMEOUT: ErrorClass
ERROR_CLASS_CAPTURE_TIMEOUT: ErrorClass
ERROR_CLASS_BROWSER_CRASHED: ErrorClass
ERROR_CLASS_ENCODE_ERROR: ErrorClass
ERROR_CLASS_OUTPUT_ERROR: ErrorClass
ERROR_CLASS_LEASE_EXPIRED: ErrorClass
ERROR_CLASS_AGENT_LOST: ErrorClass
ERROR_CLASS_INTERRUPTED: ErrorClass
ERROR_CLASS_INTERNAL: ErrorClass
ERROR_CLASS_TEMPLATE_FORBIDDEN: ErrorClass
ERROR_CLASS_TEMPLATE_RESOURCE_LIMIT: ErrorClass
ERROR_CLASS_TEMPLATE_FRAME_TIMEOUT: ErrorClass
ERROR_CLASS_TEMPLATE_UNSUPPORTED: ErrorClass
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_LEASED: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class Template(_message.Message):
    __slots__ = ("html", "assets")
    class AssetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    HTML_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    html: str
    assets: _containers.ScalarMap[str, bytes]
    def __init__(self, html: _Optional[str] = ..., assets: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class OutputSettings(_message.Message):
    __slots__ = ("width", "height", "fps", "duration_seconds", "frames", "codec", "crf", "preset", "format", "profile", "quality", "start_seconds", "end_seconds", "resolution")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CRF_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    fps: int
    duration_seconds: float
    frames: int
    codec: str
    crf: int
    preset: str
    format: str
    profile: str
    quality: str
    start_seconds: float
    end_seconds: float
    resolution: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., frames: _Optional[int] = ..., codec: _Optional[str] = ..., crf: _Optional[int] = ..., preset: _Optional[str] = ..., format: _Optional[str] = ..., profile: _Optional[str] = ..., quality: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., resolution: _Optional[str] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("template", "video_json", "params", "output", "destination", "priority", "max_attempts", "labels", "force", "output_name", "chunks", "chunk_frames")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_JSON_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FRAMES_FIELD_NUMBER: _ClassVar[int]
    template: Template
    video_json: str
    params: _struct_pb2.Struct
    output: OutputSettings
    destination: str
    priority: int
    max_attempts: int
    labels: _containers.ScalarMap[str, str]
    force: bool
    output_name: str
    chunks: int
    chunk_frames: int
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ..., video_json: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output: _Optional[_Union[OutputSettings, _Mapping]] = ..., destination: _Optional[str] = ..., priority: _Optional[int] = ..., max_attempts: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., force: _Optional[bool] = ..., output_name: _Optional[str] = ..., chunks: _Optional[int] = ..., chunk_frames: _Optional[int] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("error_class", "message")
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    error_class: ErrorClass
    message: str
    def __init__(self, error_class: _Optional[_Union[ErrorClass, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "spec", "state", "attempt", "content_key", "output_url", "error_class", "error_message", "frames_done", "frames_total", "agent_id", "output_bytes", "created_at", "started_at", "finished_at", "cache_hit", "batch_id", "row_key", "interruptions", "named_url", "error", "chunks", "chunks_done")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URL_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_KEY_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTIONS_FIELD_NUMBER: _ClassVar[int]
    NAMED_URL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: JobSpec
    state: JobState
    attempt: int
    content_key: str
    output_url: str
    error_class: str
    error_message: str
    frames_done: int
    frames_total: int
    agent_id: str
    output_bytes: int
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    cache_hit: bool
    batch_id: str
    row_key: str
    interruptions: int
    named_url: str
    error: ErrorClass
    chunks: int
    chunks_done: int
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., attempt: _Optional[int] = ..., content_key: _Optional[str] = ..., output_url: _Optional[str] = ..., error_class: _Optional[str] = ..., error_message: _Optional[str] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., agent_id: _Optional[str] = ..., output_bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cache_hit: _Optional[bool] = ..., batch_id: _Optional[str] = ..., row_key: _Optional[str] = ..., interruptions: _Optional[int] = ..., named_url: _Optional[str] = ..., error: _Optional[_Union[ErrorClass, str]] = ..., chunks: _Optional[int] = ..., chunks_done: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "limit", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    limit: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job", "fps")
    JOB_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    fps: float
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., fps: _Optional[float] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("header", "rows")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    header: BatchHeader
    rows: BatchRows
    def __init__(self, header: _Optional[_Union[BatchHeader, _Mapping]] = ..., rows: _Optional[_Union[BatchRows, _Mapping]] = ...) -> None: ...

class BatchRows(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[BatchRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[BatchRow, _Mapping]]] = ...) -> None: ...

class BatchHeader(_message.Message):
    __slots__ = ("spec", "name", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    name: str
    request_id: str
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchRow(_message.Message):
    __slots__ = ("row_key", "params")
    ROW_KEY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    row_key: str
    params: _struct_pb2.Struct
    def __init__(self, row_key: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("id", "name", "total", "queued", "running", "succeeded", "failed", "cancelled", "cache_hits", "frames_done", "frames_total", "created_at", "finished_at", "eta_seconds", "digest", "manifest_url")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    cache_hits: int
    frames_done: int
    frames_total: int
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    eta_seconds: float
    digest: BatchDigest
    manifest_url: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., total: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., cache_hits: _Optional[int] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., eta_seconds: _Optional[float] = ..., digest: _Optional[_Union[BatchDigest, _Mapping]] = ..., manifest_url: _Optional[str] = ...) -> None: ...

class BatchDigest(_message.Message):
    __slots__ = ("wall_seconds", "render_p50_seconds", "render_p95_seconds", "failures", "summary")
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RENDER_P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RENDER_P95_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    wall_seconds: float
    render_p50_seconds: float
    render_p95_seconds: float
    failures: _containers.RepeatedCompositeFieldContainer[FailureGroup]
    summary: str
    def __init__(self, wall_seconds: _Optional[float] = ..., render_p50_seconds: _Optional[float] = ..., render_p95_seconds: _Optional[float] = ..., failures: _Optional[_Iterable[_Union[FailureGroup, _Mapping]]] = ..., summary: _Optional[str] = ...) -> None: ...

class FailureGroup(_message.Message):
    __slots__ = ("error_class", "count", "example_message", "example_row_key", "error")
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_ROW_KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error_class: str
    count: int
    example_message: str
    example_row_key: str
    error: ErrorClass
    def __init__(self, error_class: _Optional[str] = ..., count: _Optional[int] = ..., example_message: _Optional[str] = ..., example_row_key: _Optional[str] = ..., error: _Optional[_Union[ErrorClass, str]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class WatchBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class WatchBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class CancelBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class LeaseRef(_message.Message):
    __slots__ = ("job_id", "fencing_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    fencing_token: int
    def __init__(self, job_id: _Optional[str] = ..., fencing_token: _Optional[int] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "heartbeat", "progress", "completed", "failed", "released", "bundle")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    progress: Progress
    completed: Completed
    failed: Failed
    released: Released
    bundle: RequestBundle
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., failed: _Optional[_Union[Failed, _Mapping]] = ..., released: _Optional[_Union[Released, _Mapping]] = ..., bundle: _Optional[_Union[RequestBundle, _Mapping]] = ...) -> None: ...

class RequestBundle(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ConnectRequest]
    def __init__(self, messages: _Optional[_Iterable[_Union[ConnectRequest, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_id", "slots", "labels", "leases")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    slots: int
    labels: _containers.ScalarMap[str, str]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRef]
    def __init__(self, agent_id: _Optional[str] = ..., slots: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., leases: _Optional[_Iterable[_Union[LeaseRef, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("leases", "draining")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRef]
    draining: bool
    def __init__(self, leases: _Optional[_Iterable[_Union[LeaseRef, _Mapping]]] = ..., draining: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("lease", "frames_done", "frames_total", "fps", "upload_id")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    frames_done: int
    frames_total: int
    fps: float
    upload_id: str
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., fps: _Optional[float] = ..., upload_id: _Optional[str] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("lease", "output_url", "output_bytes", "frames", "render_seconds")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    RENDER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    output_url: str
    output_bytes: int
    frames: int
    render_seconds: float
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., output_url: _Optional[str] = ..., output_bytes: _Optional[int] = ..., frames: _Optional[int] = ..., render_seconds: _Optional[float] = ...) -> None: ...

class Failed(_message.Message):
    __slots__ = ("lease", "error_class", "message", "retryable", "error")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    error_class: str
    message: str
    retryable: bool
    error: ErrorClass
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., error_class: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., error: _Optional[_Union[ErrorClass, str]] = ...) -> None: ...

class Released(_message.Message):
    __slots__ = ("lease", "reason")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    reason: str
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "assign", "cancel", "drain", "ack", "bundle")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: Assign
    cancel: Cancel
    drain: Drain
    ack: Ack
    bundle: ResponseBundle
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., bundle: _Optional[_Union[ResponseBundle, _Mapping]] = ...) -> None: ...

class ResponseBundle(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ConnectResponse]
    def __init__(self, messages: _Optional[_Iterable[_Union[ConnectResponse, _Mapping]]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "lease_ttl_ms", "session_epoch")
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    lease_ttl_ms: int
    session_epoch: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., lease_ttl_ms: _Optional[int] = ..., session_epoch: _Optional[int] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("lease", "attempt", "spec", "content_key", "output_url", "source_key", "trace_context", "isolation_group", "first_frame", "end_frame", "chunk_index", "chunk_urls")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEASE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CONTENT_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_GROUP_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    END_FRAME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_URLS_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    attempt: int
    spec: JobSpec
    content_key: str
    output_url: str
    source_key: str
    trace_context: _containers.ScalarMap[str, str]
    isolation_group: str
    first_frame: int
    end_frame: int
    chunk_index: int
    chunk_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., content_key: _Optional[str] = ..., output_url: _Optional[str] = ..., source_key: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., isolation_group: _Optional[str] = ..., first_frame: _Optional[int] = ..., end_frame: _Optional[int] = ..., chunk_index: _Optional[int] = ..., chunk_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("lease", "reason")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    reason: str
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Ack(_message.Message):
    __slots__ = ("lease", "accepted")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    accepted: bool
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., accepted: _Optional[bool] = ...) -> None: ...
