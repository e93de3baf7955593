"""Observability end to end: one trace links the client's, coordinator's and agent's spans
(separate processes exporting OTLP to a receiver in the test), Prometheus metrics are scraped
from both, and job-outcome log lines carry the trace id."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from framefleet import AsyncClient, FramefleetError, template_job
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e

CLIENT_SPANS = InMemorySpanExporter()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, ca: Path | None = None) -> dict[str, float]:
    """Metric samples by name with labels, e.g. 'framefleet_jobs{state="queued"}'. ``ca``: the
    address serves HTTPS (a coordinator with a certificate)."""
    context = ssl.create_default_context(cafile=ca) if ca else None
    url = f"{'https' if ca else 'http'}://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FarmProcesses, OtlpReceiver, int, int]]:
    # This process is the client: its spans go to memory (a provider can be set only once).
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(CLIENT_SPANS))
        trace.set_tracer_provider(provider)
    receiver = OtlpReceiver()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    root = tmp_path_factory.mktemp("traced")
    farm = FarmProcesses(root)
    coordinator_metrics, agent_metrics = free_port(), free_port()
    try:
        farm.start_coordinator(
            f"sqlite:///{root}/jobs.db",
            root / "out",
            "--http",
            f"127.0.0.1:{coordinator_metrics}",
            "--heartbeat-interval",
            "0.5",
            env=otel,
        )
        farm.start_agent(
            "traced-agent", "--slots", "1", "--http", f"127.0.0.1:{agent_metrics}", env=otel
        )
        yield farm, receiver, coordinator_metrics, agent_metrics
    finally:
        farm.close()
        receiver.stop()


def in_trace(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan]:
    return [s for s in receiver.spans() if s.trace_id == trace_id]


async def test_one_trace_links_client_coordinator_and_agent(
    traced: tuple[FarmProcesses, OtlpReceiver, int, int],
) -> None:
    farm, receiver, _, _ = traced
    CLIENT_SPANS.clear()
    async with AsyncClient(farm.address) as client:
        job = await client.submit(
            template_job(
                TEMPLATES / "solid.html", {"color": "teal"}, width=64, height=64, fps=10, frames=12
            )
        )
        await client.wait(job.id)
    (submit,) = [s for s in CLIENT_SPANS.get_finished_spans() if s.name == "framefleet.submit"]
    trace_id = format(submit.context.trace_id, "032x")
    client_span = format(submit.context.span_id, "016x")

    expected = {
        "SubmitJob",
        "queue_wait",
        "attempt",
        "render",
        "load_template",
        "capture_encode",
        "complete_output",
    }
    wait_until(
        lambda: expected <= {s.name for s in in_trace(receiver, trace_id)},
        20,
        f"spans {expected} in trace {trace_id}",
    )
    spans = {s.name: s for s in in_trace(receiver, trace_id)}

    server = spans["SubmitJob"]
    assert (server.service, server.parent_id) == ("framefleet-coordinator", client_span)
    assert server.attributes["framefleet.job.id"] == job.id
    for name in ("queue_wait", "attempt"):
        assert (spans[name].service, spans[name].parent_id) == (
            "framefleet-coordinator",
            server.span_id,
        )
    assert spans["attempt"].attributes["framefleet.agent.id"] == "traced-agent"
    assert spans["attempt"].attributes["framefleet.outcome"] == "succeeded"

    render = spans["render"]
    assert (render.service, render.parent_id) == ("framefleet-agent", server.span_id)
    assert render.attributes["framefleet.job.id"] == job.id
    assert render.attributes["framefleet.job.attempt"] == 1
    for name in ("load_template", "capture_encode", "complete_output"):
        assert (spans[name].service, spans[name].parent_id) == ("framefleet-agent", render.span_id)
    assert spans["capture_encode"].attributes["framefleet.frames"] == 12
    assert spans["capture_encode"].attributes["framefleet.fps"] > 0

    # The job's outcome line leads to the same trace.
    outcome = [
        json.loads(line)
        for line in farm.processes[0].log.read_text().splitlines()
        if f'"job_id": "{job.id}"' in line and '"job succeeded"' in line
    ]
    assert [line["trace_id"] for line in outcome] == [trace_id]
    assert outcome[0]["seconds"] > 0 and outcome[0]["output_bytes"] > 0


async def test_metrics_on_coordinator_and_agent(
    traced: tuple[FarmProcesses, OtlpReceiver, int, int],
) -> None:
    farm, _, coordinator_port, agent_port = traced
    ca = farm.trust.ca if farm.trust else None  # the coordinator serves HTTPS with its cert
    before = scrape(coordinator_port, ca)
    async with AsyncClient(farm.address) as client:
        good = template_job(
            TEMPLATES / "solid.html", {"color": "navy"}, width=64, height=64, fps=10, frames=7
        )
        await client.wait((await client.submit(good)).id)
        await client.wait((await client.submit(good)).id)  # a cache hit
        broken = template_job(TEMPLATES / "throws.html", width=64, height=64, fps=10, frames=3)
        with pytest.raises(FramefleetError):
            await client.wait((await client.submit(broken)).id)
    # The job-state gauges are sampled every 2 s: wait until a sample shows the failed job.
    await asyncio.to_thread(
        wait_until,
        lambda: scrape(coordinator_port, ca).get('framefleet_jobs{state="failed"}', 0) >= 1,
        30,
        "the job-state gauges to be sampled",
    )
    after = scrape(coordinator_port, ca)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('framefleet_job_outcomes_total{state="succeeded"}') == 2
    assert delta('framefleet_job_outcomes_total{state="failed"}') == 1
    assert delta('framefleet_job_failures_total{error_class="TEMPLATE_SCRIPT_ERROR"}') == 1
    assert delta("framefleet_cache_hits_total") == 1
    assert delta("framefleet_render_seconds_count") == 1
    assert delta("framefleet_render_fps_count") == 1
    assert after['framefleet_jobs{state="failed"}'] >= 1
    assert after["framefleet_queue_depth"] == 0
    assert after["framefleet_agents_connected"] == 1
    assert delta("framefleet_lease_expiries_total") == 0  # every lease ended as it should

    agent = scrape(agent_port)
    assert agent['framefleet_agent_renders_total{outcome="succeeded"}'] >= 1
    assert agent['framefleet_agent_renders_total{outcome="TEMPLATE_SCRIPT_ERROR"}'] == 1
    assert agent["framefleet_agent_frames_total"] >= 7
    assert agent["framefleet_agent_output_bytes_total"] > 0
    assert agent["framefleet_agent_slots_busy"] == 0


async def test_a_split_jobs_chunks_join_its_trace(
    traced: tuple[FarmProcesses, OtlpReceiver, int, int],
) -> None:
    """Each chunk's spans, on the coordinator and the agent, and the assembly's, are in the
    trace of the job's submit, marked with the chunk's place."""
    farm, receiver, _, _ = traced
    CLIENT_SPANS.clear()
    async with AsyncClient(farm.address) as client:
        spec = template_job(
            TEMPLATES / "solid.html", {"color": "olive"}, width=64, height=64, fps=10, frames=80
        )
        spec.chunks = 2
        job = await client.wait((await client.submit(spec)).id)
    assert (job.chunks, job.chunks_done) == (2, 2)
    (submit,) = [s for s in CLIENT_SPANS.get_finished_spans() if s.name == "framefleet.submit"]
    trace_id = format(submit.context.trace_id, "032x")

    def marked() -> set[tuple[str, str, object]]:
        return {
            (s.service, s.name, s.attributes.get("framefleet.chunk.index", "assembly"))
            for s in in_trace(receiver, trace_id)
            if s.name in ("attempt", "render")
        }

    expected = {
        ("framefleet-coordinator", "attempt", 0),
        ("framefleet-coordinator", "attempt", 1),
        ("framefleet-coordinator", "attempt", "assembly"),
        ("framefleet-agent", "render", 0),
        ("framefleet-agent", "render", 1),
        ("framefleet-agent", "render", "assembly"),
    }
    wait_until(lambda: expected <= marked(), 20, f"chunk spans in trace {trace_id}")
    coordinator = [s for s in in_trace(receiver, trace_id) if s.name == "attempt"]
    assert {s.attributes["framefleet.job.id"] for s in coordinator} == {job.id}
    (assembly,) = [
        s
        for s in in_trace(receiver, trace_id)
        if s.name == "render" and s.attributes.get("framefleet.chunk.assembly")
    ]
    assert assembly.attributes["framefleet.job.id"] == job.id
