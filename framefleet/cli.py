"""The ``framefleet`` command from the SDK alone: submit, watch, status, cancel and batch
against a coordinator. The server-side commands (render, coordinator, agent, preview, ...) plug
in through the ``framefleet.commands`` entry point group when the farm is installed."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio as aio
from google.protobuf import json_format

from framefleet.client import FINAL_STATES, AsyncClient, JobFailed
from framefleet.core import hyperframes
from framefleet.core.channel import TLS_CA_ENV, TOKEN_ENV, Tls
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import PRIORITY_RANGE, template_job, validate, video_json_job
from framefleet.core.logs import setup_logging
from framefleet.core.telemetry import setup_tracing
from framefleet.core.variants import read_rows
from framefleet.v1 import framefleet_pb2 as pb

# The job label that carries `submit --webhook` (the coordinator's coordinator/webhooks.py).
WEBHOOK_LABEL = "framefleet.webhook"
DEFAULT_COORDINATOR = os.environ.get("FRAMEFLEET_COORDINATOR", "127.0.0.1:7070")
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 1, 2, 3, 4
EXIT_CODES = """exit status:
  0  success
  1  a job (or a row of a batch) failed or was cancelled
  2  invalid input, refused before anything ran
  3  cannot reach the coordinator
  4  no such job or batch
  130  interrupted (Ctrl-C)"""


# --- arguments ---------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """--param values are JSON when they parse as JSON (42, true, [1,2]), else plain strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
    except RecursionError:
        raise FramefleetError(
            ErrorClass.INVALID_JOB, "a --param value is nested too deeply"
        ) from None


