"""Scoring checkpoints inside a training run: a fixed evaluation set drawn with the LoRA as trained so far (same
seeds at every checkpoint, and once without the LoRA), scored, and the best checkpoint chosen at the end. The
evaluation's share of the run is planned from the measured step and evaluation times and held to `eval_share`."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from lorastudio.engine.evaluation.choose import choose_checkpoint
from lorastudio.engine.evaluation.evalset import eval_prompts
from lorastudio.engine.evaluation.results import CheckpointScore, Choice, Evaluation
from lorastudio.engine.evaluation.scorers import Scorers, load_scorers
from lorastudio.engine.evaluation.scoring import references, score_renders
from lorastudio.engine.fileio.tensorfile import read_safetensors, write_safetensors
from lorastudio.engine.kinds import recommended_strength
from lorastudio.engine.progress import ProgressEvent
from lorastudio.engine.training.config import TrainConfig
from lorastudio.engine.training.parts import autocast
from lorastudio.engine.training.samples import draw, lora_strength
from lorastudio.errors import LoraStudioError
from lorastudio.fileio import write_atomic, write_bytes_atomic

METADATA_KEY = "lorastudio_evaluation"  # the chosen file's own record of every checkpoint's scores


class RunEvaluation:
    """One run's evaluation set: prompts encoded once, the no-LoRA baseline drawn once, due checkpoints scored."""

    def __init__(self, cfg: TrainConfig, base, model, pictures: list[Image.Image], device, precision, settings):
        self.cfg, self.base, self.model, self.device, self.precision = cfg, base, model, device, precision
        self.folder = cfg.run_dir / "eval"
        try:
            self.scorers = load_scorers(settings, device)
        except LoraStudioError as exc:  # a server setting the user cannot change must not sink their training
            self.scorers = Scorers(note=f"the configured scorer could not be loaded ({exc}); scored without it")
        self.started = time.perf_counter()
        self.train_before = 0.0  # training seconds of the earlier processes of a resumed run
        self.prompts = eval_prompts(
            cfg.kind, cfg.trigger, family=base.family, references=pictures, n=cfg.eval_prompts, first_seed=7000
        )
        self.refs = references(pictures, self.scorers, kind=cfg.kind, trigger=cfg.trigger, family=base.family)
        # Drawn at the strength the LoRA will be used at (the toy world's 1.2, the guide's 0.8 for a character...).
        self.strength = recommended_strength(cfg.kind, base.family)
        self.conds, self.negative = [], None
        if model.family.is_flow:  # encoded now: their text encoders are freed before the loop
            with autocast(device, precision):
                self.conds = model.encode([p.text for p in self.prompts])
                if model.family.guidance == "cfg" and model.uses_cfg(model.family.default_cfg):
                    self.negative = model.encode([""])
        self.scores: list[CheckpointScore] = []
        self.files: dict[int, Path] = {}
        self.baseline: list[Image.Image] | None = None
        self.seconds = 0.0  # all the evaluation took, earlier processes of a resumed run included
        self.seconds_here = 0.0  # what it took in this process (the loop's own time excludes it)
        self.planned: set[int] | None = None
        self.skipped_note: str | None = None
        self.broken = False
        self._resume()

    def _resume(self) -> None:
        """A resumed run keeps the scores (and the baseline's pictures) its folder already holds."""
        saved = self.folder / "scores.json"
        if not (self.cfg.resume and saved.exists()):
            shutil.rmtree(self.folder, ignore_errors=True)  # a fresh run: nothing of an earlier one counts
            return
        data = json.loads(saved.read_text())
        self.scores = [CheckpointScore.model_validate(s) for s in data["scores"]]
        self.seconds = float(data["seconds"])
        self.train_before = float(data.get("train_seconds", 0.0))
        self.files = {s.step: self._file(s.step) for s in self.scores if s.step and self._file(s.step).exists()}
        pictures = [self.folder / f"step-000000-{i}.png" for i in range(len(self.prompts))]
        if self.scores and all(p.exists() for p in pictures):
            self.baseline = [Image.open(p).convert("RGB") for p in pictures]  # our own files, written atomically
        else:
            self.scores = []

    def _file(self, step: int) -> Path:
        return self.folder / f"lora-step-{step:06d}.safetensors"

    def _cost(self, per_step: float) -> float:
        """Seconds one evaluation takes: measured once one was (the baseline included), else guessed."""
        done = [s.seconds for s in self.scores if s.step]
        if done:
            return sum(done) / len(done)
        return self.scores[0].seconds if self.scores else per_step * cost_in_steps(self.cfg)

    def _plan(self, step: int, per_step: float) -> None:
        every = self.cfg.checkpoint_every
        steps = range(every, self.cfg.steps, every) if every else range(0)  # 0: no checkpoints, only the last step
        candidates = [s for s in steps if s >= step and not self._scored(s)]
        self.planned = plan_checkpoints(
            candidates,
            budget=per_step * budget_in_steps(self.cfg),
            cost=self._cost(per_step),
            spent=self.seconds,
            baseline_done=self._scored(0),
            last=self.cfg.steps,
        )
        if not self.planned and not self.files:
            self.skipped_note = (
                f"not evaluated: scoring its checkpoints would take more than {self.cfg.eval_share:.0%} of this "
                "short run; raise the evaluation's share (eval_share) or train longer"
            )

    def _scored(self, step: int) -> bool:
        return any(s.step == step for s in self.scores)

    def due(self, step: int, per_step: float) -> bool:
        """Whether the checkpoint at `step` is scored. The plan is made at the first checkpoint, once the speed is
        known, and made again after each scored one with its measured cost, so what is left of the share is spread
        over what is left of the run; the last step is always scored unless nothing could be."""
        if self.broken:
            return False
        if step == self.cfg.steps and self.files:
            return True  # the last step is one of the choices whenever any checkpoint was scored
        if self.planned is None:
            self._plan(step, per_step)
        return step in self.planned

    def score(self, step: int, export: Callable[[Path], None], emit) -> None:
        """Export the checkpoint's LoRA file, draw the evaluation set with it (the baseline first, once), score."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.baseline is None:
            t0 = time.perf_counter()
            with lora_strength(self._lora_modules(), 0.0):
                self.baseline = self._draw()
            paths = self._save(0, self.baseline)
            scored = score_renders(
                0, self.baseline, self.prompts, self.refs, self.scorers, None, time.perf_counter() - t0
            )
            self._record(scored, paths, emit)
        t0 = time.perf_counter()
        export(self._file(step))
        self.files[step] = self._file(step)
        with lora_strength(self._lora_modules(), self.strength):
            renders = self._draw()
        paths = self._save(step, renders)
        scored = score_renders(
            step, renders, self.prompts, self.refs, self.scorers, self.baseline, time.perf_counter() - t0
        )
        self._record(scored, paths, emit)
        self.planned = None  # planned again at the next checkpoint, with this measured cost

    def _lora_modules(self):
        return (self.base.denoiser, *self.base.text_encoders)

    def _draw(self) -> list[Image.Image]:
        return draw(
            self.base,
            self.model,
            [p.text for p in self.prompts],
            self.conds,
            self.negative,
            [p.seed for p in self.prompts],
            size=self.cfg.resolution,
            steps=self.cfg.eval_steps,
            device=self.device,
            precision=self.precision,
        )

    def _save(self, step: int, images: list[Image.Image]) -> list[Path]:
        paths = []
        for i, image in enumerate(images):
            path = self.folder / f"step-{step:06d}-{i}.png"
            write_atomic(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
            paths.append(path)
        return paths

    def _record(self, scored: CheckpointScore, paths: list[Path], emit) -> None:
        self.scores = [s for s in self.scores if s.step != scored.step] + [scored]
        self.scores.sort(key=lambda s: s.step)
        self.seconds += scored.seconds
        self.seconds_here += scored.seconds
        state = {
            "scores": [s.model_dump() for s in self.scores],
            "seconds": self.seconds,
            "train_seconds": self.train_seconds(),
        }
        write_bytes_atomic(self.folder / "scores.json", json.dumps(state).encode())
        what = "the base model without the LoRA" if scored.step == 0 else f"checkpoint {scored.step}"
        emit(
            ProgressEvent(
                "evaluate", scored.step, self.cfg.steps, message=f"scored {what}", score=scored, renders=paths
            )
        )

    def train_seconds(self) -> float:
        """Seconds the run trained so far, earlier processes included, the evaluation left out."""
        return self.train_before + max(0.0, time.perf_counter() - self.started - self.seconds_here)

    def failed(self, exc: BaseException) -> None:
        """Stop evaluating after a failure of the evaluation itself (out of memory drawing, a scorer that broke):
        the training goes on and keeps its last step, and the result says why."""
        self.skipped_note = f"not evaluated: the evaluation failed ({type(exc).__name__}: {exc}"[:300] + ")"
        self.files.clear()
        self.planned = set()
        self.broken = True

    def skipped(self) -> Evaluation:
        """The record of a run whose checkpoints were not scored (too short for its share, or the evaluation
        failed): the last file stays the LoRA."""
        note = self.skipped_note or "not evaluated"
        return Evaluation(
            scores=self.scores,
            choice=Choice(step=None, by="none", message=note),
            scorers=self.scorers.names,
            note=note,
            eval_seconds=self.seconds,
            train_seconds=self.train_seconds(),
        )

    def finish(self, output: Path) -> tuple[Evaluation, dict[int, Path]]:
        """Choose among the scored checkpoints; the chosen one's file (with every score in its metadata) is
        written to `output`; the others' files are the alternatives, by step."""
        choice = choose_checkpoint(self.scores)
        chosen = choice.step if choice.step in self.files else max(self.files)  # unranked: the last one
        evaluation = Evaluation(
            scores=self.scores,
            choice=choice,
            chosen_step=chosen,
            scorers=self.scorers.names,
            note=self.scorers.note,
            eval_seconds=self.seconds,
            train_seconds=self.train_seconds(),
        )
        tensors, meta = read_safetensors(self.files[chosen])
        meta[METADATA_KEY] = json.dumps(evaluation.model_dump())
        write_safetensors(output, tensors, meta)
        return evaluation, {s: p for s, p in self.files.items() if s != chosen}


