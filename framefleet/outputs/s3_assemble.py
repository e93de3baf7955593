"""Assembling a chunked render in S3: one multipart upload of the target whose parts are the
chunk objects copied by S3 itself (UploadPartCopy), so the bytes never leave the store.

S3 wants every part but the last to be at least 5 MiB; runs of consecutive chunks smaller than
that are read (by the assembling agent) and uploaded as one part instead. Any failure aborts
the multipart upload, so no half-assembled object and no orphaned upload is left behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import ClientError

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs.s3_client import (
    MIN_PART_SIZE,
    S3Settings,
    parse_s3_url,
    retried,
    shared_client,
)
from framefleet.outputs.s3_objects import CACHE_CONTROL, content_type, read, size

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("framefleet.agent")

T = TypeVar("T")


@dataclass
class Part:
    """One part of the target: a chunk copied by S3, or small chunks read and uploaded."""

    chunks: list[str] = field(default_factory=list)
    size: int = 0
    copied: bool = False


def plan(chunks: list[tuple[str, int]], minimum: int = MIN_PART_SIZE) -> list[Part]:
    """The parts for ``chunks`` (url, size) in order: a chunk of at least ``minimum`` bytes is
    copied alone; smaller ones gather (with whatever follows) until the part is big enough."""
    parts: list[Part] = []
    pending = Part()
    for url, chunk_size in chunks:
        if not pending.chunks and chunk_size >= minimum:
            parts.append(Part([url], chunk_size, copied=True))
            continue
        pending.chunks.append(url)
        pending.size += chunk_size
        if pending.size >= minimum:
            parts.append(pending)
            pending = Part()
    if pending.chunks:
        parts.append(pending)  # the last part may be small
    return parts


async def assemble(chunks: list[str], target: str) -> int:
    """Makes ``target`` the chunks' bytes joined in order; returns its size. Redone after a
    lost assembler, it writes the same object again; once the chunks are gone (deleted after
    an assembly that completed) the target that assembly left is the answer."""
    bucket, key = parse_s3_url(target)
    settings = S3Settings.from_env()
    sizes = await asyncio.gather(*(size(url) for url in chunks))
    missing = [url for url, found in zip(chunks, sizes, strict=True) if found is None]
    if missing:
        done = await size(target)
        if done is not None:
            return done
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"chunk {missing[0]} is missing")
    parts = plan([(url, s or 0) for url, s in zip(chunks, sizes, strict=True)])
    client = shared_client(settings)

    async def call(what: str, op: Callable[[S3Client], Awaitable[T]]) -> T:
        return await retried(client, f"{what} assembling {target}", op)

    created = await call(
        "CreateMultipartUpload",
        lambda c: c.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type(key), CacheControl=CACHE_CONTROL
        ),
    )
    upload_id = created["UploadId"]
    slots = asyncio.Semaphore(settings.parts_in_flight)

    async def send(number: int, part: Part) -> CompletedPartTypeDef:
        async with slots:
            if part.copied:
                source_bucket, source_key = parse_s3_url(part.chunks[0])
                copied = await call(
                    f"UploadPartCopy {number}",
                    lambda c: c.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": source_bucket, "Key": source_key},
                    ),
                )
                return {"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]}
            body = b"".join([await _read(url) for url in part.chunks])
            uploaded = await call(
                f"UploadPart {number}",
                lambda c: c.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                ),
            )
            return {"PartNumber": number, "ETag": uploaded["ETag"]}

    total = sum(part.size for part in parts)

    async def complete(c: S3Client) -> None:
        try:
            await c.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [task.result() for task in tasks]},
            )
        except ClientError as e:
            # A retry after a lost reply: the first attempt may have completed it.
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload" or (
                await size(target) != total
            ):
                raise

    tasks = [asyncio.ensure_future(send(number, part)) for number, part in enumerate(parts, 1)]
    try:
        await asyncio.gather(*tasks)
        await call("CompleteMultipartUpload", complete)
    except BaseException:
        # No part may land after the abort: stop the others first.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.shield(_abort(settings, bucket, key, upload_id))
        raise
    copied = sum(1 for part in parts if part.copied)
    log.info(
        "s3 chunks assembled",
        extra={"url": target, "chunks": len(chunks), "parts": len(parts), "copied": copied},
    )
    return total


async def _read(url: str) -> bytes:
    data = await read(url)
    if data is None:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"chunk {url} went missing")
    return data


async def _abort(settings: S3Settings, bucket: str, key: str, upload_id: str) -> None:
    try:
        client = await shared_client(settings).get()
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception:
        log.exception("aborting an assembly's upload failed", extra={"key": key})