def count(text: str) -> int:
    """A whole number for a size, rate or count: refused here rather than by protobuf."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"INVALID_JOB: {text!r} is not a whole number >= 0")
    return value


def priority(text: str) -> int:
    low, high = PRIORITY_RANGE
    try:
        value = int(text)
    except ValueError:
        value = high + 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"INVALID_JOB: {text!r} is not in {low}..{high}")
    return value


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.params:
        path = Path(args.params)
        if path.suffix != ".json":
            raise FramefleetError(
                ErrorClass.INVALID_JOB, f"--params takes a .json file of one object, not {path}"
            )
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise FramefleetError(ErrorClass.INVALID_JOB, f"cannot read {path}: {e}") from None
        if not isinstance(loaded, dict):
            raise FramefleetError(ErrorClass.INVALID_JOB, f"{path} must hold a JSON object")
        params.update(loaded)
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FramefleetError(ErrorClass.INVALID_JOB, f"--param {item!r}: expected key=value")
        params[key] = parse_value(value)
    return params


def spec_from_args(args: argparse.Namespace, destination: str) -> pb.JobSpec:
    # A .json source is a VideoJSON document: its own size, rate and length unless overridden.
    make = video_json_job if Path(args.template).suffix.lower() == ".json" else template_job
    size = {k: v for k in ("width", "height", "fps") if (v := getattr(args, k)) is not None}
    spec = make(
        args.template,
        params_from_args(args),
        **size,
        duration=args.duration,
        frames=args.frames,
        crf=args.crf,
        preset=args.preset,
        format=getattr(args, "format", ""),
        profile=getattr(args, "profile", ""),
        quality=getattr(args, "quality", ""),
        start=getattr(args, "start", None),
        end=getattr(args, "end", None),
        resolution=getattr(args, "resolution", ""),
        destination=destination,
        priority=args.priority,
        name=args.name,
        chunks=args.chunks,
        chunk_frames=args.chunk_frames,
    )
    validate(spec)
    return spec


def job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "template",
        help="HTML template (files beside it are bundled), HyperFrames project folder (or its "
        "index.html), or VideoJSON .json file",
    )
    parser.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter")
    parser.add_argument("--params", metavar="FILE.json", help="parameters from a JSON object")
    parser.add_argument("--width", type=count, help="default 1280, or the document's/project's")
    parser.add_argument("--height", type=count, help="default 720, or the document's/project's")
    parser.add_argument("--fps", type=count, help="default 30, or the document's/project's")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds (default 12, or the source's)"
    )
    parser.add_argument("--frames", type=count, help="frame count (overrides duration)")
    parser.add_argument("--crf", type=count, default=None, help="x264 CRF 0-51 (default 23)")
    parser.add_argument("--preset", default="", help="x264 preset (default veryfast)")
    parser.add_argument(
        "--format",
        choices=("mp4", "webm", "hls", "mov", "gif", "png-sequence"),
        default="",
        help="mp4 (H.264 + AAC, the default), webm (VP9 + Opus, with alpha; CRF 0-63, default "
        "32), hls (a VOD playlist over the fragmented MP4 beside it), mov (ProRes + PCM, see "
        "--profile), gif (one palette for all frames) or png-sequence (a ZIP of PNG frames, "
        "with alpha)",
    )
    parser.add_argument(
        "--profile",
        choices=("4444", "hq", "422", "lt", "proxy"),
        default="",
        help="ProRes profile of a mov: 4444 (with alpha, the default) or a 4:2:2 one",
    )
    parser.add_argument(
        "--quality",
        choices=("draft", "looks", "delivery"),
        default="",
        help="HyperFrames' quality names: CRF and preset where --crf/--preset are not given "
        "(docs/reference/outputs.md, Quality names)",
    )
    parser.add_argument(
        "--start", type=float, default=None, help="render from this second of the source"
    )
    parser.add_argument("--end", type=float, default=None, help="render up to this second")
    parser.add_argument(
        "--resolution",
        default="",
        metavar="PRESET",
        help="output size, HyperFrames' presets: 1080p, 1440p, 4k, 720p, 480p (in the page's "
        "orientation), landscape, portrait, square, portrait-4k, square-1440p, ...; the page "
        "keeps its layout (--width/--height) and is drawn at a higher device scale factor, so "
        "the shapes must match",
    )
    parser.add_argument(
        "--name",
        default="",
        metavar="TEMPLATE",
        help="readable output name, e.g. '{row_key}.mp4' or '{batch}/{name}.mp4' (fields: "
        "row_key, batch, batch_id, key, or a parameter)",
    )
    parser.add_argument("--priority", type=priority, default=0, help="-1000..1000 (higher first)")
    parser.add_argument(
        "--chunks",
        type=count,
        default=0,
        metavar="N",
        help="split an MP4 into N chunks rendered at once on free slots and agents, joined "
        "without re-encoding (1: never split; default: by length and free slots)",
    )
    parser.add_argument(
        "--chunk-frames",
        type=count,
        default=0,
        metavar="F",
        help="split into chunks of F frames (rounded up to whole 2-second segments)",
    )
    parser.add_argument("--json", action="store_true", help="print the final job as JSON")


def variant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants",
        metavar="ROWS",
        help="a .csv, .jsonl or .json (HyperFrames batch) of parameter rows: one job per row",
    )
    parser.add_argument(
        "--row-key",
        metavar="COLUMN",
        help="the column naming each row (default: row_key; in a .json file, the row index)",
    )


def fill_duration(args: argparse.Namespace) -> None:
    """12 s unless set, or the source has a length of its own (a VideoJSON document, a
    HyperFrames composition: its root's data-duration, else its timeline's, taken when it
    loads)."""
    given = args.frames is not None or args.duration is not None
    if given or Path(args.template).suffix.lower() == ".json":
        return
    path = hyperframes.entry_file(args.template)
    try:
        html = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        html = ""  # reported by the template's loader with its error class
    if hyperframes.composition_root(html) is None:
        args.duration = 12.0


def _job_json(job: pb.Job) -> str:
    job = pb.Job.FromString(job.SerializeToString())
    job.spec.ClearField("source")  # the template or document: too long to print
    return json_format.MessageToJson(job, indent=None, preserving_proto_field_name=True)


def _state(job: pb.Job) -> str:
    return pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


def readable(url: str) -> str:
    """A local output as a path (relative to here when below it), anything else as its URL."""
    if not url.startswith("file://"):
        return url
    from urllib.parse import unquote, urlparse

    path = Path(unquote(urlparse(url).path))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _describe(job: pb.Job) -> str:
    line = f"{job.id}  {_state(job):<9}  {job.frames_done}/{job.frames_total} frames"
    if job.cache_hit:
        line += "  (cache hit)"
    if job.chunks:
        line += f"  ({job.chunks_done}/{job.chunks} chunks)"
    if job.output_url:
        line += f"  {readable(job.named_url or job.output_url)}"
    if job.error_class:
        line += f"  {job.error_class}: {job.error_message}"
    return line


def _age(job: pb.Job, now: float) -> str:
    seconds = (
        max(0.0, now - job.created_at.ToDatetime().timestamp()) if job.created_at.seconds else 0
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


STATUS_HEADER = ("JOB", "STATE", "FRAMES", "AGE", "BATCH", "ROW", "AGENT", "ERROR / OUTPUT")


def status_rows(jobs: Sequence[pb.Job], now: float) -> list[tuple[str, ...]]:
    """One row per job for ``status``: what a person asks first about each."""
    rows: list[tuple[str, ...]] = [STATUS_HEADER]
    for job in jobs:
        detail = (
            f"{job.error_class}: {job.error_message}"
            if job.error_class
            else readable(job.named_url or job.output_url) + (" (cache hit)" * job.cache_hit)
        )
        rows.append(
            (
                job.id,
                _state(job),
                f"{job.frames_done}/{job.frames_total}",
                _age(job, now),
                job.batch_id[:8] or "-",
                job.row_key or "-",
                # A split job runs on several agents: how many chunks are done.
                job.agent_id or (f"{job.chunks_done}/{job.chunks} chunks" if job.chunks else "-"),
                detail.strip() or "-",
            )
        )
    return rows


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    )


# --- watching ----------------------------------------------------------------------------

CACHE_HIT_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cache hit, already rendered"


@contextmanager
def _logs_above(bar: Any) -> Iterator[None]:
    """Log lines print above the progress bar instead of through it."""
    if bar.disable:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


async def follow(client: AsyncClient, job: pb.Job, show_progress: bool) -> pb.Job:
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
        with _logs_above(bar):
            async for update in client.watch(job.id):
                final = update.job
                bar.n = final.frames_done
                if final.cache_hit:
                    # Nothing rendered: a frame rate here would be a made-up number.
                    bar.bar_format = CACHE_HIT_BAR
                # A split job's own attempts are its assembly's: while its chunks render, say
                # how many are done instead of "attempt 0".
                step = (
                    f"{final.chunks_done}/{final.chunks} chunks"
                    if final.chunks and final.chunks_done < final.chunks
                    else f"attempt {final.attempt}"
                )
                bar.set_postfix_str(
                    f"{_state(final)} {step}" + (f" {update.fps:.1f} fps" if update.fps else ""),
                    refresh=False,
                )
                bar.refresh()
    finally:
        bar.close()
    if final.state not in FINAL_STATES:
        final = await client.get(job.id)
    return final


async def follow_batch(client: AsyncClient, batch: pb.Batch, show_progress: bool) -> pb.Batch:
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
        with _logs_above(bar):
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


def finish_batch(batch: pb.Batch, as_json: bool) -> int:
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


def finish(job: pb.Job, as_json: bool) -> int:
    print(_job_json(job) if as_json else _describe(job))
    if job.state != pb.JOB_STATE_SUCCEEDED:
        print(f"error: {JobFailed(job)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# --- commands ----------------------------------------------------------------------------


async def cmd_submit(args: argparse.Namespace) -> int:
    fill_duration(args)
    spec = spec_from_args(args, args.out or "")
    if args.webhook:  # the coordinator POSTs here when the job (or each batch row) ends
        spec.labels[WEBHOOK_LABEL] = args.webhook
    async with connect(args) as client:
        if args.variants:
            rows = read_rows(args.variants, args.row_key)
            batch = await client.submit_batch(spec, rows, Path(args.variants).stem)
            if not args.wait:
                print(_batch_json(batch) if args.json else batch.id)
                return 0
            return finish_batch(await follow_batch(client, batch, not args.json), args.json)
        job = await client.submit(spec)
        if not args.wait:
            print(_job_json(job) if args.json else job.id)
            return 0
        return finish(await follow(client, job, not args.json), args.json)


async def cmd_batch(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        if args.cancel:
            batch = await client.cancel_batch(args.batch_id)
        elif args.watch:
            batch = await follow_batch(client, await client.get_batch(args.batch_id), not args.json)
        else:
            batch = await client.get_batch(args.batch_id)
    return finish_batch(batch, args.json)


async def cmd_watch(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        job = await client.get(args.job_id)
        return finish(await follow(client, job, not args.json), args.json)


async def cmd_status(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        while True:
            if args.job_id:
                jobs = [await client.get(args.job_id)]
            else:
                states = [pb.JOB_STATE_FAILED] if args.failed else []
                jobs = await client.list(states, args.limit)
            if args.json:
                print("\n".join(_job_json(job) for job in jobs), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")  # redraw in place
                print(format_table(status_rows(jobs, time.time())), flush=True)
            if not args.watch:
                return 0
            await asyncio.sleep(args.interval)
            if not args.json and not sys.stdout.isatty():
                print()


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        job = await client.cancel(args.job_id)
    print(_job_json(job) if args.json else _describe(job))
    return 0


def coordinator_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--coordinator", default=DEFAULT_COORDINATOR, help="host:port")
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=os.environ.get(TLS_CA_ENV) or None,
        help=f"CA of the coordinator's certificate: connect over TLS (env {TLS_CA_ENV})",
    )
    return parser


def token_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"client token from `framefleet token add` (env {TOKEN_ENV})",
    )
    return parser


def connect(args: argparse.Namespace) -> AsyncClient:
    """The client the command's --coordinator, --tls-ca and --token describe."""
    tls = Tls(args.tls_ca) if args.tls_ca else None
    return AsyncClient(args.coordinator, tls, args.token)


