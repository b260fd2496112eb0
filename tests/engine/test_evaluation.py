"""Checkpoint evaluation: the choice among hand-written scores, and the plumbing with real tiny random scorer
models (DINOv2, CLIP built locally), the toy world's detectors on pictures drawn directly, and `lora score`."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image
from typer.testing import CliRunner

from lorastudio.config import Settings
from lorastudio.engine.evaluation.choose import NOTHING, choose_checkpoint, scores_table
from lorastudio.engine.evaluation.evalset import EvalPrompt, eval_prompts
from lorastudio.engine.evaluation.results import CheckpointScore, Evaluation
from lorastudio.engine.evaluation.scorers import build_tiny_scorers, load_scorers
from lorastudio.engine.evaluation.scoring import identity_similarity, references, score_renders
from lorastudio.engine.kinds import CHARACTER
from lorastudio.engine.toyworld.consistency import character_references, style_references
from lorastudio.engine.toyworld.prebuilt import STYLES_DIR
from lorastudio.engine.toyworld.render import draw_scene, make_scene
from lorastudio.engine.toyworld.world import BACKGROUNDS, HELD_OUT_CHARACTERS, STYLES, Character
from lorastudio.errors import Invalid

JOHN, KANE = HELD_OUT_CHARACTERS["johnhero"], HELD_OUT_CHARACTERS["kanehero"]


# --- the choice, from hand-written scores


def _scores(identity: str, values: list[float], adherence: str | None, adh: list[float]) -> list[CheckpointScore]:
    """scores[0] is the baseline (step 0); then checkpoints every 100 steps."""
    out = []
    for i, value in enumerate(values):
        fields = {identity: value} | ({adherence: adh[i]} if adherence else {})
        out.append(CheckpointScore(step=100 * i, **fields))
    return out


def test_the_most_consistent_checkpoint_the_prompt_still_steers_is_chosen_and_over_training_flagged():
    scores = _scores("dino", [0.40, 0.55, 0.62, 0.71, 0.75, 0.80], "clip_t", [0.30, 0.30, 0.30, 0.29, 0.25, 0.22])
    choice = choose_checkpoint(scores)
    assert (choice.step, choice.by, choice.overtrained_after) == (300, "dino", 300)
    assert choice.message.startswith(
        "step 300: the most consistent (DINO 0.71) while the prompt still steers it (CLIP-T 0.29, baseline 0.30)"
    )
    assert "after step 300 identity kept rising while prompt adherence fell: over-trained" in choice.message
    # identity alone would take the last one: adherence is what moved the choice
    assert choose_checkpoint([s.model_copy(update={"clip_t": None}) for s in scores]).step == 500


def test_a_baseline_that_follows_prompts_better_than_any_checkpoint_does_not_rule_them_all_out():
    # the reference is the best checkpoint's adherence when that is lower than the baseline's
    scores = _scores("clip_i", [0.50, 0.60, 0.70, 0.72], "clip_t", [0.36, 0.30, 0.29, 0.25])
    choice = choose_checkpoint(scores)
    assert (choice.step, choice.by, choice.overtrained_after) == (200, "clip_i", 200)


def test_flat_scores_keep_the_earliest_and_flag_nothing():
    scores = _scores("dino", [0.60, 0.702, 0.700, 0.703, 0.701], "clip_t", [0.30, 0.30, 0.301, 0.30, 0.299])
    choice = choose_checkpoint(scores)
    assert (choice.step, choice.overtrained_after) == (100, None)
    assert "score alike" in choice.message and "over-trained" not in choice.message


def test_toy_detectors_rank_when_no_scorer_is_configured():
    scores = _scores("hit_rate", [0.0, 0.25, 0.5, 0.75, 1.0], "adherence_hits", [1.0, 1.0, 1.0, 0.75, 0.25])
    choice = choose_checkpoint(scores)
    assert (choice.step, choice.by, choice.overtrained_after) == (200, "toy detectors", 200)
    assert "detector hit rate 50%" in choice.message and "prompt hits 100%, baseline 100%" in choice.message


def test_nothing_to_rank_by_keeps_the_last_and_says_so():
    scores = [CheckpointScore(step=s, change=None if s == 0 else s / 1000) for s in (0, 100, 200)]
    choice = choose_checkpoint(scores)
    assert (choice.step, choice.by) == (None, "none")
    assert choice.message == NOTHING and "LORASTUDIO_SCORER_DINO" in choice.message


def test_without_an_adherence_measure_the_choice_says_over_training_cannot_be_seen():
    choice = choose_checkpoint(_scores("dino", [0.4, 0.5, 0.7, 0.6], None, []))
    assert choice.step == 200 and choice.overtrained_after is None
    assert "nothing measures prompt adherence (set LORASTUDIO_SCORER_CLIP)" in choice.message


def test_the_table_marks_the_chosen_row_and_over_training_and_says_the_note_and_share():
    scores = _scores("dino", [0.40, 0.55, 0.71, 0.80], "clip_t", [0.30, 0.30, 0.29, 0.20])
    evaluation = Evaluation(
        scores=scores,
        choice=choose_checkpoint(scores),
        scorers=["dino:dinov2-small", "clip:clip-vit-base-patch32"],
        note="a note",
        eval_seconds=10,
        train_seconds=90,
    )
    lines = scores_table(evaluation).splitlines()
    assert lines[0].split() == ["step", "DINO", "CLIP-T", "seconds"]  # columns nobody scored are left out
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert rows["200"].endswith("<- chosen") and rows["300"].endswith("over-trained")
    assert "chosen" not in rows["base"] + rows["100"]
    text = "\n".join(lines)
    assert "Note: a note" in text and "10% of the run's time" in text and "dino:dinov2-small" in text


# --- plumbing with real tiny random scorer models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(clip_dir, dino_dir) built once for the module."""
    return build_tiny_scorers(tmp_path_factory.mktemp("scorers"))


