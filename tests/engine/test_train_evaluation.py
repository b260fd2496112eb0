"""Checkpoint evaluation inside training: every due checkpoint scored on the same evaluation set, the best one
kept as the LoRA (its scores in its metadata), the others as alternatives, within the evaluation's share."""

from __future__ import annotations

import pytest
import torch

from lorastudio.config import Settings
from lorastudio.engine.evaluation.scorers import build_tiny_scorers
from lorastudio.engine.fileio.tensorfile import read_safetensors
from lorastudio.engine.models.tiny import ensure_tiny_model
from lorastudio.engine.toyworld.consistency import character_references, toy_lora_config
from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS
from lorastudio.engine.training.evaluate import evaluation_of, plan_checkpoints
from lorastudio.engine.training.train import train_lora
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def john_refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("john")
    character_references(HELD_OUT_CHARACTERS["johnhero"], folder, n=10)
    return folder


def _toy(john_refs, tmp_path, **overrides):
    # Small on purpose (the suite's time): batch 1, two prompts drawn in 4 steps; the plumbing is what is tested.
    values = dict(
        steps=30, checkpoint_every=10, batch_size=1, evaluate=True, eval_share=1.0, eval_prompts=2, eval_steps=4
    )
    values.update(overrides)
    return toy_lora_config(
        "character", john_refs, "johnhero", tmp_path / "lora.safetensors", tmp_path / "run", **values
    )


def test_each_checkpoint_is_scored_and_the_chosen_one_becomes_the_lora(settings, john_refs, tmp_path):
    events = []
    result = train_lora(_toy(john_refs, tmp_path), settings=settings, on_progress=events.append)
    evaluation = result.evaluation
    assert [s.step for s in evaluation.scores] == [0, 10, 20, 30]
    # The toy world without a scorer model: ranked by its detectors, and it says so.
    assert evaluation.choice.by == "toy detectors"
    assert evaluation.note and "LORASTUDIO_SCORER" in evaluation.note
    assert all(s.hit_rate is not None and s.adherence_hits is not None for s in evaluation.scores)
    assert evaluation.scores[0].change is None and all(s.change > 0 for s in evaluation.scores[1:])
    assert evaluation.eval_seconds > 0 and 0 < evaluation.share < 1
    scored = [e for e in events if e.phase == "evaluate"]
    assert [e.step for e in scored] == [0, 10, 20, 30]
    assert all(len(e.renders) == 2 and all(p.exists() for p in e.renders) for e in scored)
    assert [e.score for e in scored] == evaluation.scores

    chosen = evaluation.choice.step
    assert chosen in (10, 20, 30) and evaluation.chosen_step == chosen
    assert set(result.alternatives) == {10, 20, 30} - {chosen}
    tensors, meta = read_safetensors(result.lora_path)
    own, _ = read_safetensors(tmp_path / "run" / "eval" / f"lora-step-{chosen:06d}.safetensors")
    assert tensors.keys() == own.keys() and all(torch.equal(tensors[k], own[k]) for k in tensors)
    assert meta["ss_steps"] == str(chosen)  # the file says which checkpoint it is
    for step, path in result.alternatives.items():
        other, other_meta = read_safetensors(path)
        assert other_meta["ss_steps"] == str(step)
        assert any(not torch.equal(tensors[k], other[k]) for k in tensors)
    recorded = evaluation_of(meta)
    assert recorded.choice == evaluation.choice and recorded.scores == evaluation.scores
    assert result.to_dict()["evaluation"]["choice"]["step"] == chosen


def test_a_run_too_short_for_its_share_is_not_scored_and_says_why(settings, john_refs, tmp_path):
    result = train_lora(_toy(john_refs, tmp_path, steps=10, eval_share=0.001), settings=settings)
    assert result.evaluation.scores == [] and result.evaluation.choice.step is None
    assert "eval_share" in result.evaluation.note
    assert result.lora_path.exists() and result.alternatives == {}