def client_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return token_option(coordinator_option(parser))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framefleet",
        description="Render HTML templates and VideoJSON documents to video.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("FRAMEFLEET_LOG_LEVEL"),
        help="DEBUG, INFO, WARNING (default: INFO for coordinator and agent, else WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    submit = client_options(commands.add_parser("submit", help="submit a job"))
    job_options(submit)
    submit.add_argument("--out", default="", help="destination (default: the coordinator's)")
    submit.add_argument("--wait", action="store_true", help="wait for the job and show progress")
    submit.add_argument(
        "--webhook",
        default="",
        metavar="URL",
        help="POST the job's outcome here when it ends (each row's, for a batch); the "
        "coordinator must allow the URL (--allow-webhook)",
    )
    variant_options(submit)
    submit.set_defaults(run=cmd_submit)

    watch = client_options(commands.add_parser("watch", help="follow a job to its end"))
    watch.add_argument("job_id")
    watch.add_argument("--json", action="store_true")
    watch.set_defaults(run=cmd_watch)

    status = client_options(commands.add_parser("status", help="list jobs, or show one"))
    status.add_argument("job_id", nargs="?")
    status.add_argument("--failed", action="store_true", help="only failed jobs")
    status.add_argument("--limit", type=int, default=50)
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    status.add_argument("--json", action="store_true", help="one JSON object a line")
    status.set_defaults(run=cmd_status)

    batch = client_options(commands.add_parser("batch", help="show, follow or cancel a batch"))
    batch.add_argument("batch_id")
    batch.add_argument("--watch", action="store_true", help="follow it to its end")
    batch.add_argument("--cancel", action="store_true", help="cancel the rows not yet ended")
    batch.add_argument("--json", action="store_true")
    batch.set_defaults(run=cmd_batch)

    cancel = client_options(commands.add_parser("cancel", help="cancel a job"))
    cancel.add_argument("job_id")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(run=cmd_cancel)

    for register in _plugins():
        register(commands)

    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run=cmd_completion, parser=parser)
    return parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("framefleet")
    except PackageNotFoundError:
        return "unknown"


