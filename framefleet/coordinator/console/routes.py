"""The console's routes, added to the coordinator's aiohttp application (commands/http.py).

Who is asking: with client tokens (``--tokens``) the console asks for one and keeps it in an
HttpOnly, SameSite=Strict cookie; the token's role decides as it does over gRPC (``read`` sees
its own jobs, ``submit`` may also cancel them, ``admin`` everything). Without tokens the
coordinator trusts whoever reaches it, here as over gRPC. Buttons POST with a custom header, so
another site cannot make a browser press them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from aiohttp import web

from framefleet.coordinator import batches
from framefleet.coordinator.console.views import Query, snapshot
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.store import JobState
from framefleet.coordinator.tokens import OPEN, Principal, TokenFile
from framefleet.outputs.local import local_path

STATIC = Path(__file__).parent / "static"
COOKIE = "framefleet_token"
ACTION_HEADER = "X-Framefleet-Console"
UPDATE_SECONDS = 1.0
FARM: web.AppKey[Farm] = web.AppKey("farm", Farm)
TOKENS: web.AppKey[TokenFile | None] = web.AppKey("tokens")


def add_console(app: web.Application, farm: Farm, tokens: TokenFile | None) -> None:
    app[FARM], app[TOKENS] = farm, tokens
    app.router.add_get("/", _home)
    app.router.add_get("/console/", _index)
    app.router.add_static("/console/static/", STATIC)
    app.router.add_post("/console/api/login", _login)
    app.router.add_post("/console/api/logout", _logout)
    app.router.add_get("/console/api/events", _events)
    app.router.add_post("/console/api/jobs/{id}/cancel", _cancel_job)
    app.router.add_post("/console/api/batches/{id}/cancel", _cancel_batch)
    app.router.add_post("/console/api/batches/{id}/retry", _retry_batch)
    app.router.add_get("/console/output/{id}", _output)


def _principal(request: web.Request) -> Principal | None:
    tokens = request.app[TOKENS]
    if tokens is None:
        return OPEN
    return tokens.lookup(request.cookies.get(COOKIE, ""))


def _caller(request: web.Request, *, action: bool = False) -> Principal:
    if action and request.headers.get(ACTION_HEADER) != "1":
        raise web.HTTPForbidden(text="missing the console's header")
    principal = _principal(request)
    if principal is None:
        raise web.HTTPUnauthorized(text="log in with a client token")
    if action and not principal.writes:
        raise web.HTTPForbidden(text=f"the {principal.role} role cannot change jobs")
    return principal


async def _home(_: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


async def _index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _login(request: web.Request) -> web.Response:
    tokens = request.app[TOKENS]
    if request.headers.get(ACTION_HEADER) != "1":
        raise web.HTTPForbidden(text="missing the console's header")
    try:
        token = str((await request.json())["token"])[:512]
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text='expected {"token": "..."}') from None
    if tokens is not None and tokens.lookup(token) is None:
        raise web.HTTPUnauthorized(text="unknown token")
    response = web.json_response({"ok": True})
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/console/"
    )
    return response


async def _logout(_: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/console/")
    return response


def _query(request: web.Request, principal: Principal) -> Query:
    q = request.query
    states = [s for s in q.get("state", "").split(",") if s in JobState.__members__.values()]
    try:
        page = max(0, min(int(q.get("page", "0")), 1000))
    except ValueError:
        page = 0
    tenant = q.get("tenant", "")[:200] if principal.scope is None else principal.scope
    return Query(
        states=[JobState(s) for s in states],
        batch_id=q.get("batch", "")[:64],
        tenant=tenant or None,
        page=page,
    )


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot now, then one whenever it changes (checked every
    second), until the page goes away."""
    principal = _principal(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    if principal is None:
        await response.write(b"event: login\ndata: {}\n\n")
        return response
    query, farm = _query(request, principal), request.app[FARM]
    last = ""
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while True:
            view = await snapshot(farm, query, principal)
            text = json.dumps(view, separators=(",", ":"))
            if text != last:
                await response.write(f"data: {text}\n\n".encode())
                last = text
            else:
                await response.write(b": still here\n\n")  # notices a closed page
            await asyncio.sleep(UPDATE_SECONDS)
    return response


async def _cancel_job(request: web.Request) -> web.Response:
    principal = _caller(request, action=True)
    farm = request.app[FARM]
    record = await farm.queries.job(principal, request.match_info["id"])
    if record is None:
        raise web.HTTPNotFound(text="no such job")
    after = await farm.cancel(record.id)
    return web.json_response({"state": after.state.value if after else "unknown"})


async def _owned_batch(request: web.Request) -> str:
    principal = _caller(request, action=True)
    batch = await request.app[FARM].queries.batch(principal, request.match_info["id"])
    if batch is None:
        raise web.HTTPNotFound(text="no such batch")
    return batch.id


async def _cancel_batch(request: web.Request) -> web.Response:
    batch_id = await _owned_batch(request)
    await batches.cancel_batch(request.app[FARM], batch_id)
    return web.json_response({"ok": True})


async def _retry_batch(request: web.Request) -> web.Response:
    batch_id = await _owned_batch(request)
    return web.json_response(
        {"retried": await batches.retry_failed_rows(request.app[FARM], batch_id)}
    )


async def _output(request: web.Request) -> web.StreamResponse:
    """A local output, for the inline player (ranges, so it seeks); S3 outputs are linked
    to directly."""
    principal = _caller(request)
    record = await request.app[FARM].queries.job(principal, request.match_info["id"])
    if record is None or record.state != JobState.SUCCEEDED:
        raise web.HTTPNotFound(text="no such output")
    if not record.output_url.startswith("file://"):
        raise web.HTTPNotFound(text=f"not a local output: {record.output_url}")
    return web.FileResponse(local_path(record.output_url), headers={"Content-Type": "video/mp4"})
