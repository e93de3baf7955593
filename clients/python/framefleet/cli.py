"""The ``framefleet`` command: an all-in-one local render, and the distributed pieces."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio as aio
from google.protobuf import json_format

from framefleet.client import FINAL_STATES, AsyncClient, JobFailed
from framefleet.errors import ErrorClass, FramefleetError
from framefleet.jobspec import template_job, validate, video_json_job
from framefleet.logs import setup_logging
from framefleet.preview import cmd_preview
from framefleet.telemetry import setup_tracing
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.variants import read_rows

EC2_URL = "http://169.254.169.254/latest/meta-data/spot/instance-action"

DEFAULT_COORDINATOR = os.environ.get("FRAMEFLEET_COORDINATOR", "127.0.0.1:7070")
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 1, 2, 3


# --- arguments ---------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """--param values are JSON when they parse as JSON (42, true, [1,2]), else plain strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.params:
        path = Path(args.params)
        if path.suffix != ".json":
            raise FramefleetError(
                ErrorClass.INVALID_JOB, f"--params takes a .json file of one object, not {path}"
            )
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise FramefleetError(ErrorClass.INVALID_JOB, f"cannot read {path}: {e}") from None
        if not isinstance(loaded, dict):
            raise FramefleetError(ErrorClass.INVALID_JOB, f"{path} must hold a JSON object")
        params.update(loaded)
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FramefleetError(ErrorClass.INVALID_JOB, f"--param {item!r}: expected key=value")
        params[key] = _parse_value(value)
    return params


def _spec(args: argparse.Namespace, destination: str) -> pb.JobSpec:
    # A .json source is a VideoJSON document: its own size, rate and length unless overridden.
    make = video_json_job if Path(args.template).suffix.lower() == ".json" else template_job
    size = {k: v for k in ("width", "height", "fps") if (v := getattr(args, k)) is not None}
    spec = make(
        args.template,
        _params(args),
        **size,
        duration=args.duration,
        frames=args.frames,
        crf=args.crf,
        preset=args.preset,
        destination=destination,
        priority=args.priority,
    )
    validate(spec)
    return spec


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "template", help="HTML template (assets beside it are bundled) or VideoJSON .json file"
    )
    parser.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter")
    parser.add_argument("--params", metavar="FILE.json", help="parameters from a JSON object")
    parser.add_argument("--width", type=int, help="default 1280, or the document's")
    parser.add_argument("--height", type=int, help="default 720, or the document's")
    parser.add_argument("--fps", type=int, help="default 30, or the document's")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (default 12)")
    parser.add_argument("--frames", type=int, default=0, help="frame count (overrides duration)")
    parser.add_argument("--crf", type=int, default=None, help="x264 CRF 0-51 (default 23)")
    parser.add_argument("--preset", default="", help="x264 preset (default veryfast)")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the final job as JSON")


def _variant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants", metavar="ROWS", help="a .csv or .jsonl of parameter rows: one job per row"
    )
    parser.add_argument(
        "--row-key", metavar="COLUMN", help="the column naming each row (default: row_key)"
    )


def _fill_duration(args: argparse.Namespace) -> None:
    if not args.frames and not args.duration and Path(args.template).suffix.lower() != ".json":
        args.duration = 12.0


def _job_json(job: pb.Job) -> str:
    job = pb.Job.FromString(job.SerializeToString())
    job.spec.ClearField("source")  # the template or document: too long to print
    return json_format.MessageToJson(job, indent=None, preserving_proto_field_name=True)


def _state(job: pb.Job) -> str:
    return pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


def _describe(job: pb.Job) -> str:
    line = f"{job.id}  {_state(job):<9}  {job.frames_done}/{job.frames_total} frames"
    if job.output_url:
        line += f"  {job.output_url}"
    if job.error_class:
        line += f"  {job.error_class}: {job.error_message}"
    return line


# --- watching ----------------------------------------------------------------------------


async def _follow(client: AsyncClient, job: pb.Job, show_progress: bool) -> pb.Job:
    """Shows a progress bar until the job ends; returns its final record."""
    from tqdm import tqdm

    bar = tqdm(
        total=job.frames_total,
        unit="frame",
        disable=not show_progress,
        leave=True,
        dynamic_ncols=True,
        desc=job.id[:8],
    )
    final = job
    try:
        async for update in client.watch(job.id):
            final = update.job
            bar.n = final.frames_done
            bar.set_postfix_str(
                f"{_state(final)} attempt {final.attempt}"
                + (f" {update.fps:.1f} fps" if update.fps else ""),
                refresh=False,
            )
            bar.refresh()
    finally:
        bar.close()
    if final.state not in FINAL_STATES:
        final = await client.get(job.id)
    return final


