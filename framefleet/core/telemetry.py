"""Tracing, configured by the standard OTEL_* environment variables, and W3C trace-context
propagation over gRPC metadata and job records.

Tracing is off unless an exporter is configured (``OTEL_TRACES_EXPORTER=otlp`` or an
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``): then the OpenTelemetry API's no-op tracer is used,
which costs next to nothing. Spans go out over OTLP/gRPC; endpoint, headers, sampler and
batching all come from the standard variables.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping

from opentelemetry import context, propagate, trace

log = logging.getLogger("framefleet")

tracer = trace.get_tracer("framefleet")
_exporting = False


def active() -> bool:
    """Whether spans are exported (so work done only for tracing can be skipped when not)."""
    return _exporting


def _enabled() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.split(",")[0].strip() == "otlp"
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_tracing(service_name: str) -> Callable[[], None]:
    """Installs an exporting tracer provider when configured; returns its shutdown (which
    flushes the last spans), or a no-op."""
    if not _enabled():
        return lambda: None
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for traces but the exporter is not installed: framefleet[otel]")
        return lambda: None

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME wins over our name.
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    global _exporting
    _exporting = True
    log.info("tracing to OTLP", extra={"service": service_name})
    return provider.shutdown


def inject() -> dict[str, str]:
    """The current trace context as propagation headers (traceparent, tracestate)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> context.Context:
    carrier = dict(headers.items() if isinstance(headers, Mapping) else headers)
    return propagate.extract(carrier)


def to_text(headers: Mapping[str, str]) -> str:
    """Propagation headers as stored with a job ("" when there is no trace)."""
    return json.dumps(dict(headers), sort_keys=True) if headers else ""


def from_text(text: str) -> dict[str, str]:
    if not text:
        return {}
    loaded = json.loads(text)
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def trace_ids(headers: Mapping[str, str]) -> dict[str, str]:
    """trace_id and span_id from a traceparent, for log lines."""
    parts = headers.get("traceparent", "").split("-")
    return {"trace_id": parts[1], "span_id": parts[2]} if len(parts) == 4 else {}
