"""A FLUX.1 LoRA through the whole studio, on the tiny FLUX.1-shaped model: trained from the toy pictures, in the
library with its family, and used by the Studio's generations, through the HTTP API (a real `lorastudio worker`
process, which picks the families it advertises by itself) and through the pages in a browser."""

from __future__ import annotations

import io
import re

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect
from safetensors import safe_open

from lorastudio.engine.models.tiny import ensure_tiny_model
from tests.studio.conftest import client, john_dataset, wait_for, workers  # noqa: F401 - the studio's fixtures
from tests.web.conftest import shot
from tests.web.test_train_reload_and_cancel import _john_dataset

TRAINING = 240  # s: a worker's start, the tiny FLUX.1's load and a few steps on 2 slow cores
# A few steps at a high learning rate: enough to move the pixels of a LoRA-on image on the tiny model.
FEW_STEPS = {"steps": 6, "learning_rate": 0.005}


def _final(api, job_id: int) -> dict:
    return wait_for(api, job_id, lambda j: j["status"] in ("succeeded", "failed", "canceled"), timeout=TRAINING)


def _pixels(api, job_id: int) -> tuple[np.ndarray, dict]:
    (image,) = api.get(f"/api/v1/jobs/{job_id}/images").json()
    png = api.get(image["url"]).content
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16), image["params"]