async def _follow_batch(client: AsyncClient, batch: pb.Batch, show_progress: bool) -> pb.Batch:
    """Shows the batch's frames as one progress bar until every row has ended."""
    from tqdm import tqdm

    bar = tqdm(
        total=batch.frames_total,
        unit="frame",
        disable=not show_progress,
        dynamic_ncols=True,
        desc=f"batch {batch.name or batch.id[:8]}",
    )
    final = batch
    try:
        async for update in client.watch_batch(batch.id):
            final = update
            bar.n = update.frames_done
            eta = f", ETA {update.eta_seconds:.0f}s" if update.eta_seconds else ""
            done = update.succeeded + update.failed + update.cancelled
            bar.set_postfix_str(f"{done}/{update.total} rows, {update.failed} failed{eta}")
            bar.refresh()
    finally:
        bar.close()
    return final


def _batch_json(batch: pb.Batch) -> str:
    return json_format.MessageToJson(batch, indent=None, preserving_proto_field_name=True)


def _finish_batch(batch: pb.Batch, as_json: bool) -> int:
    """Prints the digest; exit status 1 when any row failed or was cancelled."""
    if as_json:
        print(_batch_json(batch))
    else:
        print(f"batch {batch.id}: {batch.digest.summary or _batch_counts(batch)}")
        for group in batch.digest.failures:
            print(
                f"  {group.count} x {group.error_class}: {group.example_message}"
                f" (e.g. row {group.example_row_key})"
            )
        if batch.manifest_url:
            print(f"manifest: {batch.manifest_url}")
    return EXIT_FAILED if batch.failed or batch.cancelled else 0


def _batch_counts(batch: pb.Batch) -> str:
    return (
        f"{batch.succeeded}/{batch.total} succeeded, {batch.failed} failed, "
        f"{batch.queued + batch.running} to go"
    )


