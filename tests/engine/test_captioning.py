"""Captions written for you, in the engine: the toy world's captioner reads rendered scenes back to the very
caption the renderer wrote; the leave-out rule drops a character's look and keeps the trigger word; a real
transformers BLIP (tiny, built here) captions through TransformersCaptioner; downloads and unknown names are
refused in words; a corrupt image is counted, never fatal; a caption already there is kept unless asked."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from lorastudio.config import Settings
from lorastudio.engine import (
    HELD_OUT_CHARACTERS,
    STYLES,
    ToyCaptioner,
    TransformersCaptioner,
    build_tiny_blip,
    caption_folder,
    captioner_for,
    character_references,
    finish_caption,
    style_references,
)
from lorastudio.engine.toyworld.basetrain import base_training_characters
from lorastudio.engine.toyworld.render import draw_scene, make_scene
from lorastudio.engine.toyworld.world import BACKGROUNDS
from lorastudio.errors import Invalid

JOHN = HELD_OUT_CHARACTERS["johnhero"]


def test_the_toy_captioner_reads_back_what_the_renderer_wrote():
    rng = random.Random(11)
    cast = base_training_characters() + list(HELD_OUT_CHARACTERS.values())
    scenes = [
        make_scene(rng.sample(cast, 1 + i % 2), rng.choice([None, *STYLES]), rng.choice(list(BACKGROUNDS)), rng)
        for i in range(60)
    ]
    captions = ToyCaptioner().caption([draw_scene(s, seed) for seed, s in enumerate(scenes)])
    assert captions == [s.caption for s in scenes]  # who, the style's trigger and pose, where: word for word
    assert any(" facing " in c for c in captions) and any("fighting stance" in c for c in captions)
    big = draw_scene(scenes[0], 0).resize((128, 128), Image.Resampling.NEAREST)  # an upscaled render too
    assert ToyCaptioner().caption([big]) == [scenes[0].caption]


def test_pictures_it_cannot_read_get_a_plain_caption():
    blank = Image.new("RGB", (32, 32), BACKGROUNDS["dojo"])
    noise = Image.effect_noise((64, 48), 90).convert("RGB")
    assert (
        ToyCaptioner().caption([blank, noise, Image.new("L", (5, 5))]) == ["a picture, in a dojo"] + ["a picture"] * 2
    )


def _uncaptioned(folder: Path) -> Path:
    for txt in folder.glob("*.txt"):
        txt.unlink()
    return folder


def test_a_character_s_captions_leave_out_its_look_and_keep_the_trigger(tmp_path):
    refs = character_references(JOHN, tmp_path / "named", n=12, seed=3)
    named = {p.name: p.with_suffix(".txt").read_text() for p in refs}  # the world's own: the name, not the look
    folder = _uncaptioned(tmp_path / "named")
    report = caption_folder(folder, ToyCaptioner(), trigger="johnhero", kind="character")
    assert (report.captioned, report.kept, report.failed) == (12, 0, 0)
    for name, text in report.captions.items():
        assert (folder / name).with_suffix(".txt").read_text() == text
        assert text.startswith("johnhero") and text.split().count("johnhero") + text.count("johnhero,") >= 1
        assert text.count("johnhero") == 1
        assert JOHN.words() not in text  # "red fighter with yellow head with a headband": the trigger learns it
        if " facing " not in named[name]:
            assert text == named[name]  # alone, exactly what the world says with the name instead of the look
    kept = caption_folder(
        folder, ToyCaptioner(), trigger="johnhero", kind="character", leave_out_identity=False, overwrite=True
    )
    assert all(JOHN.words() in t for t in kept.captions.values())  # asked to keep it: the look stays
    assert all(t.startswith("johnhero, ") and t.count("johnhero") == 1 for t in kept.captions.values())


def test_the_leave_out_rule_in_words():
    look = [JOHN.words(), "yellow head", "red", "yellow", "headband"]
    assert (
        finish_caption(
            f"{JOHN.words()}, boxingstyle, jab, in a dojo", trigger="johnhero", kind="character", leave_out=look
        )
        == "johnhero, boxingstyle, jab, in a dojo"
    )
    other = "blue fighter with orange head facing " + JOHN.words() + ", kungfustyle, horse stance, at night"
    assert (
        finish_caption(other, trigger="johnhero", kind="character", leave_out=look)
        == "johnhero, blue fighter with orange head, kungfustyle, horse stance, at night"
    )
    blip = "a man in a red gi with yellow hair standing in a park"
    assert (
        finish_caption(blip, trigger="johnhero", kind="character", leave_out=["red gi", "yellow hair"])
        == "johnhero, a man standing in a park"
    )
    assert finish_caption("johnhero johnhero, a cat", trigger="johnhero", kind="character", leave_out=[]) == (
        "johnhero, a cat"
    )  # the trigger word once
    assert finish_caption("", trigger="johnhero", kind="character", leave_out=[]) == "johnhero, a person"


def test_a_style_keeps_everything_and_leads_with_its_trigger(tmp_path):
    refs = style_references("sword", tmp_path / "sword", n=4, seed=5)
    truth = {p.name: p.with_suffix(".txt").read_text() for p in refs}
    report = caption_folder(
        _uncaptioned(tmp_path / "sword"), ToyCaptioner(), trigger="swordstyle", kind="fighting_style"
    )
    for name, text in report.captions.items():
        assert text == "swordstyle, " + truth[name].replace(", swordstyle", "")  # the look stays: not the style's


def test_captions_there_are_kept_and_a_corrupt_image_is_counted(tmp_path):
    folder = tmp_path / "refs"
    character_references(JOHN, folder, n=3, seed=1)
    _uncaptioned(folder)
    (folder / "johnhero_00.txt").write_text("my own words")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    report = caption_folder(folder, ToyCaptioner(), trigger="johnhero", kind="character")
    assert (report.captioned, report.kept, report.failed) == (2, 1, 2)
    assert set(report.problems) == {"broken.png", "empty.jpg"} and not (folder / "broken.txt").exists()
    assert (folder / "johnhero_00.txt").read_text() == "my own words"
    again = caption_folder(folder, ToyCaptioner(), trigger="johnhero", kind="character", overwrite=True)
    assert again.captioned == 3 and (folder / "johnhero_00.txt").read_text().startswith("johnhero, ")
    assert not list(folder.glob(".*.tmp"))  # written temp-then-rename, nothing left behind


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("captioners") / "tiny-blip")


def test_a_tiny_blip_captions_through_transformers_own_classes(tiny_blip, tmp_path):
    settings = Settings(home=tmp_path / "home", captioner=str(tiny_blip))
    captioner = captioner_for("model", settings)
    assert isinstance(captioner, TransformersCaptioner) and captioner.name == "BLIP tiny-blip"  # a name, no path
    folder = tmp_path / "refs"
    character_references(JOHN, folder, n=3, seed=2)
    _uncaptioned(folder)
    (folder / "broken.png").write_bytes(b"junk")
    report = caption_folder(folder, captioner, trigger="johnhero", kind="character", description="red gi")
    assert (report.captioned, report.failed) == (3, 1)
    for text in report.captions.values():
        assert isinstance(text, str) and text.startswith("johnhero") and text.count("johnhero") == 1
    model = captioner._load()[0]
    assert type(model).__name__ == "BlipForConditionalGeneration"
    assert next(model.parameters()).device.type == ("cuda" if __import__("torch").cuda.is_available() else "cpu")


def test_captioners_are_refused_in_words(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(Invalid, match="LORASTUDIO_ALLOW_DOWNLOADS") as hub:
        captioner_for("model", Settings(home=home, captioner="hf:Salesforce/blip-image-captioning-base"))
    assert hub.value.setting == "captioner"
    with pytest.raises(Invalid, match="LORASTUDIO_CAPTIONER") as unset:
        captioner_for("model", Settings(home=home))
    assert unset.value.setting == "captioner"
    not_a_model = tmp_path / "secret" / "just-pictures"
    not_a_model.mkdir(parents=True)
    with pytest.raises(Invalid, match="just-pictures") as folder:
        captioner_for("model", Settings(home=home, captioner=str(not_a_model)))
    assert str(tmp_path) not in str(folder.value) and folder.value.setting == "captioner"  # its name, not its path
    with pytest.raises(Invalid, match="use one of: toyworld, model"):
        captioner_for("/etc/passwd", Settings(home=home))


def test_the_cli_captions_a_folder_and_words_its_errors(run, tmp_path):
    import json

    folder = tmp_path / "refs"
    character_references(JOHN, folder, n=3, seed=4)
    _uncaptioned(folder)
    (folder / "broken.png").write_bytes(b"junk")
    done = run("dataset", "caption", folder, "--trigger", "johnhero", "--kind", "character")
    assert done.exit_code == 0, done.output
    assert "3 captioned with toyworld, 0 kept" in " ".join(done.output.split()) and "captioning 3/3" in done.output
    assert all((folder / f"johnhero_0{i}.txt").read_text().startswith("johnhero") for i in range(3))
    again = json.loads(run("dataset", "caption", folder, "--trigger", "johnhero", "--json").output)
    assert (again["captioned"], again["kept"], again["failed"]) == (0, 3, 1)  # what is there stays
    refused = run("dataset", "caption", folder, "--trigger", "johnhero", "--captioner", "model", "--json")
    assert refused.exit_code == 2
    error = json.loads(refused.output)["error"]
    assert error["code"] == "invalid" and "LORASTUDIO_CAPTIONER" in error["message"]