def test_the_plan_spreads_what_fits_and_always_scores_the_last_step():
    candidates = list(range(50, 600, 50))  # 11 checkpoints before the last step
    plan = plan_checkpoints(candidates, budget=100, cost=10, spent=0, baseline_done=False, last=600)
    assert 600 in plan and len(plan) == 9  # (100 - baseline - last) / 10 = 8 of the 11, plus the last
    gaps = [b - a for a, b in zip(sorted(plan), sorted(plan)[1:], strict=False)]
    assert max(gaps) <= 100  # spread, not bunched at one end
    assert plan_checkpoints(candidates, budget=25, cost=10, spent=0, baseline_done=False, last=600) == {600}
    assert plan_checkpoints(candidates, budget=15, cost=10, spent=0, baseline_done=False, last=600) == set()
    assert plan_checkpoints(candidates, budget=15, cost=10, spent=0, baseline_done=True, last=600) == {600}
    assert plan_checkpoints(candidates, budget=1000, cost=10, spent=0, baseline_done=True, last=600) == {
        *candidates,
        600,
    }


# Slow (11 s): the suite keeps every other evaluation test; `make test-slow` runs this one.
@pytest.mark.slow
def test_a_resumed_run_keeps_the_scores_it_had(settings, john_refs, tmp_path):
    cfg = _toy(john_refs, tmp_path)
    seen = []

    def stop_after_20() -> bool:
        return any(e.phase == "evaluate" and e.step == 20 for e in seen)

    first = train_lora(cfg, settings=settings, on_progress=seen.append, should_stop=stop_after_20)
    assert first.stopped
    resumed = train_lora(cfg.model_copy(update={"resume": True}), settings=settings)
    assert [s.step for s in resumed.evaluation.scores] == [0, 10, 20, 30]
    before = {e.step: e.score for e in seen if e.phase == "evaluate"}
    assert all(resumed.evaluation.scores[i] == before[s] for i, s in enumerate((0, 10, 20)))
    assert resumed.evaluation.eval_seconds > sum(before[s].seconds for s in (0, 10, 20))  # earlier time kept


def test_a_flow_family_scores_from_prompts_encoded_before_its_encoders_go(settings, figure_dir, tmp_path):
    ensure_tiny_model("tiny-flux1", settings.models_dir)
    clip, dino = build_tiny_scorers(tmp_path / "scorers")
    scoring = Settings(home=settings.home, device="cpu", scorer_clip=str(clip), scorer_dino=str(dino))
    cfg = tiny_config(
        figure_dir,
        tmp_path,
        base="tiny-flux1",
        resolution=32,
        steps=4,
        checkpoint_every=2,
        evaluate=True,
        eval_share=1.0,
        eval_prompts=2,
        eval_steps=2,
    )
    result = train_lora(cfg, settings=scoring)
    evaluation = result.evaluation
    assert [s.step for s in evaluation.scores] == [0, 2, 4]
    assert all(s.dino is not None and s.clip_i is not None and s.clip_t is not None for s in evaluation.scores)
    assert all(s.hit_rate is None for s in evaluation.scores)  # no detectors off the toy world
    assert evaluation.choice.by == "dino" and evaluation.note is None
    assert evaluation.scorers and all("/" not in name for name in evaluation.scorers)  # names, never paths


def test_without_checkpoints_and_with_a_broken_scorer_the_run_still_scores_its_end(settings, john_refs, tmp_path):
    # A scorer setting the user cannot change (a server's) that points at nothing must not sink their training.
    broken = Settings(home=settings.home, device="cpu", scorer_dino=str(tmp_path / "no-such-model"))
    cfg = _toy(john_refs, tmp_path, steps=10, checkpoint_every=0)
    result = train_lora(cfg, settings=broken)
    evaluation = result.evaluation
    assert [s.step for s in evaluation.scores] == [0, 10] and evaluation.chosen_step == 10
    assert "could not be loaded" in evaluation.note and "no-such-model" in evaluation.note
    assert str(tmp_path) not in evaluation.note  # the folder's name, never its path
    assert evaluation.choice.by == "toy detectors" and result.alternatives == {}
