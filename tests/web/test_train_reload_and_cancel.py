"""Train New LoRA over a reload and a cancel: the description starts as the character's and outlives a reload
(and shows in a second tab); Advanced speaks the API's limits beside each field, -1 seeds at random; the job's
badge follows the run; a reload finds the running job with its Cancel; Cancel says so at once, follows the job
to its end and refreshes the balance; a finished run shows its sample previews, and a reload still shows it."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import shot

pytestmark = pytest.mark.browser
TRAINING = 180_000  # ms: a few toy-world steps with their previews plus a worker's start, on 2 slow cores
LOOK = "red gi, yellow hair"


def _john_dataset(live, refs) -> int:
    with httpx.Client(base_url=live.url, timeout=60) as api:
        john = api.post("/api/v1/characters", json={"name": "Action Hero John", "description": LOOK}).json()
        dataset = api.post(
            "/api/v1/datasets",
            json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": john["id"]},
        ).json()
        files = [("files", (p.name, p.read_bytes())) for p in sorted(refs.glob("*.png"))[:12]]
        assert api.post(f"/api/v1/datasets/{dataset['id']}/images", files=files).status_code == 200
    return dataset["id"]


def test_the_train_page_keeps_its_work_and_cancel_shows_at_once(live, page, john_refs):
    url = f"{live.url}/train/{_john_dataset(live, john_refs)}"
    page.goto(url)
    description = page.get_by_label("What the subject looks like (optional)")
    assert description.input_value() == LOOK  # the character's description, to start from
    description.fill(LOOK + ", white headband")
    page.reload()
    assert description.input_value() == LOOK + ", white headband"
    other = page.context.new_page()  # a second tab of the same dataset
    other.goto(url)
    assert other.get_by_label("What the subject looks like (optional)").input_value() == LOOK + ", white headband"
    other.close()

    page.get_by_text("Advanced", exact=True).click()
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("0")
    steps.press("Tab")
    error = page.locator("#adv-steps-error")
    expect(error).to_have_text("steps: use a whole number from 1 to 100000")  # beside the field, with the range
    assert steps.get_attribute("aria-invalid") == "true"
    assert page.locator("#submit-result [role=alert]").count() == 0
    seed = page.get_by_label("Seed (-1: random)")
    seed.fill("-1")  # random, as in the Studio
    steps.fill("600")
    seed.press("Tab")
    page.locator("#estimate", has_text="600 steps").wait_for()
    expect(error).to_be_empty()
    assert page.locator("#adv-seed-error").inner_text() == "" and steps.get_attribute("aria-invalid") is None
    sample_every = page.get_by_label("Sample preview every N steps (0: none)")
    assert sample_every.get_attribute("placeholder").startswith("auto")

    page.get_by_role("button", name="Train LoRA").click()
    panel = page.locator("#job-area section.job").first
    badge = panel.locator("[data-job-status]")
    expect(badge).to_have_text("running", timeout=60_000)  # from the progress events, without a reload
    expect(page.locator("#balance")).not_to_have_text("1000 credits")  # the hold
    page.reload()
    expect(badge).to_have_text("running")  # the running job is still on its dataset's page, live
    assert panel.get_attribute("data-job-events")
    page.once("dialog", lambda d: d.accept())
    panel.get_by_role("button", name="Cancel").click()
    expect(badge).to_have_text(re.compile(r"^cancel"), timeout=5_000)  # "canceling…" or "canceled", at once
    expect(panel.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(panel).to_have_attribute("data-status", "canceled", timeout=60_000)  # followed to its end
    expect(panel.get_by_role("status").filter(has_text="Canceled")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("1000 credits")  # the hold came back, the header says so

    steps.fill("8")  # Advanced came back with the page: a short run with a preview every 4 steps
    seed.fill("")
    sample_every.fill("4")
    steps.press("Tab")
    page.locator("#estimate", has_text="8 steps").wait_for()
    page.get_by_role("button", name="Train LoRA").click()
    finished = page.locator("#job-area section.job[data-status=succeeded]")
    finished.locator("[data-lora-link]").wait_for(timeout=TRAINING)
    previews = finished.locator("[data-previews] img")
    assert previews.count() == 2  # steps 4 and 8
    assert previews.first.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    shot(page, "training-previews")
    page.reload()  # the newest finished training stays on its dataset's page
    kept = page.locator("#job-area section.job").first
    assert kept.get_attribute("data-status") == "succeeded" and kept.locator("[data-lora-link]").is_visible()
    assert kept.locator("[data-previews] img").count() == 2
