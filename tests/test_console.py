"""The web console in real Chromium (Debian's headless shell, through Playwright) against a
coordinator and an agent running as separate processes: it logs in with a client token, shows a
running batch's progress moving, plays an output, cancels a job, and shows a read-only token
only its own tenant's jobs and no buttons. Screenshots of each page are kept as artifacts
(out/console-screenshots/)."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from framefleet import AsyncClient, template_job
from framefleet.agent.browser import CHROMIUM, CHROMIUM_FLAGS
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent.parent / "out" / "console-screenshots"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    root = tmp_path_factory.mktemp("console")
    farm = FarmProcesses(root)
    try:
        farm.start_coordinator(
            f"sqlite:///{root}/jobs.db",
            root / "out",
            *("--lease-ttl", "6", "--heartbeat-interval", "1", "--http", "127.0.0.1:0"),
        )
        farm.start_agent("console-agent", "--slots", "1")
        yield farm
    finally:
        farm.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    playwright = await async_playwright().start()
    try:
        yield await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            chromium_sandbox=os.geteuid() != 0,
        )
    finally:
        await playwright.stop()


def base(farm: FarmProcesses) -> str:
    """The --http address serves TLS with the coordinator's certificate when it has one."""
    return f"{'https' if farm.trust else 'http'}://{farm.http}"


async def open_console(
    browser: Browser, farm: FarmProcesses, token: str, errors: list[str]
) -> Page:
    # The test CA is not in Chromium's trust store; the certificate is checked by the SDK tests.
    page = await browser.new_page(viewport={"width": 1440, "height": 900}, ignore_https_errors=True)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{base(farm)}/")  # redirected to /console/
    await page.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
    await page.fill("#token", "fft_wrong")
    await page.click("#login-form button")
    await page.wait_for_selector("text=That token is not known here.", timeout=WAIT_MS)
    errors.clear()  # the refused login's 401, on purpose
    await page.fill("#token", token)
    await page.click("#login-form button")
    await page.wait_for_selector("#jobs table", state="visible", timeout=WAIT_MS)
    return page


async def shoot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)


def small(frames: int, color: str) -> pb.JobSpec:
    return template_job(
        TEMPLATES / "moving_box.html",
        {"color": color},
        width=160,
        height=120,
        frames=frames,
    )


async def test_console_pages_progress_player_and_cancel(
    farm: FarmProcesses, browser: Browser, tmp_path: Path
) -> None:
    assert farm.trust is not None
    errors: list[str] = []
    page = await open_console(browser, farm, farm.trust.token, errors)

    async with AsyncClient(farm.address) as client:
        batch = await client.submit_batch(
            small(150, "blue"), [("row-a", {"color": "blue"}), ("row-b", {"color": "red"})], "promo"
        )
        # Batches: the running batch's frames move on the page, not by reloading it.
        await page.goto(f"{base(farm)}/console/#batches")
        card = f"[data-batch='{batch.id}']"
        await page.wait_for_selector(f"{card} .bar[aria-valuenow]", timeout=WAIT_MS)
        first = await page.get_attribute(f"{card} .bar", "aria-valuenow")
        await page.wait_for_function(
            "([sel, n]) => +document.querySelector(sel).getAttribute('aria-valuenow') > n",
            arg=[f"{card} .bar", int(first or 0)],
            timeout=WAIT_MS,
        )
        await shoot(page, tmp_path, "batches-running")

        # Agents: the one agent, its slots, leases and version.
        await page.click("nav a[data-view=agents]")
        row = page.locator("[data-agent='console-agent']")
        await row.wait_for(timeout=WAIT_MS)
        assert await row.locator("td").nth(1).inner_text() == "1"
        assert await row.locator("td").nth(4).inner_text() != "\u2013"  # a version, not a dash
        await shoot(page, tmp_path, "agents")

        # Jobs: a long job behind the batch is cancelled from its row's button (queued, or
        # already running when the batch ended first on a fast machine).
        long = await client.submit(small(3000, "green"))
        await page.click("nav a[data-view=jobs]")
        job_row = page.locator(f"[data-job='{long.id}']")
        await job_row.locator("text=/^(queued|running)$/").wait_for(timeout=WAIT_MS)
        await job_row.locator("button", has_text="Cancel").click()
        await job_row.locator("text=cancelled").wait_for(timeout=WAIT_MS)
        assert (await client.get(long.id)).state == pb.JOB_STATE_CANCELLED

        # The batch ends; its digest shows, and an output plays inline.
        await client.wait_batch(batch.id)
        await page.select_option("select[name=state]", "succeeded")
        done_row = page.locator("#job-rows tr", has_text="row-a")
        await done_row.locator("button[title=play]").click()
        await page.wait_for_function(
            "document.querySelector('#player video').readyState >= 2", timeout=WAIT_MS
        )
        await shoot(page, tmp_path, "player")
        await page.click("#player button")
        await page.select_option("select[name=state]", "")
        await page.wait_for_selector("#job-rows tr >> text=cancelled", timeout=WAIT_MS)
        await shoot(page, tmp_path, "jobs")
        await page.click("nav a[data-view=batches]")
        await page.wait_for_selector(f"{card} .digest", timeout=WAIT_MS)
        await shoot(page, tmp_path, "batches-done")
    assert errors == []


