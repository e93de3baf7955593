"""The agent's job executor, with a fake renderer and a list for an outbox: outcomes and their
acknowledgement, sources sent once, cancels, progress, and draining."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from framefleet.agent.executor import JobExecutor
from framefleet.agent.render import ProgressCallback, RenderResult
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

WAIT = 10.0


class FakeRenderer:
    """Renders what ``behaviour`` says for each job; records the specs it was given."""

    def __init__(self) -> None:
        self.specs: list[pb.JobSpec] = []
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.error: Exception | None = None
        self.progress_calls = 1

    async def __call__(self, assign: pb.Assign, on_progress: ProgressCallback) -> RenderResult:
        self.specs.append(assign.spec)
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        for n in range(self.progress_calls):
            on_progress(n + 1, self.progress_calls, 30.0, "")
        if self.error is not None:
            raise self.error
        return RenderResult(assign.output_url, 1234, 5, 0.5)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[pb.ConnectRequest] = []
        self.changed = asyncio.Event()

    def __call__(self, message: pb.ConnectRequest) -> None:
        self.sent.append(message)
        self.changed.set()

    def of(self, kind: str) -> list[pb.ConnectRequest]:
        return [m for m in self.sent if m.WhichOneof("message") == kind]

    async def wait_for(self, kind: str, count: int = 1) -> list[pb.ConnectRequest]:
        async with asyncio.timeout(WAIT):
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.of(kind)


Executor = tuple[JobExecutor, FakeRenderer, Outbox, list[str]]


@pytest.fixture
def executor() -> Executor:
    renderer, outbox, drains = FakeRenderer(), Outbox(), []
    run = JobExecutor(renderer, outbox, lambda: drains.append("drain"), agent_id="agent-1")
    return run, renderer, outbox, drains


def assign(job: str, token: int = 1, source: bool = True, key: str = "src-1") -> pb.Assign:
    spec = pb.JobSpec(output=pb.OutputSettings(frames=5))
    if source:
        spec.template.html = "<p>hi</p>"
    return pb.Assign(
        lease=pb.LeaseRef(job_id=job, fencing_token=token),
        spec=spec,
        source_key=key,
        output_url=f"file:///out/{job}.mp4",
    )


def message(**kind: object) -> pb.ConnectResponse:
    return pb.ConnectResponse(**kind)  # type: ignore[arg-type]


async def test_a_result_is_kept_until_acknowledged(executor: Executor) -> None:
    run, _, outbox, _ = executor
    run.handle(message(assign=assign("a", token=3)))
    (done,) = await outbox.wait_for("completed")
    assert done.completed.output_url == "file:///out/a.mp4"
    assert (done.completed.output_bytes, done.completed.frames) == (1234, 5)
    assert run.unacknowledged() == [done] and run.leases() == [done.completed.lease]
    run.handle(message(ack=pb.Ack(lease=pb.LeaseRef(job_id="a", fencing_token=2))))
    assert run.unacknowledged() == [done]  # an ack for an older lease changes nothing
    run.handle(message(ack=pb.Ack(lease=pb.LeaseRef(job_id="a", fencing_token=3))))
    assert run.unacknowledged() == [] and run.leases() == []


async def test_a_source_is_sent_once_and_named_by_key_after(executor: Executor) -> None:
    run, renderer, outbox, _ = executor
    bundle = pb.ResponseBundle(
        messages=[message(assign=assign("a")), message(assign=assign("b", source=False))]
    )
    run.handle(message(bundle=bundle))
    await outbox.wait_for("completed", 2)
    assert [spec.template.html for spec in renderer.specs] == ["<p>hi</p>", "<p>hi</p>"]
    run.handle(message(assign=assign("c", source=False, key="never-sent")))
    (failed,) = outbox.of("failed")
    assert failed.failed.error == pb.ERROR_CLASS_INTERNAL and failed.failed.retryable
    assert "never sent" in failed.failed.message
    assert len(renderer.specs) == 2


@pytest.mark.parametrize(
    ("error", "wire", "retryable"),
    [
        (FramefleetError(ErrorClass.TEMPLATE_SCRIPT_ERROR, "boom"), "TEMPLATE_SCRIPT_ERROR", False),
        (FramefleetError(ErrorClass.CAPTURE_TIMEOUT, "slow"), "CAPTURE_TIMEOUT", True),
        (RuntimeError("a bug"), "INTERNAL", True),
    ],
)
async def test_a_failure_is_reported_with_its_class(
    executor: Executor, error: Exception, wire: str, retryable: bool
) -> None:
    run, renderer, outbox, _ = executor
    renderer.error = error
    run.handle(message(assign=assign("a")))
    (failed,) = await outbox.wait_for("failed")
    assert pb.ErrorClass.Name(failed.failed.error) == "ERROR_CLASS_" + wire
    assert failed.failed.error_class == wire and failed.failed.retryable is retryable
    assert run.unacknowledged() == [failed]


async def test_a_cancel_for_the_lease_stops_the_render_and_reports_nothing(
    executor: Executor,
) -> None:
    run, renderer, outbox, _ = executor
    renderer.release.clear()
    run.handle(message(assign=assign("a", token=5)))
    await asyncio.wait_for(renderer.started.wait(), WAIT)
    run.handle(message(cancel=pb.Cancel(lease=pb.LeaseRef(job_id="a", fencing_token=4))))
    assert run.leases() and not renderer.cancelled.is_set()  # a stale cancel is ignored
    run.handle(message(cancel=pb.Cancel(lease=pb.LeaseRef(job_id="a", fencing_token=5))))
    await asyncio.wait_for(renderer.cancelled.wait(), WAIT)
    assert run.leases() == [] and run.unacknowledged() == []
    assert not outbox.of("completed") and not outbox.of("failed")


async def test_progress_is_throttled(executor: Executor) -> None:
    run, renderer, outbox, _ = executor
    renderer.progress_calls = 500  # all within a few milliseconds
    run.handle(message(assign=assign("a")))
    await outbox.wait_for("completed")
    progress = outbox.of("progress")
    assert 1 <= len(progress) <= 2, len(progress)
    assert progress[0].progress.frames_done == 1 and progress[0].progress.frames_total == 500


async def test_draining_hands_back_what_does_not_finish_in_the_grace(executor: Executor) -> None:
    run, renderer, outbox, drains = executor
    run.handle(message(drain=pb.Drain()))
    assert drains == ["drain"]  # the agent decides how to drain
    renderer.release.clear()
    run.handle(message(assign=assign("a", token=9)))
    await asyncio.wait_for(renderer.started.wait(), WAIT)
    await run.hand_back("test", grace=0.05)
    await asyncio.wait_for(renderer.cancelled.wait(), WAIT)
    (released,) = outbox.of("released")
    assert released.released.lease.fencing_token == 9
    assert "grace period over" in released.released.reason
    # New work while draining is handed back at once, without rendering.
    run.handle(message(assign=assign("b")))
    assert outbox.of("released")[-1].released.reason == "agent draining"
    assert len(renderer.specs) == 1
    # Waiting for acknowledgements ends when the coordinator has them all.
    waiting = asyncio.create_task(run.all_acknowledged())
    for result in run.unacknowledged():
        run.acknowledged(result.released.lease)
    await asyncio.wait_for(waiting, WAIT)


async def test_without_a_renderer_jobs_complete_at_once() -> None:
    outbox: list[pb.ConnectRequest] = []
    noop: Callable[[], None] = lambda: None  # noqa: E731
    run = JobExecutor(None, outbox.append, noop)
    run.handle(message(assign=assign("a")))
    assert [m.WhichOneof("message") for m in outbox] == ["completed"]


async def test_an_output_outside_the_roots_is_refused_without_rendering() -> None:
    renderer, outbox = FakeRenderer(), Outbox()
    run = JobExecutor(renderer, outbox, lambda: None, output_roots=["file:///out/allowed/"])
    run.handle(message(assign=assign("a")))  # file:///out/a.mp4
    (failed,) = outbox.of("failed")
    assert failed.failed.error == pb.ERROR_CLASS_OUTPUT_ERROR
    assert "--output-root" in failed.failed.message and renderer.specs == []


async def test_an_assembly_joins_chunks_instead_of_rendering() -> None:
    """An Assign with chunk_urls goes to the assembler, not the renderer; its Completed carries
    the assembled output's size."""
    renderer, outbox, joined = FakeRenderer(), Outbox(), []

    async def assembler(job: pb.Assign) -> RenderResult:
        joined.append(list(job.chunk_urls))
        return RenderResult(job.output_url, 9876, 0, 0.1)

    run = JobExecutor(renderer, outbox, lambda: None, assembler=assembler)
    job = assign("a")
    job.chunk_urls.extend(["file:///out/a.mp4.a.chunk000", "file:///out/a.mp4.a.chunk001"])
    run.handle(message(assign=job))
    (done,) = await outbox.wait_for("completed")
    assert joined == [list(job.chunk_urls)] and renderer.specs == []
    assert (done.completed.output_url, done.completed.output_bytes) == ("file:///out/a.mp4", 9876)


