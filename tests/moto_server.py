"""moto's S3 server as a separate process on loopback, and helpers to look at what it holds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

HOST = "127.0.0.1"
# moto accepts any credentials; these keep botocore from looking further (profiles, IMDS).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(cls, log: Path, timeout: float = 30.0) -> MotoServer:
        for _ in range(3):  # another process may take the port between probe and bind
            port = free_port()
            with log.open("ab") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            server = cls(process, port)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(server.url, timeout=1):
                        return server
                time.sleep(0.1)
            server.stop()
        raise RuntimeError(f"moto's server did not start; see {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[S3Client]:
    """A plain client straight to the server, to look at objects as a user would."""
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ) as client:
        yield client


async def read_object(client: S3Client, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object."""
    try:
        response = await client.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    async with response["Body"] as body:
        return await body.read()


async def open_uploads(client: S3Client, bucket: str) -> list[str]:
    """Keys of multipart uploads still open in the bucket."""
    response = await client.list_multipart_uploads(Bucket=bucket)
    return [u.get("Key", "") for u in response.get("Uploads", [])]


async def object_keys(client: S3Client, bucket: str) -> list[str]:
    response = await client.list_objects_v2(Bucket=bucket)
    return [o.get("Key", "") for o in response.get("Contents", [])]


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Polls ``check`` until it holds; fails the test after ``seconds``."""
    for _ in range(max(1, int(seconds / 0.05))):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def create_bucket(endpoint: str, bucket: str) -> None:
    """What a deployment's bucket step does (compose's create-bucket, `aws s3 mb`)."""
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=bucket)


async def only_object(endpoint: str, bucket: str) -> tuple[list[str], bytes | None]:
    """Every key in the bucket, and the first object's bytes."""
    async with s3_client(endpoint) as s3:
        keys = await object_keys(s3, bucket)
        return keys, await read_object(s3, bucket, keys[0]) if keys else None