def _settings(tmp_path, **values) -> Settings:
    return Settings(home=tmp_path / "home", device="cpu", **values)


@pytest.fixture(scope="module")
def scorers(tiny, tmp_path_factory):
    clip, dino = tiny
    return load_scorers(_settings(tmp_path_factory.mktemp("s"), scorer_clip=str(clip), scorer_dino=str(dino)))


def test_scorers_load_from_their_folders_by_name_and_none_configured_says_which_settings(scorers, tmp_path):
    assert scorers.names == ["dino:tiny-dinov2", "clip:tiny-clip"] and scorers.note is None
    none = load_scorers(_settings(tmp_path))
    assert none.names == [] and "LORASTUDIO_SCORER_DINO" in none.note and "LORASTUDIO_SCORER_CLIP" in none.note


def test_hub_scorers_need_downloads_allowed(tmp_path):
    with pytest.raises(Invalid) as caught:
        load_scorers(_settings(tmp_path, scorer_dino="hf:facebook/dinov2-small"))
    assert caught.value.setting == "scorer_dino" and "LORASTUDIO_ALLOW_DOWNLOADS=1" in str(caught.value)


def test_a_missing_garbled_or_wrong_scorer_folder_is_refused_by_name_only(tiny, tmp_path):
    garbled = tmp_path / "private" / "garbled"
    garbled.mkdir(parents=True)
    (garbled / "config.json").write_text("{not json")
    clip, dino = tiny
    cases = [
        ("scorer_clip", garbled, "'garbled'"),
        ("scorer_dino", tmp_path / "private" / "nowhere", "'nowhere'"),
        ("scorer_clip", dino, "holds a 'dinov2' model"),  # a DINO folder where CLIP belongs
    ]
    for setting, folder, said in cases:
        with pytest.raises(Invalid) as caught:
            load_scorers(_settings(tmp_path, **{setting: str(folder)}))
        assert caught.value.setting == setting and said in str(caught.value)
        assert str(tmp_path) not in str(caught.value)


def _draw(character: Character, prompts: list[EvalPrompt], seed: int = 0) -> list[Image.Image]:
    """Each toy prompt's scene drawn with `character`: its style (by trigger) and its place, as asked."""
    pictures = []
    for i, prompt in enumerate(prompts):
        style = next((k for k, s in STYLES.items() if s.trigger in prompt.text), None)
        where = next(b for b in BACKGROUNDS if prompt.text.endswith(f" {b}") or prompt.text.endswith(f"at {b}"))
        pictures.append(draw_scene(make_scene([character], style, where, random.Random(seed + i)), seed + i))
    return pictures


def _pictures(folder) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def john_refs(tmp_path_factory) -> list[Image.Image]:
    folder = tmp_path_factory.mktemp("john")
    character_references(JOHN, folder, n=8)
    return _pictures(folder)


def test_renders_are_scored_in_range_and_the_detectors_tell_the_subject_apart(scorers, john_refs):
    prompts = eval_prompts("character", "johnhero", family="toyworld", references=john_refs, n=4)
    assert [p.seed for p in prompts] == [7000, 7001, 7002, 7003] and all("johnhero" in p.text for p in prompts)
    assert all("johnhero" not in p.plain for p in prompts)
    refs = references(john_refs, scorers, kind="character", trigger="johnhero")
    john, kane = _draw(JOHN, prompts), _draw(KANE, prompts)
    base = score_renders(0, kane, prompts, refs, scorers, None, seconds=1.5)
    hit = score_renders(100, john, prompts, refs, scorers, kane)
    assert base.change is None and base.seconds == 1.5 and 0 < hit.change <= 1
    for score in (base, hit):
        assert all(-1 <= v <= 1 for v in (score.dino, score.clip_i, score.clip_t))
        assert score.adherence_hits == 1.0  # the style and the place each prompt asked for are drawn
    assert (base.hit_rate, hit.hit_rate) == (0.0, 1.0)
    assert score_renders(100, john, prompts, refs, scorers, john).change == 0.0


