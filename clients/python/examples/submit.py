"""Renders an HTML template on a framefleet farm: submits it with its parameters, prints progress
while the job runs, then the output URL.

    python clients/python/examples/submit.py --coordinator 127.0.0.1:7070 \
        --param name=Ada --param referrals=12 --width 1280 --height 720 --fps 30 --duration 12 \
        card.html

--param values are JSON when they parse as JSON (12, true, [1,2]), otherwise strings.
Exit status: 0 succeeded, 1 the job failed or was cancelled, 2 bad input, 3 coordinator
unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import grpc

from framefleet import AsyncClient, FramefleetError, JobFailed, template_job
from framefleet.v1 import framefleet_pb2 as pb


def param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


async def submit(args: argparse.Namespace) -> str:
    spec = template_job(
        args.template,
        dict(args.param),
        width=args.width,
        height=args.height,
        fps=args.fps,
        duration=12.0 if args.duration is None and args.frames is None else args.duration,
        frames=args.frames,
        destination=args.out,
    )
    async with AsyncClient(args.coordinator) as client:
        job = await client.submit(spec)
        print(f"submitted {job.id}", flush=True)
        async for update in client.watch(job.id):
            state = pb.JobState.Name(update.job.state).removeprefix("JOB_STATE_").lower()
            print(
                f"{state} {update.job.frames_done}/{update.job.frames_total} frames"
                f" {update.fps:.1f} fps",
                flush=True,
            )
        done = await client.wait(job.id)  # raises JobFailed unless it succeeded
        return done.output_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template")
    parser.add_argument(
        "--coordinator", default=os.environ.get("FRAMEFLEET_COORDINATOR", "127.0.0.1:7070")
    )
    parser.add_argument("--param", type=param, action="append", default=[])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--duration", type=float, help="seconds (default 12)")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--out", default="", help="output directory or s3://bucket/prefix")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(submit(args)))
    except JobFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FramefleetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 3 if e.code() == grpc.StatusCode.UNAVAILABLE else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