# Slow (12 s): the pages test below trains a FLUX.1 LoRA through the same API and generates with it.
@pytest.mark.slow
def test_a_flux1_lora_is_trained_listed_and_generated_with_through_the_api(client, studio_settings, john_refs, workers):  # noqa: F811
    ensure_tiny_model("tiny-flux1", studio_settings.models_dir)
    _, dataset = john_dataset(client, john_refs)
    body = {"dataset_id": dataset, "base": "tiny-flux1", "overrides": FEW_STEPS}
    estimate = client.post("/api/v1/trainings/estimate", json=body).json()
    assert estimate["resolution"] == 64  # the family's preset resolution, not the toy world's 32 px
    job = client.post("/api/v1/trainings", json=body)
    assert job.status_code == 201, job.text
    worker = workers.start("w1")  # no --family: it advertises what fits its memory (the tiny models always)
    done = _final(client, job.json()["id"])
    log = (studio_settings.home / "w1.log").read_text()
    assert done["status"] == "succeeded", (done, log)
    assert "tiny-flux1" in log and "families" in log  # it said which families it runs

    lora = client.get(f"/api/v1/loras/{done['result']['lora_id']}").json()
    assert lora["family"] == "tiny-flux1" and lora["trigger_words"] == ["johnhero"]
    file = studio_settings.home / "flux-lora.safetensors"
    file.write_bytes(client.get(f"/api/v1/loras/{lora['id']}/file").content)
    with safe_open(str(file), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert any(k.startswith("lora_unet_double_blocks_0_img_attn_qkv.") for k in keys)  # sd-scripts' FLUX.1 layout
    assert meta["ss_base_model_version"] == "flux1"
    found = client.get("/api/v1/loras", params={"family": "tiny-flux1"}).json()
    assert [x["id"] for x in found["items"]] == [lora["id"]]

    scene = {"prompt": "johnhero, fighting stance", "base": "tiny-flux1", "seed": 7, "steps": 4, "n": 1}
    with_lora = client.post("/api/v1/generations", json=scene | {"loras": [{"lora_id": lora["id"], "strength": 1}]})
    without = client.post("/api/v1/generations", json=scene | {"add_triggers": False})
    assert with_lora.status_code == 201 and without.status_code == 201, (with_lora.text, without.text)
    for answer in (with_lora, without):
        assert _final(client, answer.json()["id"])["status"] == "succeeded"
    on, params = _pixels(client, with_lora.json()["id"])
    off, _ = _pixels(client, without.json()["id"])
    assert on.shape == (64, 64, 3) and params["cfg_scale"] == 3.5 and params["sampler"] == "Euler"  # family's
    assert np.abs(on - off).mean() > 0.5  # the LoRA changes the picture
    # A FLUX.1 LoRA on the toy world's SD-shaped model is refused, naming both families; and an SD sampler on a
    # flow family, saying what to use. (The studio queues both; the worker's engine refuses them before any work.)
    wrong = client.post("/api/v1/generations", json=scene | {"base": "toyworld", "loras": [{"lora_id": lora["id"]}]})
    euler_a = client.post("/api/v1/generations", json=scene | {"sampler": "Euler a"})
    for answer, code, words in ((wrong, "family_mismatch", ("FLUX.1", "toyworld")), (euler_a, "invalid", ("Euler",))):
        refused = answer.json()
        if answer.status_code == 201:
            refused = _final(client, refused["id"])
            assert (refused["status"], refused["error_code"]) == ("failed", code), refused
            refused = refused["error_message"]
        else:
            assert answer.status_code == 422 and refused["error"]["code"] == code, refused
        text = str(refused)
        assert all(w in text for w in words), text
    workers.stop()
    assert worker.poll() is not None


@pytest.mark.browser
def test_the_pages_train_a_flux1_lora_and_the_studio_generates_with_it(live, page, john_refs):
    ensure_tiny_model("tiny-flux1", live.settings.models_dir)
    page.goto(f"{live.url}/train/{_john_dataset(live, john_refs)}")
    expect(page.locator("#add-a-model")).to_be_visible()  # how to add a checkpoint, without opening anything
    expect(page.locator("#add-a-model")).to_contain_text("$LORASTUDIO_HOME/models")
    base = page.get_by_label("Base model")
    assert base.locator("optgroup[label='FLUX.1'] option").all_inner_texts() == [
        "tiny-flux1 (tiny FLUX.1-shaped test model)"
    ]
    page.get_by_text("Advanced", exact=True).click()
    resolution, steps = page.get_by_label("Resolution", exact=True), page.get_by_label("Steps", exact=True)
    assert resolution.get_attribute("placeholder") == "32"  # the toy world's preset
    steps.fill(str(FEW_STEPS["steps"]))
    page.get_by_label("Learning rate", exact=True).fill(str(FEW_STEPS["learning_rate"]))
    quantize = page.get_by_label("8-bit base")
    expect(quantize).to_be_hidden()  # transformer-only: not shown for an SD-shaped base
    base.select_option("tiny-flux1")
    expect(resolution).to_have_attribute("placeholder", "64")  # FLUX.1's preset values follow the base
    assert steps.input_value() == "6"  # what the user typed stays theirs
    assert "64 px" in page.get_by_label("Preset").locator("option").first.inner_text()
    page.get_by_text("More settings", exact=True).click()
    expect(quantize).to_be_visible()
    quantize.select_option("none")
    base.select_option("toyworld")  # back: the toy world's values again, the typed ones kept, FLUX.1's hidden
    expect(resolution).to_have_attribute("placeholder", "32")
    assert steps.input_value() == "6" and quantize.is_hidden() and quantize.is_disabled()
    base.select_option("tiny-flux1")
    page.reload()  # the form is kept with its base, and the page follows that base's family at once
    assert base.input_value() == "tiny-flux1" and steps.input_value() == "6"
    expect(resolution).to_have_attribute("placeholder", "64")
    expect(quantize).to_be_visible()
    assert quantize.input_value() == "none"
    assert "only" in page.locator("#adv-quantize_base-hint").inner_text()
    page.locator("#estimate", has_text="64 px").wait_for()
    shot(page, "train-flux1")
    page.get_by_role("button", name="Train LoRA").click()
    finished = page.locator("#job-area section.job[data-status=succeeded]")
    finished.locator("[data-lora-link]").wait_for(timeout=TRAINING * 1000)

    page.goto(live.url + "/library")
    row = page.locator("tbody.lib-lora", has=page.locator("code", has_text="johnhero"))
    expect(row).to_have_count(1)
    assert row.locator("tr.lib-main td").all_inner_texts()[1] == "tiny-flux1"  # its family (a test model's id)

    page.goto(live.url + "/studio")
    characters = page.locator("fieldset", has_text="Characters")
    expect(characters.locator(".lora-pick", has_text="johnhero")).to_have_count(0)  # not for the toy world base
    page.get_by_label("Base model").select_option("tiny-flux1")  # reloads the Studio for FLUX.1
    page.wait_for_url(re.compile(r"[?&]base=tiny-flux1(&|$)"))
    john = characters.locator(".lora-pick", has_text="johnhero")
    expect(john).to_have_count(1)
    assert page.get_by_label("CFG scale").get_attribute("placeholder") == "3.5 (default)"
    assert page.get_by_label("Sampler").input_value() == "Euler"
    expect(page.locator("[data-flow-sampler]")).to_contain_text("flow matching with Euler only")
    page.get_by_label("Prompt", exact=True).fill("johnhero, fighting stance")
    john.get_by_role("checkbox").check()
    page.get_by_label("Steps", exact=True).fill("4")
    page.get_by_label("Batch (variations)").fill("1")
    page.get_by_role("button", name="Generate", exact=True).click()
    figure = page.locator("#results section.job .gallery figure img").first
    figure.wait_for(timeout=TRAINING * 1000)
    assert figure.evaluate("img => img.decode().then(() => img.naturalWidth)") == 64
    shot(page, "studio-flux1")
    with httpx.Client(base_url=live.url, timeout=30) as api:
        (job,) = api.get("/api/v1/jobs", params={"type": "generation"}).json()
        assert job["status"] == "succeeded" and job["request"]["base"] == "tiny-flux1"
        assert [x["name"] for x in job["request"]["loras"]] == ["johnhero"]  # the FLUX.1 LoRA was used
        assert job["request"]["cfg_scale"] is None and job["request"]["sampler"] == "Euler"  # the family's own
