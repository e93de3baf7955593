"""Completion webhooks: a job submitted with a webhook URL (`submit --webhook URL`, carried as
the job's ``framefleet.webhook`` label, so no wire change) gets a POST when it ends, whatever
the end (succeeded, failed, cancelled; a batch's rows each get theirs).

- Only URLs under a root the coordinator allows (``--allow-webhook``, as ``--allow-output`` for
  destinations) are accepted, at submit; none allowed: a webhook is refused.
- The body is JSON; with ``--webhook-secret FILE`` it is signed: ``X-Framefleet-Signature:
  sha256=HEX``, HMAC-SHA256 of the exact body with the file's contents as key. The body holds
  the delivery's id and time, so a receiver can refuse replays.
- Each delivery is a task of its own: the state change that caused it never waits for it, and
  a receiver that hangs holds up only its own (up to 10 s a try). A failed POST (connection
  error, timeout, 5xx, 429) is retried with backoff, then given up and logged; redirects are
  not followed (they could leave the allow list). Past 10,000 pending, new ones are dropped,
  with a log line.
- At most once across a coordinator's crash: deliveries live in its memory, not the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from framefleet.coordinator.store import JobRecord
from framefleet.core.backoff import Backoff
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.coordinator")

LABEL = "framefleet.webhook"
SIGNATURE_HEADER = "X-Framefleet-Signature"
ATTEMPTS = 6  # one POST and five retries: about a minute with RETRY's curve
RETRY = Backoff(base=1.0, cap=30.0)
TIMEOUT_SECONDS = 10.0
CONCURRENT = 32  # POSTs in flight at once
PENDING_LIMIT = 10_000  # deliveries waiting or retrying; past it new ones are dropped


def webhook_url(spec: pb.JobSpec, allowed: list[str]) -> str | None:
    """The spec's webhook URL, None without one; FramefleetError (INVALID_JOB) when it is not
    an http(s) URL under one of ``allowed``."""
    url = spec.labels.get(LABEL)
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise FramefleetError(ErrorClass.INVALID_JOB, f"webhook {url!r}: not an http(s) URL")
    if not any(_within(url, root) for root in allowed):
        roots = ", ".join(allowed) or "none"
        raise FramefleetError(
            ErrorClass.INVALID_JOB,
            f"webhook {url!r} is outside this coordinator's allowed webhooks ({roots};"
            " --allow-webhook adds more)",
        )
    return url


def _within(url: str, root: str) -> bool:
    """Under ``root`` as a URL prefix that ends at a path boundary (http://a/x is not under
    http://a/xy, nor http://a.evil under http://a)."""
    if url == root:
        return True
    return url.startswith(root if root.endswith("/") else root + "/")


def payload(record: JobRecord, delivery: str) -> dict[str, Any]:
    return {
        "event": "job.finished",
        "delivery_id": delivery,
        "sent_at": time.time(),
        "job_id": record.id,
        "state": record.state.value,
        "output_url": record.output_url if record.state.value == "succeeded" else "",
        "output_bytes": record.output_bytes,
        "error_class": record.error_class or "",
        "error_message": record.error_message or "",
        "batch_id": record.batch_id or "",
        "row_key": record.row_key or "",
        "cache_hit": record.cache_hit,
        "finished_at": record.finished_at,
    }


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhooks:
    """Deliveries in flight, each its own task (``notify``, for Farm), at most ``CONCURRENT``
    POSTs at once; a retry waits for its turn without holding one."""

    def __init__(self, secret_file: Path | None, retry: Backoff = RETRY) -> None:
        # Read once at start; a coordinator restart picks up a new secret.
        self.secret: bytes | None = None
        if secret_file is not None:
            try:
                self.secret = secret_file.read_bytes().strip()
            except OSError as e:
                raise ValueError(f"--webhook-secret {secret_file}: {e.strerror}") from e
            if not self.secret:
                raise ValueError(f"--webhook-secret {secret_file} is empty")
        self.retry = retry
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Any = None

    def notify(self, record: JobRecord) -> None:
        """Starts the POST for a job that ended, if it asked for one. Never waits."""
        try:
            url = pb.JobSpec.FromString(record.spec).labels.get(LABEL)
        except Exception:  # a spec this version cannot parse: no webhook to find
            return
        if not url:
            return
        if len(self._tasks) >= PENDING_LIMIT:
            log.error("too many webhooks pending, dropped", extra={"job_id": record.id, "url": url})
            return
        delivery = uuid.uuid4().hex
        body = json.dumps(payload(record, delivery), separators=(",", ":")).encode()
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        import aiohttp  # the coordinator's HTTP client, loaded with the first webhook

        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        async with self._slots:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status: int = response.status
                return status

    async def _deliver(self, url: str, body: bytes, delivery: str) -> None:
        import aiohttp

        headers = {"Content-Type": "application/json", "X-Framefleet-Delivery": delivery}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        problem = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                status = await self._post(url, body, headers)
                if status < 300:
                    return
                problem = f"HTTP {status}"
                if status < 500 and status != 429:
                    break  # the receiver refuses this delivery: asking again changes nothing
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                problem = repr(e)
            if attempt < ATTEMPTS:
                await asyncio.sleep(self.retry.delay(attempt))
        log.warning(
            "webhook not delivered", extra={"url": url, "delivery": delivery, "problem": problem}
        )
