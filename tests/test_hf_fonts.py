"""HyperFrames compositions get HyperFrames' fonts, offline: named families resolve to the
@fontsource faces HyperFrames bundles (Helvetica and Arial to Inter, ...), generic stacks get
Inter first, and a family nothing resolves is named. Parsing alone, then in a real Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from framefleet.agent import hf_fonts
from framefleet.agent.browser import Chromium
from framefleet.agent.template_page import TemplatePage
from framefleet.core import jobspec
from framefleet.core.errors import ErrorClass, FramefleetError

CSS = """<style>:root { --display: "Bebas Neue", sans-serif }
.a { font-family: system-ui, sans-serif } .b { font: 700 48px/1.2 Helvetica, Arial, sans-serif }
.c { font-family: var(--display) } .d { font-family: 'No Such Face', serif }
@font-face { font-family: "Own"; src: url(own.woff2) } .e { font-family: Own, monospace }
</style><p style="font-family: Georgia, serif; color: red">x</p>"""


def test_an_agent_without_the_faces_fails_the_job_retryably_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install that never built agent/hf_fonts/dist (`make example` alone) is the agent's
    fault: the job fails INTERNAL, naming the missing face, for another agent to retry."""
    (tmp_path / "faces.json").write_bytes(hf_fonts.FONTS.joinpath("faces.json").read_bytes())
    monkeypatch.setattr(hf_fonts, "FONTS", tmp_path)
    bundle = {"http://o/index.html": b"<html><head></head><p style='font-family: Inter'>x</p>"}
    with pytest.raises(FramefleetError) as failed:
        hf_fonts.apply(bundle, "http://o/index.html", "http://o")
    assert failed.value.error_class == ErrorClass.INTERNAL and failed.value.retryable
    assert "inter-latin-" in str(failed.value) and "not installed" in str(failed.value)


def test_families_are_found_and_generic_stacks_get_inter_first() -> None:
    fonts = hf_fonts.Fonts()
    fonts.read(CSS)
    fonts.collect(CSS)
    rewritten = fonts.rewrite(CSS)
    assert ".a { font-family: Inter, system-ui, sans-serif }" in rewritten
    assert "font: 700 48px/1.2 Helvetica, Arial, sans-serif" in rewritten  # named first: kept
    css, unresolved = fonts.faces_css("http://origin")
    # Declared by the project: not replaced; nothing resolves "No Such Face": named.
    assert unresolved == ["No Such Face"]
    for family, face in [
        ("Helvetica", "inter-latin-700-normal"),
        ("Arial", "inter-latin-400-normal"),
        ("Inter", "inter-latin-900-normal"),
        ("Bebas Neue", "league-gothic-latin-400-normal"),
        ("Georgia", "eb-garamond-latin-700-normal"),
    ]:
        url = f"http://origin/{hf_fonts.PATH}/{face}.woff2"
        assert f'font-family:"{family}";src:url("{url}")' in css
    assert '"Own"' not in css and "No Such Face" not in css


@pytest_asyncio.fixture
async def page() -> AsyncIterator[TemplatePage]:
    chromium = await Chromium.launch()
    try:
        yield await TemplatePage.open(await chromium.browser.new_context())
    finally:
        await chromium.close()


@pytest.mark.e2e
async def test_a_composition_draws_with_hyperframes_faces(
    page: TemplatePage, tmp_path: Path
) -> None:
    spans = "".join(
        f'<span id="{i}" style="font-family: {family}; font-size: 40px">Wavy Quartz</span><br>'
        for i, family in [
            ("inter", "Inter"), ("arial", "Arial, sans-serif"), ("generic", "sans-serif"),
            ("unknown", "'No Such Face'"), ("dejavu", "'DejaVu Sans Condensed'"),
        ]
    )  # fmt: skip
    (tmp_path / "index.html").write_text(
        f"""<!doctype html><html><body><div data-composition-id="main" data-width="640"
 data-height="360" data-duration="1">{spans}</div></body></html>"""
    )
    spec = jobspec.template_job(tmp_path, {})
    await page.load(spec.template, {}, (640, 360), 30)
    widths = await page.page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("span")].map(
            (s) => [s.id, s.getBoundingClientRect().width]))"""
    )
    # Arial and a bare sans-serif are drawn in Inter, as HyperFrames draws them; a family
    # nothing resolves falls back to the system's face, and is named.
    assert widths["arial"] == widths["inter"] == widths["generic"]
    assert widths["unknown"] != widths["inter"]
    assert page.unresolved_fonts == ["DejaVu Sans Condensed", "No Such Face"]
