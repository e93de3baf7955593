"""Requests on whole S3 objects: a bucket's check, an object's size, bytes, copy and deletion,
and the clean-up of a multipart upload whose writer is gone. Each uses the shared client
(framefleet/outputs/s3_client.py)."""

from __future__ import annotations

import logging
import mimetypes
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs.s3_client import (
    S3Settings,
    error_code,
    parse_s3_url,
    retried,
    shared_client,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

log = logging.getLogger("framefleet.agent")

CONTENT_TYPE = "video/mp4"  # unless the key's suffix says otherwise (.webm)


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or CONTENT_TYPE


# Outputs are named by content key: the bytes behind a name never change.
CACHE_CONTROL = "public, max-age=31536000, immutable"


async def abort_upload(url: str, upload_id: str) -> None:
    """Aborts a multipart upload whose writer is gone (the coordinator's clean-up after an agent
    was lost with its lease). An upload already completed or aborted is fine."""
    bucket, key = parse_s3_url(url)
    settings = S3Settings.from_env()
    client = await shared_client(settings).get()
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as e:
        if error_code(e) != "NoSuchUpload":
            raise
    log.info("orphaned s3 upload aborted", extra={"url": url, "upload_id": upload_id})


async def check(url: str) -> None:
    """The bucket exists and these credentials may use it (HeadBucket)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"{url!r} is not an s3://bucket/prefix URL")
    try:
        client = await shared_client(S3Settings.from_env()).get()
        await client.head_bucket(Bucket=parsed.netloc)
    except (ClientError, BotoCoreError, ValueError) as e:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write to {url}: {e}") from e


async def size(url: str) -> int | None:
    """The object's ContentLength (HeadObject); None when it does not exist."""
    bucket, key = parse_s3_url(url)
    client = await shared_client(S3Settings.from_env()).get()
    try:
        head = await client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot look at {url}: {e}") from e
    return int(head["ContentLength"])


async def copy(source: str, target: str) -> None:
    """A server-side copy (CopyObject: S3 moves the bytes, up to 5 GB), retried like a part."""
    source_bucket, source_key = parse_s3_url(source)
    bucket, key = parse_s3_url(target)

    async def copy_object(client: S3Client) -> None:
        await client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": source_bucket, "Key": source_key},
            MetadataDirective="COPY",
        )

    await retried(
        shared_client(S3Settings.from_env()), f"copying {source} to {target}", copy_object
    )


async def read(url: str) -> bytes | None:
    """The object's bytes (GetObject); None when it does not exist."""
    bucket, key = parse_s3_url(url)
    client = await shared_client(S3Settings.from_env()).get()
    try:
        response = await client.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data
    except ClientError as e:
        if error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot read {url}: {e}") from e


async def delete(url: str) -> None:
    """DeleteObject, retried like a part (deleting what is not there is fine in S3)."""
    bucket, key = parse_s3_url(url)

    async def delete_object(client: S3Client) -> None:
        await client.delete_object(Bucket=bucket, Key=key)

    await retried(shared_client(S3Settings.from_env()), f"deleting {url}", delete_object)
