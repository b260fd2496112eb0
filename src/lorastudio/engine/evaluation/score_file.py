"""Score any LoRA file, ours or imported, against a folder of reference pictures: the evaluation set rendered
without and with the LoRA through the generation engine, scored as a training run scores its checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from lorastudio.config import Settings
from lorastudio.engine.data.images import IMAGE_SUFFIXES, ImageRejected, open_image
from lorastudio.engine.evaluation.choose import choose_checkpoint
from lorastudio.engine.evaluation.evalset import eval_prompts
from lorastudio.engine.evaluation.results import Evaluation
from lorastudio.engine.evaluation.scorers import load_scorers
from lorastudio.engine.evaluation.scoring import references, score_renders
from lorastudio.engine.kinds import DEFAULT_KIND, check_kind
from lorastudio.engine.kinds import recommended_strength as kind_strength
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.models.base import TOYWORLD, base_family
from lorastudio.engine.progress import OnProgress, ProgressEvent, no_progress
from lorastudio.errors import Invalid, NotFound

MAX_REFERENCES = 200  # the DreamBooth measure is a mean over pairs: more pictures add time, not information


def read_references(folder: Path, *, max_pixels: int) -> tuple[list[Image.Image], list[str]]:
    """The pictures in `folder` (not its subfolders), by name; those that cannot be read are skipped, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"the references folder {folder.name!r} does not exist or is not a folder")
    images, skipped = [], []
    for path in sorted(folder.iterdir())[: MAX_REFERENCES * 4]:
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file() or len(images) >= MAX_REFERENCES:
            continue
        try:
            images.append(open_image(path, max_pixels=max_pixels).image)
        except (ImageRejected, OSError):
            skipped.append(path.name)
    if not images:
        raise Invalid(f"the references folder {folder.name!r} holds no pictures that can be read")
    return images, skipped


def score_lora(
    path: Path,
    refs: Path,
    *,
    settings: Settings,
    base: str | None = None,
    kind: str | None = None,
    trigger: str | None = None,
    prompts: int = 4,
    steps: int = 20,
    strength: float | None = None,
    on_progress: OnProgress | None = None,
) -> Evaluation:
    """Score a LoRA file against the pictures in `refs`; base, kind, trigger and strength default to what its
    metadata says (the toyworld base for a toy-world file, else the default base model)."""
    from lorastudio.engine.generation.generate import GenerateRequest, generate
    from lorastudio.engine.generation.pipecache import PipelineCache

    emit = on_progress or no_progress
    t0 = time.perf_counter()
    path = Path(path)
    info = read_lora(path).info
    kind = check_kind(kind or info.kind or DEFAULT_KIND).name
    trigger = trigger or (info.trigger_words[0] if info.trigger_words else None)
    if not trigger:
        raise Invalid(f"{path.name} records no trigger word; give the word it was trained with")
    base = base or (TOYWORLD if info.family == TOYWORLD else settings.default_base_model)
    family = base_family(base, settings)
    images, skipped = read_references(refs, max_pixels=settings.max_image_pixels)
    scorers = load_scorers(settings)
    refs_set = references(images, scorers, kind=kind, trigger=trigger, family=family)
    evalset = eval_prompts(kind, trigger, family=family or "", references=images, n=max(1, prompts))
    weight = strength if strength is not None else info.recommended_strength or kind_strength(kind, family)
    cache = PipelineCache(settings)
    total = 2 * len(evalset)

    def render(loras: list[dict], done: int) -> tuple[list[Image.Image], float]:
        started = time.perf_counter()
        out = []
        for i, prompt in enumerate(evalset):
            req = GenerateRequest.build(
                prompt=prompt.text, base=base, seed=prompt.seed, steps=steps, loras=loras, prompt_tags=False
            )
            out.append(generate(cache, req).images[0])
            emit(ProgressEvent("generate", done + i + 1, total, message=prompt.text))  # renders done of all
        return out, time.perf_counter() - started

    baseline, seconds = render([], 0)
    base_score = score_renders(0, baseline, evalset, refs_set, scorers, None, seconds)
    emit(ProgressEvent("evaluate", 0, message="without the LoRA", score=base_score))
    renders, seconds = render([{"lora": str(path), "strength": weight}], len(evalset))
    # the file's own training steps, where it says; a file from elsewhere is "step 1", the one checkpoint there is
    step = info.training.steps if info.training.steps and info.training.steps > 0 else 1
    lora_score = score_renders(step, renders, evalset, refs_set, scorers, baseline, seconds)
    emit(ProgressEvent("evaluate", step, message=path.name, score=lora_score))
    scores = [base_score, lora_score]
    notes = [scorers.note] if scorers.note else []
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        notes.append(f"skipped {len(skipped)} reference file(s) that are not readable pictures: {shown}")
    return Evaluation(
        scores=scores,
        choice=choose_checkpoint(scores),
        scorers=scorers.names,
        note="; ".join(notes) or None,
        eval_seconds=round(time.perf_counter() - t0, 3),
    )
