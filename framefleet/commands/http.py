"""The one HTTP address of a coordinator or an agent (``--http ADDR``): ``/healthz`` (the
process answers), ``/readyz`` (the service's own readiness check) and ``/metrics`` (Prometheus
text). It is an aiohttp ``web.Application``: other modules add their routes to it (the
coordinator's console) before it starts."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

# Resolves to None when the service is ready, else the reason it is not (sent with a 503).
ReadyCheck = Callable[[], Awaitable[str | None]]


def http_app(ready: ReadyCheck) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = await ready()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (every interface) as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--http {address!r}: expected HOST:PORT, e.g. 0.0.0.0:9464")
    return host.strip("[]") or "0.0.0.0", int(port)


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, address: str, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serves ``app`` on ``address`` until exit (HTTPS with ``tls``); yields the bound
    ``host:port`` (port 0 picks a free one)."""
    host, port = split_address(address)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        bound = runner.addresses[0]
        yield f"{host}:{bound[1]}"
    finally:
        await runner.cleanup()
