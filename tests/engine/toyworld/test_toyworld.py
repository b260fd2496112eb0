"""The toy world: renders, detectors, the shipped base model, and its training run."""

import random

import numpy as np
import pytest
from PIL import Image

from lorastudio.engine.generation.generate import GenerateRequest, generate
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.models.base import load_base_model
from lorastudio.engine.toyworld.basetrain import base_training_characters, base_training_set, train_toyworld_base
from lorastudio.engine.toyworld.detect import detect_style, find_character, find_figures
from lorastudio.engine.toyworld.render import draw_scene, make_scene
from lorastudio.engine.toyworld.world import BACKGROUNDS, HELD_OUT_CHARACTERS, STYLES, Character, held_out_pairs
from lorastudio.export.contact_sheet import contact_sheet

JOHN = HELD_OUT_CHARACTERS["johnhero"]


def random_scene(rng: random.Random):
    chars = base_training_characters() + list(HELD_OUT_CHARACTERS.values())
    picked = rng.sample(chars, 1 if rng.random() < 0.5 else 2)
    if len(picked) == 2 and picked[0].body == picked[1].body:
        picked = picked[:1]
    return make_scene(picked, rng.choice([None, *STYLES]), rng.choice(list(BACKGROUNDS)), rng)


def test_renders_are_deterministic_and_captioned():
    rng_a, rng_b = random.Random(5), random.Random(5)
    a, b = random_scene(rng_a), random_scene(rng_b)
    assert a == b and draw_scene(a, 3).tobytes() == draw_scene(b, 3).tobytes()
    scene = make_scene([JOHN], "kungfu", "dojo", random.Random(0))
    assert scene.caption.startswith("red fighter with yellow head with a headband, kungfustyle, ")
    assert scene.caption.endswith("in a dojo") and draw_scene(scene, 0).size == (32, 32)


def test_detectors_are_right_on_clean_renders():
    rng = random.Random(11)
    n, char_ok, style_n, style_ok = 300, 0, 0, 0
    for i in range(n):
        scene = random_scene(rng)
        img = draw_scene(scene, i)
        char_ok += all(len(find_character(img, f.character)) == 1 for f in scene.fighters)
        if scene.style:
            style_n += 1
            found = [detect_style(f) for f in find_figures(img)]
            style_ok += len(found) == len(scene.fighters) and all(s == scene.style for s in found)
    assert char_ok / n >= 0.99 and style_ok / style_n >= 0.99, (char_ok / n, style_ok / style_n)
    other = Character("x", "red", "yellow", "belt")  # john's colours, another accessory
    assert find_character(draw_scene(make_scene([JOHN], None, "street", rng), 0), other) == []


def test_base_training_data_excludes_held_out_characters_and_style():
    assert not {(c.body, c.head) for c in base_training_characters()} & held_out_pairs()
    _, captions = base_training_set(400, seed=1)
    assert not any("swordstyle" in c for c in captions)
    assert not any("red fighter with yellow head" in c for c in captions)
    assert any("kungfustyle" in c for c in captions) and any(" facing " in c for c in captions)


@pytest.fixture(scope="module")
def toy_cache(settings):
    return PipelineCache(settings)


@pytest.mark.slow  # 12 s: the shipped weights are checked when they are rebuilt (`make test-slow`)
def test_shipped_toyworld_model_draws_what_the_words_say(toy_cache):
    base = load_base_model("toyworld", toy_cache.settings)
    assert base.family == "toyworld"
    villain = Character("kane", "green", "magenta", "cape")
    prompt = "green fighter with magenta head with a cape, boxingstyle, jab, at night"
    hits = 0
    for seed in range(4):
        img = generate(toy_cache, GenerateRequest.build(prompt=prompt, base="toyworld", seed=seed, steps=20)).images[0]
        assert img.size == (32, 32)
        hits += bool(find_character(img, villain))
    assert hits >= 3
    # The held-out johnhero is unknown to the base: his trigger word alone does not draw him.
    john_prompt = "johnhero, kungfustyle, horse stance, in a dojo"
    john_hits = sum(
        bool(
            find_character(
                generate(
                    toy_cache, GenerateRequest.build(prompt=john_prompt, base="toyworld", seed=s, steps=20)
                ).images[0],
                JOHN,
            )
        )
        for s in range(4)
    )
    assert john_hits <= 1


def test_train_base_command_produces_a_loadable_model(tmp_path, settings):
    out = train_toyworld_base(tmp_path / "tw", vae_steps=2, unet_steps=2, renders=64, batch=8, log=lambda _: None)
    base = load_base_model(str(out), settings)
    assert base.family == "toyworld" and "trained 2 UNet steps" in (out / "training_log.txt").read_text()


def test_contact_sheet_lays_out_numbered_panels():
    panels = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    sheet = contact_sheet(panels, ["faces", "attacks", "blocks"], "Epic Fight Sequence")
    assert sheet.width > 3 * 256 and sheet.height > 256
    assert np.asarray(sheet)[48 + 100, 16 + 100].tolist() == [255, 0, 0]  # first panel, enlarged
    with pytest.raises(ValueError):
        contact_sheet(panels, ["only one"], "x")
