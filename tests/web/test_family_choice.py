"""The family is chosen where a base model is: the train page's and the Studio's "Base model" selects group the
models by family and each page follows the chosen base's family (the train page's preset values, its
transformer-only settings; the Studio's CFG default and samplers), and both say how to add a checkpoint."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from lorastudio.engine import get_preset
from lorastudio.engine.models.tiny import ensure_tiny_model
from tests.studio.conftest import client, john_dataset  # noqa: F401 - the studio's fixtures, shared


@pytest.fixture
def flux_studio(client, studio_settings):  # noqa: F811 - the shared fixture, asked for by name
    """The studio with the tiny FLUX.1-shaped model built in its models folder (ready to pick)."""
    ensure_tiny_model("tiny-flux1", studio_settings.models_dir)
    return client


def _select(html: str, name: str) -> str:
    return re.search(rf'<select id="{name}".*?</select>', html, re.S).group(0)


def _attr(html: str, name: str) -> str:
    return unescape(re.search(rf"{name}='([^']*)'", html).group(1))


def test_the_train_page_groups_bases_by_family_and_follows_the_chosen_one(flux_studio, john_refs):
    _, dataset = john_dataset(flux_studio, john_refs)
    html = flux_studio.get(f"/train/{dataset}").text
    base = _select(html, "base")
    flux_group = re.search(r'<optgroup label="FLUX.1">(.*?)</optgroup>', base, re.S).group(1)
    assert 'value="tiny-flux1" data-family="tiny-flux1" data-flow="yes"' in flux_group
    assert "tiny FLUX.1-shaped test model" in flux_group  # each option says its family
    assert re.search(r'<optgroup label="toyworld[^"]*">\s*<option value="toyworld"', base)
    # What the page's JS fills the empty Advanced fields with, per family: FLUX.1's resolution, not the toy world's.
    presets = json.loads(_attr(html, "data-family-presets"))
    flux = presets["tiny-flux1"]["character"]
    assert flux["values"]["resolution"] == str(get_preset("character", "character", "tiny-flux1").resolution) == "64"
    assert presets["toyworld"]["character"]["values"]["resolution"] == "32"
    assert flux["label"].endswith("64 px, batch 1") or "64 px" in flux["label"]
    # The transformer-only settings are on the page, hidden and not sent while the base is the toy world.
    for name in ("quantize_base", "blocks_to_swap", "lora_format"):
        box = re.search(rf'<div data-transformer-only hidden><label for="adv-{name}">.*?</div>', html, re.S).group(0)
        assert f'name="{name}" disabled' in box and "only:" in box
    # How to add a checkpoint, beside the select, outside any closed panel.
    hint = re.search(r'<small id="add-a-model"[^>]*>(.*?)</small>', html, re.S).group(1)
    assert "$LORASTUDIO_HOME/models" in hint and "FLUX.1" in hint and ".safetensors" in hint
    before = html[: html.index('id="add-a-model"')]
    assert before.count("<details") == before.count("</details>")


def test_a_flux1_training_plans_with_the_flux1_preset_and_takes_the_transformer_settings(flux_studio, john_refs):
    _, dataset = john_dataset(flux_studio, john_refs)
    form = {"preset": "character", "base": "tiny-flux1"}
    estimate = flux_studio.post(f"/train/{dataset}/estimate", data=form).text
    assert "64 px" in estimate and "32 px" not in estimate  # empty fields: FLUX.1's preset values
    body = {
        "dataset_id": dataset,
        "base": "tiny-flux1",
        "overrides": {"steps": 2, "quantize_base": "int8", "blocks_to_swap": 1, "lora_format": "diffusers"},
    }
    job = flux_studio.post("/api/v1/trainings", json=body)
    assert job.status_code == 201, job.text
    plan = job.json()["request"]["plan"]
    assert (plan["family"], plan["resolution"]) == ("tiny-flux1", 64)
    assert (plan["quantize_base"], plan["blocks_to_swap"], plan["lora_format"]) == ("int8", 1, "diffusers")
    bad = flux_studio.post("/api/v1/trainings", json=body | {"overrides": {"quantize_base": "int4"}})
    assert bad.status_code == 422 and "quantize_base" in bad.text


def test_the_studio_follows_the_chosen_base_family(flux_studio):
    sd = flux_studio.get("/studio").text  # the studio's default base: the toy world (SD-shaped)
    assert 'placeholder="7 (default)"' in sd and re.search(r'id="cfg_scale"[^>]*value=""', sd)
    assert " disabled" not in _select(sd, "sampler") and "data-flow-sampler" not in sd
    assert '<optgroup label="FLUX.1">' in _select(sd, "base")
    hint = re.search(r'<small class="muted" id="add-a-model">(.*?)</small>', sd, re.S).group(1)
    assert "$LORASTUDIO_HOME/models" in hint
    before = sd[: sd.index('id="add-a-model"')]
    assert before.count("<details") == before.count("</details>")  # in sight, not in a closed panel

    flux = flux_studio.get("/studio", params={"prompt": "johnhero", "base": "tiny-flux1"}).text
    assert re.search(r'<option value="tiny-flux1" data-family="tiny-flux1" selected>', flux)
    assert 'placeholder="3.5 (default)"' in flux  # FLUX.1's guidance when the field is left empty
    sampler = _select(flux, "sampler")
    assert "<option selected>Euler</option>" in sampler and "<option disabled>DPM++ 2M Karras</option>" in sampler
    assert "flow matching with Euler only" in flux
    # A scene from another address (SD's sampler, no CFG) is shown with what the family runs.
    other = flux_studio.get("/studio", params={"prompt": "x", "base": "tiny-flux1", "sampler": "Euler a"}).text
    assert "<option selected>Euler</option>" in _select(other, "sampler")
    # Unknown or path-like bases are never looked up: the default one is shown.
    odd = flux_studio.get("/studio", params={"prompt": "x", "base": "/etc"}).text
    assert re.search(r'<option value="toyworld" data-family="toyworld" selected>', odd)


def test_an_empty_cfg_is_the_family_default_in_recipes_and_the_api(flux_studio):
    saved = flux_studio.post(
        "/studio/recipes",
        data={"recipe_name": "flux hero", "prompt": "johnhero", "base": "tiny-flux1", "sampler": "Euler"},
    )
    assert saved.status_code == 200 and "flux hero" in saved.text
    recipe = flux_studio.get("/api/v1/recipes").json()[0]
    assert recipe["settings"]["cfg_scale"] is None  # left to the base's family, not a fixed 7
    page = flux_studio.get("/studio", params={"recipe": recipe["id"]}).text
    assert re.search(r'id="cfg_scale"[^>]*value=""', page)
    job = flux_studio.post("/api/v1/generations", json={"prompt": "johnhero", "base": "tiny-flux1", "steps": 1})
    assert job.status_code == 201, job.text
    assert job.json()["request"].get("cfg_scale") is None
