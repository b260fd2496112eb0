"""The Train page's GPUs field: in Advanced with its limits, quoted "on N GPUs" with the steps the plan divides,
and kept over a reload like the other Advanced fields."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_gpus_field_is_quoted_and_outlives_a_reload(live, page, john_refs):
    with httpx.Client(base_url=live.url, timeout=60) as api:
        dataset = api.post("/api/v1/datasets", json={"name": "John", "kind": "character", "trigger": "johnhero"}).json()
        files = [("files", (p.name, p.read_bytes())) for p in sorted(john_refs.glob("*.png"))[:12]]
        assert api.post(f"/api/v1/datasets/{dataset['id']}/images", files=files).status_code == 200
    page.goto(f"{live.url}/train/{dataset['id']}")
    estimate = page.locator("#estimate")
    expect(estimate.locator("[data-minutes]")).to_be_visible()
    page.get_by_text("Advanced", exact=True).click()
    gpus = page.get_by_label("GPUs", exact=True)
    assert gpus.get_attribute("placeholder") == "1"
    assert "a whole number from 1 to 64" in page.locator("#adv-devices-hint").inner_text()
    gpus.fill("2")
    gpus.press("Tab")
    expect(estimate.locator("[data-gpus]")).to_have_text("2 GPUs")
    expect(estimate).to_contain_text("over 2 GPUs, the same images seen")  # the plan's note, in the breakdown
    page.reload()
    expect(page.get_by_label("GPUs", exact=True)).to_have_value("2")
    expect(page.locator("#estimate [data-gpus]")).to_have_text("2 GPUs")  # the first estimate is for the kept value
