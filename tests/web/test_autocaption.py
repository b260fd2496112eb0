"""Auto-caption on the Train page, in a real browser: toy-world references uploaded without captions, the
captioner choice (the model option says how to add one), the leave-out checkbox checked with its reason; a
caption typed by hand survives; the job's panel follows the run and the captions appear in the editors marked
"auto"; a reload keeps them; editing one makes it the user's."""

from __future__ import annotations

import shutil

import httpx
import pytest
from playwright.sync_api import expect

from lorastudio.engine import LEAVE_OUT_REASON, ToyCaptioner, caption_folder
from tests.web.conftest import shot

pytestmark = pytest.mark.browser


def test_auto_caption_writes_reviewable_captions_that_outlive_a_reload(live, page, john_refs, tmp_path):
    pictures = sorted(john_refs.glob("*.png"))[:5]
    with httpx.Client(base_url=live.url, timeout=60) as api:
        john = api.post("/api/v1/characters", json={"name": "Action Hero John", "description": "red gi"}).json()
        dataset = api.post(
            "/api/v1/datasets",
            json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": john["id"]},
        ).json()
        files = [("files", (p.name, p.read_bytes())) for p in pictures]  # no .txt: nobody wrote a caption
        assert api.post(f"/api/v1/datasets/{dataset['id']}/images", files=files).status_code == 200
    for p in pictures:  # what the engine writes for the same pictures, to compare with what the page shows
        shutil.copy(p, tmp_path / p.name)
    expected = caption_folder(tmp_path, ToyCaptioner(), trigger="johnhero", kind="character", description="red gi")

    page.goto(f"{live.url}/train/{dataset['id']}")
    panel = page.locator("#autocaption")
    captioner = panel.get_by_label("Captioner")
    expect(captioner.locator("option[value=toyworld]")).to_be_enabled()
    expect(captioner.locator("option[value=model]")).to_be_disabled()  # none configured: it says how to add one
    expect(panel.locator("[data-captioner-note=model]")).to_contain_text("LORASTUDIO_CAPTIONER")
    leave_out = panel.get_by_label("Leave out what makes the character who they are")
    expect(leave_out).to_be_checked()
    expect(panel.get_by_text(LEAVE_OUT_REASON)).to_be_visible()
    expect(panel.get_by_label("Replace captions I wrote")).not_to_be_checked()

    mine = page.get_by_label(f"Caption of {pictures[0].name}")
    mine.fill("johnhero, my own words")
    mine.press("Enter")
    expect(page.locator(f"#image-row-{_row(page, pictures[0].name)} [role=status]")).to_have_text("saved")

    panel.get_by_role("button", name="Auto-caption").click()
    expect(panel.locator("[data-caption-result]")).to_contain_text("4 captioned with toyworld; 1 of yours kept")
    for p in pictures[1:]:
        expect(page.get_by_label(f"Caption of {p.name}")).to_have_value(expected.captions[p.name])
        expect(page.locator(f"#image-row-{_row(page, p.name)} [data-caption-auto]")).to_have_text("auto")
    expect(page.get_by_label(f"Caption of {pictures[0].name}")).to_have_value("johnhero, my own words")
    expect(page.locator(f"#image-row-{_row(page, pictures[0].name)} [data-caption-auto]")).to_have_count(0)
    shot(page, "autocaption")

    page.reload()
    for p in pictures[1:]:
        expect(page.get_by_label(f"Caption of {p.name}")).to_have_value(expected.captions[p.name])
    expect(page.locator("[data-caption-auto]")).to_have_count(4)
    reviewed = page.get_by_label(f"Caption of {pictures[1].name}")
    reviewed.fill(expected.captions[pictures[1].name] + ", smiling")
    reviewed.press("Enter")
    row = page.locator(f"#image-row-{_row(page, pictures[1].name)}")
    expect(row.get_by_role("status")).to_have_text("saved")
    expect(row.locator("[data-caption-auto]")).to_have_count(0)  # edited: the user's now, kept by the next run


def _row(page, filename: str) -> str:
    """The image id of the row that shows `filename`."""
    row = page.locator("tr[id^=image-row-]", has=page.locator(".filename", has_text=filename))
    return row.get_attribute("id").removeprefix("image-row-")
