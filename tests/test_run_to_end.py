"""A Cancel that reaches an agent while its output commits cannot undo the commit: the step
runs to its end and the render reports the output, so the coordinator hears of it (and removes
a chunk object nobody will join) instead of the object staying behind unknown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from framefleet.agent.producer import Producer
from framefleet.agent.run_to_end import run_to_end

WAIT = 10.0


class SlowCommitSink:
    """A sink whose commit runs on a thread (like the local sink's rename) until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = threading.Event()
        self.committed = False
        self.aborted = False
        self.size = 0
        self.upload_id = ""

    def write(self, data: bytes) -> None:
        self.size += len(data)

    async def complete(self) -> None:
        self.started.set()

        def commit() -> None:
            assert self.release.wait(WAIT)
            self.committed = True

        await asyncio.to_thread(commit)

    async def abort(self) -> None:
        self.aborted = True


class DoneEncoder:
    async def finish(self) -> int:
        return 0

    async def abort(self) -> None:
        pass


async def cancel_during_commit(times: int) -> tuple[asyncio.Task[int], SlowCommitSink]:
    sink = SlowCommitSink()
    sink.write(b"x" * 1234)
    producer = Producer(DoneEncoder(), sink)  # type: ignore[arg-type]
    task = asyncio.create_task(producer.finish())
    async with asyncio.timeout(WAIT):
        await sink.started.wait()
    for _ in range(times):
        task.cancel()
        await asyncio.sleep(0)
    sink.release.set()
    async with asyncio.timeout(WAIT):
        await asyncio.wait([task])
    return task, sink


@pytest.mark.parametrize("times", [1, 3])
async def test_a_cancel_during_the_commit_still_reports_the_output(times: int) -> None:
    task, sink = await cancel_during_commit(times)
    assert sink.committed and not sink.aborted
    assert not task.cancelled(), "the committed output is reported, not lost to the cancel"
    assert task.result() == 1234


async def test_a_failed_step_still_fails() -> None:
    async def broken() -> None:
        await asyncio.sleep(0)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run_to_end(broken())


async def test_a_cancel_outside_the_step_still_cancels() -> None:
    gate = asyncio.Event()

    async def job() -> str:
        await gate.wait()  # the render before its commit: cancellable as ever
        return await run_to_end(asyncio.sleep(0, "done"))

    task = asyncio.create_task(job())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