async def test_a_failed_assembly_is_reported_with_its_class() -> None:
    async def assembler(job: pb.Assign) -> RenderResult:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, "chunk x is missing")

    outbox = Outbox()
    run = JobExecutor(FakeRenderer(), outbox, lambda: None, assembler=assembler)
    job = assign("a")
    job.chunk_urls.append("file:///out/a.mp4.a.chunk000")
    run.handle(message(assign=job))
    (failure,) = await outbox.wait_for("failed")
    assert failure.failed.error_class == ErrorClass.OUTPUT_ERROR
    assert "chunk x is missing" in failure.failed.message


def _hostile(change: Callable[[pb.Assign], None]) -> pb.Assign:
    job = assign("h")
    change(job)
    return job


HOSTILE: dict[str, tuple[Callable[[pb.Assign], None], ErrorClass]] = {
    "job id with a path": (
        lambda a: setattr(a.lease, "job_id", "/../../etc/passwd#"),
        ErrorClass.OUTPUT_ERROR,
    ),
    "job id too long": (lambda a: setattr(a.lease, "job_id", "j" * 65), ErrorClass.OUTPUT_ERROR),
    "output with ..": (
        lambda a: setattr(a, "output_url", "file:///out/../etc/x"),
        ErrorClass.OUTPUT_ERROR,
    ),
    "output with a fragment": (
        lambda a: setattr(a, "output_url", "file:///out/x.mp4#y"),
        ErrorClass.OUTPUT_ERROR,
    ),
    "output of no sink": (
        lambda a: setattr(a, "output_url", "gopher:///out/x.mp4"),
        ErrorClass.OUTPUT_ERROR,
    ),
    "output too long": (
        lambda a: setattr(a, "output_url", "file:///out/" + "x" * 5000),
        ErrorClass.OUTPUT_ERROR,
    ),
    "too many chunks": (
        lambda a: a.chunk_urls.extend(f"file:///out/h.mp4.h.chunk{i:03d}" for i in range(65)),
        ErrorClass.INVALID_JOB,
    ),
    "frames backwards": (
        lambda a: a.MergeFrom(pb.Assign(first_frame=4, end_frame=2)),
        ErrorClass.INVALID_JOB,
    ),
    "frames past the video": (lambda a: setattr(a, "end_frame", 50), ErrorClass.INVALID_JOB),
    "huge source key": (lambda a: setattr(a, "source_key", "k" * 300), ErrorClass.INVALID_JOB),
    "zero-sized video": (lambda a: setattr(a.spec.output, "width", 3), ErrorClass.INVALID_JOB),
    "huge trace context": (
        lambda a: a.trace_context.update({f"k{i}": "v" for i in range(20)}),
        ErrorClass.INVALID_JOB,
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_hostile_assign_fails_its_job_and_the_next_one_runs(name: str) -> None:
    change, error_class = HOSTILE[name]
    renderer, outbox = FakeRenderer(), Outbox()
    run = JobExecutor(renderer, outbox, lambda: None, output_roots=["file:///out/"])
    run.handle(message(assign=_hostile(change)))
    (failure,) = outbox.of("failed")
    assert failure.failed.error_class == error_class, failure.failed.message
    assert renderer.specs == []
    run.handle(message(assign=assign("next", key="src-2")))
    await outbox.wait_for("completed")


async def test_a_bundle_inside_a_bundle_is_ignored(executor: Executor) -> None:
    run, renderer, _, _ = executor
    inner = pb.ResponseBundle(messages=[message(assign=assign("a"))])
    nested = message(bundle=pb.ResponseBundle(messages=[message(bundle=inner)]))
    run.handle(nested)
    assert run.leases() == [] and renderer.specs == []