def cost_in_steps(cfg: TrainConfig) -> float:
    """One evaluation guessed in training steps: a sampling step runs the denoiser on a batch of 2 (guidance), a
    training step about 3x its batch (forward and backward)."""
    return cfg.eval_prompts * cfg.eval_steps * 2 / (3 * cfg.batch_size)


def budget_in_steps(cfg: TrainConfig) -> float:
    """What the evaluation may take, in training steps: its share is of the whole run's time, training and
    evaluation together, so eval <= share / (1 - share) x training (share 1: no bound)."""
    return math.inf if cfg.eval_share >= 1 else cfg.eval_share / (1 - cfg.eval_share) * cfg.steps


def expected_evaluations(cfg: TrainConfig) -> int:
    """How many times a run is expected to draw its evaluation set (the baseline included), as its plan is first
    made: 0 when it will not be scored. The studio's estimate prices these."""
    if not cfg.evaluate:
        return 0
    every = cfg.checkpoint_every
    plan = plan_checkpoints(
        list(range(every, cfg.steps, every)) if every else [],
        budget=budget_in_steps(cfg),
        cost=cost_in_steps(cfg),
        spent=0.0,
        baseline_done=False,
        last=cfg.steps,
    )
    return len(plan) + 1 if plan else 0


def plan_checkpoints(
    candidates: list[int], *, budget: float, cost: float, spent: float, baseline_done: bool, last: int
) -> set[int]:
    """The checkpoint steps to score within `budget` seconds: the last step always, with as many of the candidates
    as fit, evenly spread; none at all when the baseline and the last step alone would not fit."""
    if math.isinf(budget):
        return set(candidates) | {last}
    fixed = cost * (1 + (0 if baseline_done else 1))
    if spent + fixed > budget:
        return set()
    k = int((budget - spent - fixed) / cost) if cost > 0 else len(candidates)
    m = len(candidates)
    chosen = set(candidates) if k >= m else {candidates[round((i + 1) * (m + 1) / (k + 1)) - 1] for i in range(k)}
    return chosen | {last}


def evaluation_of(metadata: dict[str, str]) -> Evaluation | None:
    """The evaluation a LoRA file records (None when it has none or it is garbled: metadata is untrusted)."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return None
    try:
        return Evaluation.model_validate(json.loads(raw))
    except (ValueError, TypeError):
        return None
