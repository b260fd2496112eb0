"""The Library edits one's own LoRA's description (its error beside the field, what was typed kept); a
120-letter name does not widen Character Manager, the Library or the Studio past a 1366 px screen; Recent jobs
says a finished job's status (steps only while one runs); Fighting Styles shows the strength of a style's LoRA
on this base model, the one the Studio's slider opens at."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import shot
from tests.web.test_studio_pages import _character_lora

pytestmark = pytest.mark.browser
LONG = "W" * 120


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_library_descriptions_long_names_recent_jobs_and_style_strengths(live, page, tmp_path):
    with httpx.Client(base_url=live.url, timeout=60) as api:
        assert api.post("/api/v1/characters", json={"name": LONG, "description": "a very long name"}).status_code == 201
        lora = api.post(
            "/api/v1/loras", files={"file": ("johnhero.safetensors", _character_lora(tmp_path, "boxing", "johnhero"))}
        ).json()
        assert api.patch(f"/api/v1/loras/{lora['id']}", json={"name": LONG}).status_code == 200
        job = api.post("/api/v1/generations", json={"prompt": "johnhero, guard", "steps": 2, "n": 1}).json()
        deadline = time.monotonic() + 60
        while api.get(f"/api/v1/jobs/{job['id']}").json()["status"] != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.3)
    for path in ("/characters", "/library", f"/library?lora={lora['id']}", "/studio"):
        page.goto(live.url + path)
        assert _fits(page), f"{path} is wider than the screen"
    shot(page, "studio-long-name")

    page.goto(f"{live.url}/library?lora={lora['id']}")  # its details open
    row = page.locator(f"#lora-{lora['id']}")
    description = row.get_by_label(f"Description of {LONG}")
    assert description.input_value() == "johnhero, a fighter"
    description.fill("johnhero, blue gi, black belt")
    row.get_by_role("button", name="Save description").click()
    expect(row.get_by_role("status")).to_have_text("Description saved.")
    assert httpx.get(f"{live.url}/api/v1/loras/{lora['id']}").json()["description"] == "johnhero, blue gi, black belt"
    description.evaluate("(el, text) => { el.value = text; }", "x" * 301)  # past maxlength, as a script could
    row.get_by_role("button", name="Save description").click()
    error = row.locator(f"#desc-{lora['id']}-error")
    expect(error).to_contain_text("at most 300 characters")  # beside the field
    assert description.input_value() == "x" * 301 and description.get_attribute("aria-invalid") == "true"
    boxing = page.locator("tbody.lib-lora", has_text="Professional Boxing")
    assert boxing.locator("textarea").count() == 0  # a pre-built LoRA is not the user's to describe
    shot(page, "library-description")

    page.goto(live.url + "/")
    status = page.locator("table tr", has=page.get_by_role("link", name=f"#{job['id']}")).locator("[data-status]")
    assert status.inner_text().strip() == "succeeded"  # not "2/2", which reads as unfinished
    assert "/" not in page.locator("table").inner_text()

    page.goto(live.url + "/styles")
    kungfu = page.locator("article.style", has_text="kungfustyle")
    assert kungfu.locator("[data-strength]").inner_text() == "strength 1.2"  # its toy-world LoRA's, as in the Studio
