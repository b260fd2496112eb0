"""Score a checkpoint's evaluation renders: DreamBooth's DINO and CLIP-I (renders against the training pictures),
CLIP-T (each render against its prompt without the trigger word), the change from the no-LoRA baseline, and on
the toy world the detectors' hit rates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from lorastudio.engine.evaluation.evalset import TOYWORLD, EvalPrompt, subject_check, toy_subject
from lorastudio.engine.evaluation.results import CheckpointScore
from lorastudio.engine.evaluation.scorers import Scorers

DIGITS = 4  # stored scores: enough to rank checkpoints, few enough to read in JSON


@dataclass
class References:
    """The training pictures as each scorer sees them, and (toy world) the detectors' check for their subject."""

    count: int
    dino: torch.Tensor | None = None  # L2-normalised rows, one per picture
    clip: torch.Tensor | None = None
    identity: Callable[[Image.Image], bool] | None = None


def references(
    images: list[Image.Image],
    scorers: Scorers,
    *,
    kind: str | None = None,
    trigger: str | None = None,
    family: str | None = None,
) -> References:
    """Embed the training pictures once per run; on toy-world pictures also read their subject with the detectors
    (a held-out character by `trigger`, else the look or, for a fighting style, the style found most often). With
    a `family` other than the toy world's, the detectors are not asked: they only read the toy world."""
    toy = family is None or family == TOYWORLD
    return References(
        count=len(images),
        dino=scorers.dino_embed(images) if images else None,
        clip=scorers.clip_embed(images) if images else None,
        identity=subject_check(toy_subject(kind, trigger, images)) if images and toy else None,
    )


def _pairwise(renders: torch.Tensor | None, refs: torch.Tensor | None) -> float | None:
    """DreamBooth's measure: the mean cosine over every (render, reference) pair."""
    if renders is None or refs is None or not len(renders) or not len(refs):
        return None
    return round(float((renders @ refs.T).mean()), DIGITS)


def _share(checks: list[Callable[[Image.Image], bool] | None], renders: list[Image.Image]) -> float | None:
    if not renders or any(c is None for c in checks):
        return None
    return round(sum(bool(c(im)) for c, im in zip(checks, renders, strict=True)) / len(renders), DIGITS)


def pixel_change(renders: list[Image.Image], baseline: list[Image.Image]) -> float:
    """Mean absolute pixel difference of each render from the baseline render of the same prompt and seed (0-1)."""
    diffs = []
    for a, b in zip(renders, baseline, strict=True):
        b = b if b.size == a.size else b.resize(a.size)
        diffs.append(np.abs(np.asarray(a.convert("RGB"), np.float32) - np.asarray(b.convert("RGB"), np.float32)))
    return round(float(np.mean([d.mean() for d in diffs])) / 255, DIGITS)


def score_renders(
    step: int,
    renders: list[Image.Image],
    prompts: list[EvalPrompt],
    refs: References,
    scorers: Scorers,
    baseline: list[Image.Image] | None,
    seconds: float = 0.0,
) -> CheckpointScore:
    """One checkpoint's scores from its renders (one per prompt, in order); baseline None for the baseline itself."""
    if len(renders) != len(prompts):
        raise ValueError(f"{len(renders)} renders for {len(prompts)} prompts")
    clip_images = scorers.clip_embed(renders)
    clip_t = None
    if clip_images is not None and renders:
        texts = scorers.clip_text([p.plain for p in prompts])
        clip_t = round(float((clip_images * texts).sum(-1).mean()), DIGITS)
    return CheckpointScore(
        step=step,
        dino=_pairwise(scorers.dino_embed(renders), refs.dino),
        clip_i=_pairwise(clip_images, refs.clip),
        clip_t=clip_t,
        change=pixel_change(renders, baseline) if baseline is not None else None,
        hit_rate=_share([p.identity or refs.identity for p in prompts], renders),
        adherence_hits=_share([p.adherence for p in prompts], renders),
        seconds=round(max(0.0, seconds), 3),
    )


def identity_similarity(
    images: list[Image.Image],
    refs: References,
    scorers: Scorers,
    identity: Callable[[Image.Image], bool] | None = None,
) -> tuple[float | None, str]:
    """One number for "do these look like the references", and what gave it: "dino", else "clip_i", else the toy
    detectors' hit rate ("toy detectors"), else (None, "none")."""
    if images and scorers.dino is not None and refs.dino is not None:
        return _pairwise(scorers.dino_embed(images), refs.dino), "dino"
    if images and scorers.clip is not None and refs.clip is not None:
        return _pairwise(scorers.clip_embed(images), refs.clip), "clip_i"
    check = identity or refs.identity
    if images and check is not None:
        return _share([check] * len(images), images), "toy detectors"
    return None, "none"
