"""What a template cannot do from its page (real Chromium, one pool as an agent has): leave it
by popup or navigation, reach the network, outgrow the memory limit, or hang a frame with a
loop and have it retried as the machine's fault."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from playwright.async_api import Error as PlaywrightError

from framefleet.agent.page_pool import PagePool
from framefleet.agent.template_page import TemplatePage
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb
from tests.loopback_listener import Listener

pytestmark = pytest.mark.e2e

SIZE = (64, 64)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def template(body: str) -> pb.Template:
    return pb.Template(html=f"<!doctype html><html><body style='margin:0'>{body}</body></html>")


async def render(
    pool: PagePool, source: pb.Template, frames: int = 3, group: str = "", key: str = ""
) -> TemplatePage:
    page = await pool.acquire(group)
    try:
        await page.load(source, {}, SIZE, 30, key)
        for n in range(frames):
            await page.frame(n * 100.0, 10)
        page.raise_if_broken()
    finally:
        await pool.release(page, group)
    return page


async def started_pool(memory_mb: int = 0) -> PagePool:
    pool = PagePool("/usr/bin/chromium-headless-shell", 2, 500, 512 << 20, memory_mb << 20)
    await pool.start()
    return pool


async def test_a_popup_fails_the_job_and_is_gone_before_the_next_one(listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port('http')}/popup"
    popup = template(
        "<script>framefleet.onSeek(() => { window.open(" + repr(url) + "); });</script>"
    )
    pool = await started_pool()
    try:
        with pytest.raises(FramefleetError) as failed:
            await render(pool, popup, group="batch:a", key="k")
        assert failed.value.error_class == ErrorClass.TEMPLATE_FORBIDDEN
        assert not failed.value.retryable
        assert "opened another page" in str(failed.value)
        page = await render(pool, template("<p>next</p>"), group="batch:a", key="k2")
        assert len(page.context.pages) == 1, "the next row of the batch met the popup"
        page = await render(pool, template("<p>next</p>"))
        assert page.context.pages == []  # closed after the job, the popup with it
    finally:
        await pool.close()
    assert listener.hits == [], "the popup reached the local server"


async def test_a_navigation_away_fails_the_job(listener: Listener) -> None:
    http_url = f"http://127.0.0.1:{listener.port('http')}/nav"
    pool = await started_pool()
    try:
        for away_by in (
            *(f"location.href = '{to}'" for to in (http_url, "index.html", "other.html")),
            "location.href = 'about:blank'",
            "history.back()",
        ):
            away = template(f"<script>framefleet.onSeek(s => {{ {away_by}; }});</script>")
            away.assets["other.html"] = b"<p>other</p>"
            with pytest.raises(FramefleetError) as failed:
                await render(pool, away)
            assert failed.value.error_class == ErrorClass.TEMPLATE_FORBIDDEN, away_by
    finally:
        await pool.close()
    assert listener.hits == []


async def test_nothing_leaves_the_page(listener: Listener) -> None:
    """fetch, WebSocket, beacons, EventSource, workers, prefetch, CSS, iframes and WebRTC (STUN
    over UDP, TURN over TCP) reach nothing on loopback; the job itself renders."""
    http_url = f"http://127.0.0.1:{listener.port('http')}"
    script = f"""<script>
      fetch('{http_url}/fetch').catch(() => {{}});
      try {{ new WebSocket('ws://127.0.0.1:{listener.port("http")}/ws'); }} catch (e) {{}}
      navigator.sendBeacon('{http_url}/beacon', 'x');
      new EventSource('{http_url}/events');
      const code = "fetch('{http_url}/worker').catch(() => {{}})";
      new Worker(URL.createObjectURL(new Blob([code], {{type: 'text/javascript'}})));
      new SharedWorker(URL.createObjectURL(new Blob([code], {{type: 'text/javascript'}})));
      document.head.insertAdjacentHTML('beforeend',
        '<link rel="prefetch" href="{http_url}/prefetch"><style>body {{ background:' +
        ' url({http_url}/css) }}</style>');
      const frame = document.createElement('iframe'); frame.src = '{http_url}/iframe';
      document.body.appendChild(frame);
      const pc = new RTCPeerConnection({{iceServers: [
        {{urls: 'stun:127.0.0.1:{listener.port("udp")}'}},
        {{urls: 'turn:127.0.0.1:{listener.port("tcp")}?transport=tcp', username: 'u',
          credential: 'c'}}]}});
      pc.createDataChannel('leak');
      pc.createOffer().then(offer => pc.setLocalDescription(offer));
      framefleet.onSeek(() => new Promise(done => setTimeout(done, 300)));
    </script>"""
    pool = await started_pool()
    try:
        await render(pool, template(script), frames=5)
    finally:
        await pool.close()
    hits, packets, connections = listener.drain()
    assert hits == []
    assert packets == [], "WebRTC sent a STUN packet"
    assert connections == 0, "WebRTC reached a TURN server over TCP"


async def test_each_job_gets_a_fresh_context_unless_it_is_the_next_row_of_its_batch() -> None:
    remember = template(
        "<script>framefleet.onParams(p => { window.seen = (window.seen || 0) + 1;"
        " localStorage.setItem('k', 'v'); });</script>"
    )
    pool = await started_pool()
    try:
        first = await render(pool, remember, group="batch:a", key="k1")
        again = await render(pool, remember, group="batch:a", key="k1")
        assert again is first, "the next row of a batch keeps its warm page"
        assert await again.page.evaluate("window.seen") == 2
        other = await render(pool, remember, group="batch:b", key="k1")
        alone = await render(pool, remember, key="k1")
        for page in (other, alone):
            assert page is not first and page.context is not first.context
        assert alone.page.is_closed(), "a job outside a batch does not outlive it"
    finally:
        await pool.close()


async def test_a_renderer_past_the_memory_limit_is_killed_and_the_next_job_renders() -> None:
    hog = template(
        "<script>const kept = []; framefleet.onSeek(() => {"
        " for (let i = 0; i < 8; i++) kept.push(new Uint8Array(64 << 20).fill(1)); });</script>"
    )
    pool = await started_pool(memory_mb=300)
    try:
        with pytest.raises(FramefleetError) as failed:
            await render(pool, hog, frames=6)  # 3 GiB if nothing stopped it
        assert failed.value.error_class == ErrorClass.TEMPLATE_RESOURCE_LIMIT
        assert not failed.value.retryable
        page = await render(pool, template("<p>next</p>"))
        assert not page.crashed
    finally:
        await pool.close()


async def test_an_endless_loop_in_a_frame_is_the_templates_fault() -> None:
    loop = template("<script>framefleet.onSeek(s => { if (s > 0) for (;;) {} });</script>")
    pool = await started_pool()
    try:
        page = await pool.acquire()
        await page.load(loop, {}, SIZE, 30)
        await page.frame(0, 10)
        with pytest.raises(FramefleetError) as failed:
            await page.frame(100, 1.0)
        await pool.release(page)
        assert failed.value.error_class == ErrorClass.TEMPLATE_FRAME_TIMEOUT
        assert not failed.value.retryable
        await render(pool, template("<p>next</p>"))
    finally:
        await pool.close()


async def test_a_slow_frame_that_waits_is_retried_as_the_machines_fault() -> None:
    """A frame that overruns without its renderer burning CPU (here: it waits) is not blamed
    on the template: CAPTURE_TIMEOUT, retryable."""
    waits = template(
        "<script>framefleet.onSeek(s => s > 0 ? new Promise(() => {}) : undefined);</script>"
    )
    pool = await started_pool()
    try:
        page = await pool.acquire()
        await page.load(waits, {}, SIZE, 30)
        with pytest.raises(FramefleetError) as failed:
            await page.frame(100, 1.0)
        await pool.release(page)
    finally:
        await pool.close()
    assert failed.value.error_class == ErrorClass.CAPTURE_TIMEOUT
    assert failed.value.retryable


async def test_slots_render_in_separate_chromiums_and_a_dead_one_is_relaunched() -> None:
    """Two jobs at once get pages of two Chromiums (pages of one take turns to draw); a batch
    row whose warm page's Chromium is busy gets a fresh page in the free one; and a slot whose
    Chromium died renders its next job in a new one."""
    pool = await started_pool()
    try:
        first, second = await pool.acquire("batch:a"), await pool.acquire("batch:a")
        assert first.context.browser is not second.context.browser
        await pool.release(first, "batch:a")
        third = await pool.acquire("batch:a")  # first's Chromium is free: the warm page
        assert third is first
        await pool.release(second, "batch:a")
        fourth = await pool.acquire("batch:b")
        assert fourth.context.browser is second.context.browser  # the only free Chromium
        await pool.release(third, "batch:a")
        await pool.release(fourth, "batch:b")
        dead = first.context.browser
        assert dead is not None
        await dead.close()
        assert not pool.browser_up()
        after = template("<script>framefleet.onSeek(() => {})</script><p>after</p>")
        pages = await asyncio.gather(render(pool, after), render(pool, after))
        assert all(page.context.browser is not dead for page in pages)
        assert pool.browser_up()
    finally:
        await pool.close()


async def test_a_page_that_will_not_open_fails_the_job_as_retryable_and_the_pool_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A context that cannot be opened, again in a fresh Chromium, fails the job as
    BROWSER_CRASHED (retried), not as an unclassified error; the next job renders."""
    pool = await started_pool()
    try:
        opening = TemplatePage.open

        async def refused(*args: object, **kwargs: object) -> TemplatePage:
            raise PlaywrightError("Target page, context or browser has been closed")

        monkeypatch.setattr(TemplatePage, "open", refused)
        with pytest.raises(FramefleetError) as failed:
            await pool.acquire()
        assert failed.value.error_class == ErrorClass.BROWSER_CRASHED
        monkeypatch.setattr(TemplatePage, "open", opening)
        await render(pool, template("<script>framefleet.onSeek(() => {})</script><p>next</p>"))
        assert pool.browser_up()
    finally:
        await pool.close()
