"""The Studio over a reload: the scene (prompt, chosen LoRAs with strengths and regions, settings) lives in the
address bar, and the newest generations are under Results when the page opens; sliders open at the strength
their hint says (the LoRA's recorded one, else its kind's on this base); the base select says how to add a
model; a strength grid is one panel with a labelled row per strength, filled in as each job ends."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import shot
from tests.web.test_studio_pages import _character_lora

pytestmark = pytest.mark.browser


def test_the_studio_keeps_the_scene_and_its_results_over_a_reload(live, page, tmp_path):
    answer = httpx.post(
        live.url + "/api/v1/loras",
        files={"file": ("johnhero.safetensors", _character_lora(tmp_path, "boxing", "johnhero"))},
    )
    assert answer.status_code == 201, answer.text  # its file records strength 0.8
    page.goto(live.url + "/studio")
    characters = page.locator("fieldset", has_text="Characters")
    john = characters.locator(".lora-pick", has_text="johnhero")
    kungfu = page.locator("fieldset", has_text="Fighting style").locator(".lora-pick", has_text="kungfustyle")
    for pick, strength in ((john, "0.8"), (kungfu, "1.2")):  # the toy world's styles record 1.2
        assert pick.locator("input[type=range]").input_value() == strength
        assert pick.locator("[data-recommended]").inner_text() == f"recommended {strength}"
    legend = page.locator("fieldset", has_text="Fighting style").locator("legend").inner_text()
    assert "recommended 1.2" in legend and "0.6" not in legend  # no other number beside the same slider
    expect(page.locator("#add-a-model")).to_contain_text("models folder")  # how to add a real base model, in sight
    expect(page.locator("#add-a-model")).to_be_visible()
    assert "add-a-model" in page.get_by_label("Base model").get_attribute("aria-describedby").split()

    page.get_by_label("Prompt", exact=True).fill("johnhero, kungfustyle, horse stance")
    john.get_by_role("checkbox").check()
    john.locator("input[type=range]").fill("0.9")
    john.get_by_role("combobox").select_option("left")
    page.get_by_label("Steps", exact=True).fill("2")
    page.get_by_label("Batch (variations)").fill("1")
    page.get_by_label("Fixed").check()
    page.get_by_label("Seed", exact=True).fill("1234")
    page.wait_for_url(re.compile(r"[?&]seed=1234(&|$)"))  # the address bar follows the form
    page.reload()
    assert page.get_by_label("Prompt", exact=True).input_value() == "johnhero, kungfustyle, horse stance"
    assert john.get_by_role("checkbox").is_checked() and not kungfu.get_by_role("checkbox").is_checked()
    assert john.locator("input[type=range]").input_value() == "0.9" and john.locator("output").inner_text() == "0.90"
    assert john.get_by_role("combobox").input_value() == "left"
    assert page.get_by_label("Steps", exact=True).input_value() == "2"
    assert page.get_by_label("Fixed").is_checked() and page.get_by_label("Seed", exact=True).input_value() == "1234"

    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#results section.job .gallery figure").first.wait_for(timeout=60_000)
    page.reload()
    results = page.locator("#results section.job")
    expect(results).to_have_count(1)  # the generation is still under Results, with its images
    assert results.locator(".gallery figure").count() == 1 and "seed 1234" in results.inner_text()

    page.get_by_text("Strength grid", exact=True).click()
    page.get_by_label("Strengths").fill("0.5, 1")
    page.get_by_role("button", name="Make strength grid").click()
    grid = page.locator("#results .job-grid").first
    grid.wait_for()
    rows = grid.locator(".grid-row")
    assert [h.strip() for h in rows.locator("h4").all_inner_texts()] == ["no LoRA", "strength 0.5", "strength 1"]
    assert grid.locator("section.job").count() == 0  # one panel, not a panel a job
    for i in range(3):
        rows.nth(i).locator(".gallery figure").first.wait_for(timeout=60_000)  # each row as its job ends
    assert all(rows.nth(i).get_attribute("data-status") == "succeeded" for i in range(3))
    shot(page, "strength-grid")
