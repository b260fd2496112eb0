"""The LoRA Studio forms (Fighting Styles, Character Manager) and the Production Studio's composition: LoRA
Selection with regions and strengths, warnings as the scene changes, recipes, seed lock, strength grids."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from lorastudio.engine.toyworld.prebuilt import prebuilt_lora_path
from tests.web.conftest import shot

pytestmark = pytest.mark.browser


def _character_lora(tmp_path, style: str, trigger: str) -> bytes:
    """A shipped style file re-labelled as a character LoRA (its weights are beside the point here)."""
    source = prebuilt_lora_path(style)
    with safe_open(str(source), "np") as f:
        meta = dict(f.metadata())
    meta |= {
        "lorastudio_kind": "character",
        "lorastudio_trigger_words": json.dumps([trigger]),
        "lorastudio_recommended_strength": "0.8",
        "lorastudio_description": f"{trigger}, a fighter",
    }
    out = tmp_path / f"{trigger}.safetensors"
    save_file(load_file(str(source)), str(out), metadata=meta)
    return out.read_bytes()


def test_styles_and_characters_say_what_is_wrong_and_keep_what_was_typed(live, page):
    page.goto(live.url + "/styles")
    for trigger in ("boxingstyle", "kungfustyle", "mmastyle", "swordstyle"):
        card = page.locator("article.style", has_text=trigger)
        assert card.count() == 1 and card.get_by_role("button", name="Delete").count() == 0
    page.get_by_label("Style name").fill("Capoeira")
    page.get_by_label("Recommended strength").fill("9")
    page.get_by_role("button", name="Create Custom Fighting Style").click()  # the browser holds it back
    assert page.get_by_label("Recommended strength").evaluate("el => el.validity.rangeOverflow")
    page.get_by_label("Recommended strength").fill("0.6")
    page.get_by_label("Trigger word (optional)").fill("two words")
    page.get_by_role("button", name="Create Custom Fighting Style").click()
    assert "one word" in page.locator("#trigger-error").inner_text()  # the server's words, by the field
    assert page.get_by_label("Style name").input_value() == "Capoeira"
    page.get_by_label("Trigger word (optional)").fill("")
    page.get_by_label("Words it stands for (comma-separated)").fill("ginga, low kicks")
    page.get_by_role("button", name="Create Custom Fighting Style").click()
    page.wait_for_url(re.compile(r".*/train/\d+$"))
    assert "Fighting style" in page.locator("main").inner_text() and "20-40 images" in page.locator("main").inner_text()
    shot(page, "train-style")

    page.goto(live.url + "/characters")
    page.get_by_label("Character name").fill("Kane")
    page.get_by_label("Trigger word (optional)").fill("kungfustyle")
    page.get_by_role("button", name="Add New Character").click()
    assert "kungfustyle" in page.locator("#trigger-error").inner_text()  # taken by a style: said by the field
    assert page.get_by_label("Character name").input_value() == "Kane"
    page.get_by_label("Trigger word (optional)").fill("")
    page.get_by_role("button", name="Add New Character").click()
    assert "kanehero" in page.locator("article.character", has_text="Kane").inner_text()


def test_the_studio_warns_as_the_scene_is_composed_and_saves_recipes(live, page, tmp_path):
    for style, trigger in (("boxing", "johnhero"), ("mma", "kanehero")):
        answer = httpx.post(
            live.url + "/api/v1/loras",
            files={"file": (f"{trigger}.safetensors", _character_lora(tmp_path, style, trigger))},
        )
        assert answer.status_code == 201, answer.text
    page.goto(live.url + "/studio")
    check = page.locator("#scene-check")
    characters = page.locator("fieldset", has_text="Characters")
    john, kane = (characters.locator(".lora-pick", has_text=t) for t in ("johnhero", "kanehero"))
    page.get_by_label("Prompt", exact=True).fill("johnhero faces kanehero, fighting stance")
    john.get_by_role("checkbox").check()
    kane.get_by_role("checkbox").check()
    check.get_by_text("act on the same part of the picture").wait_for()
    shot(page, "studio-warnings")
    john.get_by_role("combobox").select_option("left")
    kane.get_by_role("combobox").select_option("right")
    check.get_by_text("No warnings.").wait_for()
    kungfu = page.locator("fieldset", has_text="Fighting style").locator(".lora-pick", has_text="kungfustyle")
    kungfu.get_by_role("checkbox").check()  # over the whole picture: it stacks with each region's character
    john.locator("input[type=range]").fill("1.5")
    check.get_by_text("total LoRA strength 2.70 in one region").wait_for()
    kungfu.get_by_role("checkbox").uncheck()
    john.locator("input[type=range]").fill("0.8")
    page.get_by_label("Add the chosen LoRAs' missing trigger words to the prompt").uncheck()
    page.get_by_label("Prompt", exact=True).fill("two fighters")
    check.get_by_text("'johnhero' is not in the prompt").wait_for()
    page.get_by_label("Prompt", exact=True).fill("johnhero faces kanehero")

    page.get_by_label("Recipe name").fill("John vs Kane")
    page.get_by_role("button", name="Save recipe").click()
    page.get_by_role("link", name="Load John vs Kane").click()
    assert page.get_by_label("Prompt", exact=True).input_value() == "johnhero faces kanehero"
    assert john.get_by_role("checkbox").is_checked() and kane.get_by_role("combobox").input_value() == "right"
    page.get_by_label("Recipe name").fill("John vs Kane")
    page.get_by_role("button", name="Save recipe").click()
    assert "already have a recipe" in page.locator("#recipes [role=alert]").inner_text()

    page.get_by_label("Fixed").check()
    page.get_by_label("Seed", exact=True).fill("")
    page.get_by_role("button", name="Generate", exact=True).click()
    assert "type the seed" in page.locator("#generate-result [role=alert]").inner_text()
    page.get_by_label("Lock the last seed").check()
    page.get_by_label("Steps", exact=True).fill("2")
    page.get_by_label("Batch (variations)").fill("1")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#results section.job").first.wait_for()
    seed = page.get_by_label("Seed", exact=True).input_value()
    assert seed.isdigit() and f"Last seed: {seed}" in page.locator("#last-seed").inner_text()

    page.get_by_text("Strength grid", exact=True).click()
    page.get_by_label("Strengths").fill("0.5, 1")
    page.get_by_role("button", name="Make strength grid").click()
    grid = page.locator("#results .result-set.grid").first
    grid.wait_for()
    assert [h.strip() for h in grid.locator("h4").all_inner_texts()] == ["no LoRA", "strength 0.5", "strength 1"]
    assert f"seed {seed}" in grid.locator("h3").inner_text()  # the locked seed, for every cell
    for i in range(3):  # one panel: a row a strength, each filled in as its job ends
        grid.locator(".grid-row").nth(i).locator(".gallery figure").first.wait_for(timeout=60_000)
    shot(page, "strength-grid")