async def cmd_completion(args: argparse.Namespace) -> int:
    """``eval "$(framefleet completion bash)"``: generated from this very parser (shtab)."""
    import shtab

    print(shtab.complete(args.parser, shell=args.shell))
    return 0


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _plugins() -> list[Register]:
    """Commands other installed packages add (the farm's server side), by entry point."""
    from importlib.metadata import entry_points

    return [entry.load() for entry in entry_points(group="framefleet.commands")]


def run_coroutine(coroutine: Coroutine[Any, Any, int]) -> int:
    """Runs a command on uvloop where it is installed (the servers), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Long-running services log at INFO and trace under their own name; commands, quietly.
    service = getattr(args, "service", "")
    setup_logging((args.log_level or ("INFO" if service else "WARNING")).upper())
    stop_tracing = setup_tracing(f"framefleet-{service or 'client'}")
    try:
        return run_coroutine(args.run(args))
    except FramefleetError as e:
        print(f"error: {e}", file=sys.stderr)
        refused = e.error_class in (ErrorClass.INVALID_JOB, ErrorClass.TEMPLATE_NOT_FOUND)
        return EXIT_BAD_INPUT if refused and not isinstance(e, JobFailed) else EXIT_FAILED
    except aio.AioRpcError as e:
        print(f"error: coordinator {e.code().name}: {e.details()}", file=sys.stderr)
        return {
            grpc.StatusCode.UNAVAILABLE: EXIT_UNREACHABLE,
            grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT: EXIT_BAD_INPUT,
        }.get(e.code(), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    finally:
        stop_tracing()  # flushes the last spans