def _finish(job: pb.Job, as_json: bool) -> int:
    print(_job_json(job) if as_json else _describe(job))
    if job.state != pb.JOB_STATE_SUCCEEDED:
        print(f"error: {JobFailed(job)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# --- commands ----------------------------------------------------------------------------


def _agent_command(coordinator: str, agent_id: str, slots: int | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "framefleet",
        "--log-level",
        "WARNING",
        "agent",
        "--coordinator",
        coordinator,
        "--agent-id",
        agent_id,
    ]
    return command + (["--slots", str(slots)] if slots else [])


@contextlib.asynccontextmanager
async def _local_farm(args: argparse.Namespace) -> AsyncIterator[AsyncClient]:
    """An embedded coordinator on SQLite and local agents as separate processes, stopped
    (drained) on exit. The job table stays in OUT/.framefleet/, so a rerun into the same
    directory finds what is already rendered and renders only what is missing."""
    from coordinator.config import CoordinatorConfig
    from coordinator.server import running_coordinator

    state = args.out_dir / ".framefleet"
    state.mkdir(parents=True, exist_ok=True)
    config = CoordinatorConfig(
        listen="127.0.0.1:0",
        store_url=f"sqlite:///{state}/jobs.db",
        default_destination=str(args.out_dir),
        lease_ttl=10.0,
        heartbeat_interval=2.0,
    )
    async with running_coordinator(config) as coordinator:
        host = socket.gethostname()
        agents = [
            await asyncio.create_subprocess_exec(
                *_agent_command(coordinator.address, f"{host}-local-{i}", args.slots)
            )
            for i in range(args.agents)
        ]
        try:
            async with AsyncClient(coordinator.address) as client:
                # Work an interrupted earlier run left behind is not this run's to finish.
                leftovers = await client.list([pb.JOB_STATE_QUEUED, pb.JOB_STATE_LEASED], 10_000)
                for job in leftovers:
                    await client.cancel(job.id)
                yield client
        finally:
            for agent in agents:
                agent.send_signal(signal.SIGTERM)
            for agent in agents:
                await agent.wait()


async def cmd_render(args: argparse.Namespace) -> int:
    """All in one: an embedded coordinator on SQLite, local agents as separate processes."""
    _fill_duration(args)
    spec = _spec(args, args.out_dir.as_uri())
    rows = read_rows(args.variants, args.row_key) if args.variants else None
    async with _local_farm(args) as client:
        if rows is not None:
            batch = await client.submit_batch(spec, rows, Path(args.variants).stem)
            return _finish_batch(await _follow_batch(client, batch, not args.json), args.json)
        final = await _follow(client, await client.submit(spec), not args.json)
    return _finish(final, args.json)


async def cmd_submit(args: argparse.Namespace) -> int:
    _fill_duration(args)
    spec = _spec(args, args.out or "")
    async with AsyncClient(args.coordinator) as client:
        if args.variants:
            rows = read_rows(args.variants, args.row_key)
            batch = await client.submit_batch(spec, rows, Path(args.variants).stem)
            if not args.wait:
                print(_batch_json(batch) if args.json else batch.id)
                return 0
            return _finish_batch(await _follow_batch(client, batch, not args.json), args.json)
        job = await client.submit(spec)
        if not args.wait:
            print(_job_json(job) if args.json else job.id)
            return 0
        return _finish(await _follow(client, job, not args.json), args.json)


async def cmd_batch(args: argparse.Namespace) -> int:
    async with AsyncClient(args.coordinator) as client:
        if args.cancel:
            batch = await client.cancel_batch(args.batch_id)
        elif args.watch:
            batch = await _follow_batch(
                client, await client.get_batch(args.batch_id), not args.json
            )
        else:
            batch = await client.get_batch(args.batch_id)
    return _finish_batch(batch, args.json)


async def cmd_watch(args: argparse.Namespace) -> int:
    async with AsyncClient(args.coordinator) as client:
        job = await client.get(args.job_id)
        return _finish(await _follow(client, job, not args.json), args.json)


async def cmd_status(args: argparse.Namespace) -> int:
    async with AsyncClient(args.coordinator) as client:
        if args.job_id:
            jobs = [await client.get(args.job_id)]
        else:
            states = [pb.JOB_STATE_FAILED] if args.failed else []
            jobs = await client.list(states, args.limit)
    for job in jobs:
        print(_job_json(job) if args.json else _describe(job))
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with AsyncClient(args.coordinator) as client:
        job = await client.cancel(args.job_id)
    print(_job_json(job) if args.json else _describe(job))
    return 0


def _serve_metrics(port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=os.environ.get("FRAMEFLEET_METRICS_HOST", "0.0.0.0"))


async def cmd_coordinator(args: argparse.Namespace) -> int:
    from coordinator.config import CoordinatorConfig
    from coordinator.server import serve

    _serve_metrics(args.metrics_port)
    await serve(
        CoordinatorConfig(
            listen=args.listen,
            store_url=args.store,
            default_destination=args.out,
            lease_ttl=args.lease_ttl,
            heartbeat_interval=args.heartbeat_interval,
            retry_base=args.retry_base,
            max_interruptions=args.max_interruptions,
        )
    )
    return 0


async def cmd_agent(args: argparse.Namespace) -> int:
    from agent.capacity import measure
    from agent.render import RenderLimits
    from agent.runner import AgentConfig, run_agent

    capacity = measure(args.slots)
    agent_id = args.agent_id or f"{socket.gethostname()}-{os.getpid()}"
    _serve_metrics(args.metrics_port)
    print(f"framefleet agent {agent_id}: {capacity.describe()}", file=sys.stderr, flush=True)
    await run_agent(
        AgentConfig(
            coordinator=args.coordinator,
            agent_id=agent_id,
            slots=capacity.slots,
            limits=RenderLimits(args.ready_timeout, args.frame_timeout),
            drain_grace=args.drain_grace,
            spot_notice_url=args.spot_notice_url,
            spot_poll_interval=args.spot_poll_interval,
            page_renders=args.page_renders,
            page_heap_bytes=args.page_heap_mb * 2**20,
            noop=args.noop,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framefleet", description=__doc__)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("FRAMEFLEET_LOG_LEVEL"),
        help="DEBUG, INFO, WARNING (default: INFO for coordinator and agent, else WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_coordinator(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--coordinator", default=DEFAULT_COORDINATOR, help="host:port")
        return p

    render = commands.add_parser("render", help="render locally: coordinator and agents here")
    _job_options(render)
    render.add_argument("--out", required=True, help="output directory")
    _variant_options(render)
    render.add_argument("--agents", type=int, default=1, help="local agent processes")
    render.add_argument("--slots", type=int, default=None, help="pages per agent")
    render.set_defaults(run=cmd_render)

    submit = with_coordinator(commands.add_parser("submit", help="submit a job"))
    _job_options(submit)
    submit.add_argument("--out", default="", help="destination (default: the coordinator's)")
    submit.add_argument("--wait", action="store_true", help="wait for the job and show progress")
    _variant_options(submit)
    submit.set_defaults(run=cmd_submit)

    watch = with_coordinator(commands.add_parser("watch", help="follow a job to its end"))
    watch.add_argument("job_id")
    watch.add_argument("--json", action="store_true")
    watch.set_defaults(run=cmd_watch)

    status = with_coordinator(commands.add_parser("status", help="list jobs, or show one"))
    status.add_argument("job_id", nargs="?")
    status.add_argument("--failed", action="store_true", help="only failed jobs")
    status.add_argument("--limit", type=int, default=50)
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    batch = with_coordinator(commands.add_parser("batch", help="show, follow or cancel a batch"))
    batch.add_argument("batch_id")
    batch.add_argument("--watch", action="store_true", help="follow it to its end")
    batch.add_argument("--cancel", action="store_true", help="cancel the rows not yet ended")
    batch.add_argument("--json", action="store_true")
    batch.set_defaults(run=cmd_batch)

    cancel = with_coordinator(commands.add_parser("cancel", help="cancel a job"))
    cancel.add_argument("job_id")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(run=cmd_cancel)

    preview = commands.add_parser("preview", help="play a template or VideoJSON in a browser")
    _job_options(preview)
    preview.add_argument("--port", type=int, default=8765, help="on 127.0.0.1 (0: any free)")
    preview.set_defaults(run=cmd_preview)

    coord = commands.add_parser("coordinator", help="run a coordinator")
    coord.add_argument("--listen", default="127.0.0.1:7070")
    coord.add_argument("--store", default="sqlite:///framefleet.db", help="sqlite:///path")
    coord.add_argument("--out", default="out", help="default destination for outputs")
    coord.add_argument("--lease-ttl", type=float, default=20.0, help="seconds")
    coord.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds")
    coord.add_argument("--retry-base", type=float, default=2.0, help="first retry backoff, s")
    coord.add_argument(
        "--max-interruptions", type=int, default=10, help="drain hand-backs before INTERRUPTED"
    )
    coord.add_argument("--metrics-port", type=int, default=0, help="serve /metrics (0: off)")
    coord.set_defaults(run=cmd_coordinator)

    agent = with_coordinator(commands.add_parser("agent", help="run a render agent"))
    agent.add_argument("--agent-id", default="")
    agent.add_argument("--slots", type=int, default=None, help="pages at once (default: sized)")
    agent.add_argument("--ready-timeout", type=float, default=30.0, help="seconds")
    agent.add_argument("--frame-timeout", type=float, default=10.0, help="seconds")
    agent.add_argument("--drain-grace", type=float, default=10.0, help="seconds")
    agent.add_argument(
        "--spot-notice-url",
        default=None,
        help=f"poll this EC2 spot instance-action URL and drain on a notice (e.g. {EC2_URL})",
    )
    agent.add_argument("--spot-poll-interval", type=float, default=5.0, help="seconds")
    agent.add_argument("--page-renders", type=int, default=500, help="recycle a page after N")
    agent.add_argument("--page-heap-mb", type=int, default=512, help="recycle a page above")
    agent.add_argument(
        "--noop", action="store_true", help="benchmarks only: complete jobs without rendering"
    )
    agent.add_argument("--metrics-port", type=int, default=0, help="serve /metrics (0: off)")
    agent.set_defaults(run=cmd_agent)
    return parser


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    import uvloop

    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "render":
        args.out_dir = Path(args.out).resolve()
    service = args.command in ("coordinator", "agent")
    setup_logging((args.log_level or ("INFO" if service else "WARNING")).upper())
    stop_tracing = setup_tracing(f"framefleet-{args.command if service else 'client'}")
    try:
        return _run(args.run(args))
    except FramefleetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED if isinstance(e, JobFailed) else EXIT_BAD_INPUT
    except aio.AioRpcError as e:
        print(f"error: coordinator {e.code().name}: {e.details()}", file=sys.stderr)
        code = e.code()
        return EXIT_UNREACHABLE if code == grpc.StatusCode.UNAVAILABLE else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    finally:
        stop_tracing()  # flushes the last spans