def test_identity_similarity_uses_an_embedding_else_the_toy_detectors_else_says_none(scorers, john_refs):
    prompts = eval_prompts("character", "johnhero", family="toyworld", references=john_refs, n=3)
    john, kane = _draw(JOHN, prompts, seed=5), _draw(KANE, prompts, seed=5)
    value, by = identity_similarity(john, references(john_refs, scorers), scorers)
    assert by == "dino" and -1 <= value <= 1
    bare = load_scorers(Settings(device="cpu"))
    # a trigger the world does not know: the subject is the look the detectors find most often in the references
    refs = references(john_refs, bare, kind="character", trigger="myhero")
    assert identity_similarity(john, refs, bare) == (1.0, "toy detectors")
    assert identity_similarity(kane, refs, bare) == (0.0, "toy detectors")
    kane_check = prompts[0].identity  # johnhero's check, passed explicitly
    assert identity_similarity(kane, refs, bare, identity=kane_check) == (0.0, "toy detectors")
    photos = [Image.new("RGB", (64, 64), (i * 40, 90, 30)) for i in range(3)]  # not toy-world pictures
    assert identity_similarity(photos, references(photos, bare), bare) == (None, "none")


def test_a_style_is_read_from_its_references_and_other_families_use_the_kinds_scenes(tmp_path):
    style_references("sword", tmp_path, n=6)
    pictures = _pictures(tmp_path)
    prompts = eval_prompts("fighting_style", "mysword", family="toyworld", references=pictures, n=3)
    assert all(", mysword, " in p.text and "mysword" not in p.plain for p in prompts)
    assert sum(p.identity(im) for p, im in zip(prompts, pictures, strict=False)) >= 2  # the sword is what they show
    sd = eval_prompts("character", "johnhero", family="sd15", references=[], n=len(CHARACTER.eval_scenes) + 1)
    assert sd[0].text == CHARACTER.eval_scenes[0].format(trigger="johnhero") and sd[-1].text == sd[0].text
    assert (
        sd[-1].seed == sd[0].seed + len(CHARACTER.eval_scenes)
        and sd[0].plain == "a person fighting in a dojo, full body"
    )
    assert all(p.identity is None and p.adherence is None for p in sd)


# --- any LoRA file, through the CLI


def test_lora_score_prints_the_table_and_json_for_a_toy_world_style(tiny, tmp_path, monkeypatch):
    clip, dino = tiny
    refs = tmp_path / "refs"
    style_references("kungfu", refs, n=4)
    (refs / "broken.png").write_bytes(b"not a picture")
    for name, value in {
        "HOME": tmp_path / "home",
        "DEVICE": "cpu",
        "SCORER_CLIP": clip,
        "SCORER_DINO": dino,
    }.items():
        monkeypatch.setenv(f"LORASTUDIO_{name}", str(value))
    from lorastudio.cli import app

    runner = CliRunner()
    lora = STYLES_DIR / "kungfustyle.safetensors"
    args = ["lora", "score", str(lora), "--refs", str(refs), "--prompts", "2", "--steps", "3"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["step"] for s in report["scores"]] == [0, 600]  # the baseline, then the file at its trained steps
    assert report["scorers"] == ["dino:tiny-dinov2", "clip:tiny-clip"]
    assert report["choice"]["step"] == 600 and report["choice"]["by"] == "dino"
    lora_row = report["scores"][1]
    assert all(lora_row[k] is not None for k in ("dino", "clip_i", "clip_t", "change", "hit_rate", "adherence_hits"))
    assert "broken.png" in report["note"] and str(tmp_path) not in report["note"]

    table = report["table"]  # what the command prints without --json
    assert "<- chosen" in table and "Chosen: step 600" in table and "CLIP-T" in table

    human = runner.invoke(app, [*args[:-4], "--prompts", "1", "--steps", "2"])
    assert human.exit_code == 0, human.output
    assert human.stdout.split("\n")[0].split() == [
        "step",
        "DINO",
        "CLIP-I",
        "CLIP-T",
        "change",
        "hits",
        "prompt",
        "hits",
        "seconds",
    ]
    assert "<- chosen" in human.stdout and "broken.png" in human.stdout
    assert "rendering 2/2" in human.stderr  # one render without the LoRA, one with it

    monkeypatch.setenv("LORASTUDIO_SCORER_CLIP", "hf:openai/clip-vit-base-patch32")
    refused = runner.invoke(app, [*args, "--json"])
    assert refused.exit_code == 2
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "invalid" and "LORASTUDIO_ALLOW_DOWNLOADS=1" in error["message"]
    human = runner.invoke(app, args)
    assert human.exit_code == 2 and "Traceback" not in human.output and "LORASTUDIO_SCORER_CLIP" in human.output
