"""Opens the store a URL names: sqlite:///path (the embedded default) or postgresql://..."""

from __future__ import annotations

from urllib.parse import urlparse

from coordinator.store.base import JobStore


async def open_store(url: str) -> JobStore:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from coordinator.store.sqlite import SqliteStore

        # sqlite:///abs/path.db -> /abs/path.db
        return await SqliteStore.open(url.removeprefix("sqlite://"))
    if scheme in ("postgres", "postgresql"):
        from coordinator.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    raise ValueError(f"unsupported store URL {url!r} (use sqlite:///path or postgresql://...)")