async def test_read_token_sees_its_own_and_cannot_act(
    farm: FarmProcesses, browser: Browser, tmp_path: Path
) -> None:
    assert farm.trust is not None
    viewer = farm.trust.add_token("viewer", "read")
    async with AsyncClient(farm.address) as client:
        theirs = await client.submit(small(3, "white"))
    errors: list[str] = []
    page = await open_console(browser, farm, viewer, errors)
    await page.wait_for_selector("#no-jobs", state="visible", timeout=WAIT_MS)
    assert await page.locator(f"[data-job='{theirs.id}']").count() == 0
    assert await page.locator("button", has_text="Cancel").count() == 0
    await shoot(page, tmp_path, "read-only")
    assert errors == []

    # Around the page: a button press from elsewhere (no console header, or no token) fails.
    assert farm.trust is not None
    tls = ssl.create_default_context(cafile=str(farm.trust.ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http:
        for headers in ({}, {"X-Framefleet-Console": "1"}):
            url = f"{base(farm)}/console/api/jobs/{theirs.id}/cancel"
            async with http.post(url, json={}, headers=headers) as response:
                assert response.status in (401, 403)
        async with http.get(f"{base(farm)}/console/api/events") as events:
            assert await events.content.readline() == b"event: login\n"
    assert (await client_get(farm, theirs.id)).state != pb.JOB_STATE_CANCELLED


async def client_get(farm: FarmProcesses, job_id: str) -> pb.Job:
    async with AsyncClient(farm.address) as client:
        return await client.get(job_id)


async def test_retry_failed_rows_runs_them_again(
    farm: FarmProcesses, browser: Browser, tmp_path: Path
) -> None:
    assert farm.trust is not None
    spec = template_job(TEMPLATES / "maybe_throws.html", {}, width=64, height=64, frames=3)
    async with AsyncClient(farm.address) as client:
        batch = await client.submit_batch(
            spec, [("ok", {"color": "blue"}), ("bad", {"color": "red", "explode": True})], "mixed"
        )
        await client.wait_batch(batch.id)
        bad = next(j for j in await client.list([pb.JOB_STATE_FAILED]) if j.row_key == "bad")
        errors: list[str] = []
        page = await open_console(browser, farm, farm.trust.token, errors)
        await page.click("nav a[data-view=batches]")
        card = page.locator(f"[data-batch='{batch.id}']")
        await card.locator("li", has_text="TEMPLATE_SCRIPT_ERROR").wait_for(timeout=WAIT_MS)
        await shoot(page, tmp_path, "batches-failed")
        await card.locator("button", has_text="Retry failed rows").click()
        for _ in range(600):  # the row is queued and rendered (and fails) once more
            again = await client.get(bad.id)
            if again.started_at.ToNanoseconds() > bad.started_at.ToNanoseconds():
                break
            await page.wait_for_timeout(100)
        else:
            raise AssertionError("the failed row did not run again")
        ok = next(j for j in await client.list([]) if j.row_key == "ok" and j.batch_id == batch.id)
        assert ok.state == pb.JOB_STATE_SUCCEEDED and ok.attempt == 1  # left alone
    assert errors == []
