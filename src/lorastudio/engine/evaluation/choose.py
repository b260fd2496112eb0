"""Pick the best checkpoint: the most consistent one while the prompt still steers it, and flag over-training
(identity still rising while prompt adherence falls). Also the CLI's table of an evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from lorastudio.engine.evaluation.results import CheckpointScore, Choice, Evaluation

# How much prompt adherence a checkpoint may lose against the reference (the baseline's, or the best checkpoint's
# if lower) and still be chosen.
# CLIP-T, absolute on the cosine: on-prompt renders sit around 0.25-0.35 with CLIP ViT-B/32 (DreamBooth reports
# 0.305 for its SD renders), and a render that ignores its scene loses a few hundredths; over the 4-8 prompts of an
# evaluation set the seed-to-seed noise of the mean is about 0.01. 0.02 lets noise through and stops a real drop.
CLIP_T_TOLERANCE = 0.02
# The toy detectors' adherence hits, as a share of the prompts: 0.15 forgives one missed prompt in eight or more
# (the detectors misread an occasional generation), never a second one; with the default 4 prompts any miss counts.
HITS_TOLERANCE = 0.15
# Identity scores this close count as a tie, and the earlier checkpoint wins: it has had less chance to over-fit
# and its renders vary more. For embeddings 0.005 of cosine is below what one prompt's seed moves the mean; for
# hit rates (steps of 1/n) only equal rates tie.
IDENTITY_TIE = {"dino": 0.005, "clip_i": 0.005, "hit_rate": 1e-9}

IDENTITY_FIELDS = ("dino", "clip_i", "hit_rate")  # in order of preference
ADHERENCE_FIELDS = ("clip_t", "adherence_hits")
LABELS = {"dino": "DINO", "clip_i": "CLIP-I", "hit_rate": "detector hit rate", "clip_t": "CLIP-T"}
BY = {"dino": "dino", "clip_i": "clip_i", "hit_rate": "toy detectors"}
NOTHING = (
    "nothing scores identity here: no scorer is configured (set LORASTUDIO_SCORER_DINO or LORASTUDIO_SCORER_CLIP) "
    "and the toy world's detectors do not read this base or this kind of LoRA; the last checkpoint is kept"
)


@dataclass(frozen=True)
class _Measure:
    field: str

    def of(self, score: CheckpointScore) -> float:
        return getattr(score, self.field)

    def said(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.0%}" if self.field in ("hit_rate", "adherence_hits") else f"{value:.2f}"


def _measure(fields: tuple[str, ...], scores: list[CheckpointScore]) -> _Measure | None:
    """The first field every given score has."""
    for name in fields:
        if scores and all(getattr(s, name) is not None for s in scores):
            return _Measure(name)
    return None


def choose_checkpoint(scores: list[CheckpointScore]) -> Choice:
    """The chosen checkpoint among `scores` (scores[0]: the baseline, step 0), by which measure, and why in words."""
    baseline = next((s for s in scores if s.step == 0), None)
    checkpoints = sorted((s for s in scores if s.step > 0), key=lambda s: s.step)
    identity = _measure(IDENTITY_FIELDS, checkpoints)
    if identity is None:
        message = NOTHING if checkpoints else "no checkpoint was evaluated; the last one is kept"
        return Choice(step=None, by="none", message=message)
    adherence = _measure(ADHERENCE_FIELDS, checkpoints)
    tolerance = CLIP_T_TOLERANCE if adherence and adherence.field == "clip_t" else HITS_TOLERANCE
    base_adherence = adherence.of(baseline) if adherence and baseline and adherence.of(baseline) is not None else None

    eligible = checkpoints
    floor = None
    if adherence:
        best_adherence = max(adherence.of(s) for s in checkpoints)
        reference = best_adherence if base_adherence is None else min(base_adherence, best_adherence)
        floor = reference - tolerance
        eligible = [s for s in checkpoints if adherence.of(s) >= floor - 1e-9]  # the best one always qualifies
    top = max(identity.of(s) for s in eligible)
    chosen = next(s for s in eligible if identity.of(s) >= top - IDENTITY_TIE[identity.field])  # earliest of a tie

    label = LABELS[identity.field]
    message = f"step {chosen.step}: the most consistent ({label} {identity.said(identity.of(chosen))})"
    if adherence:
        said = adherence.said
        what = "CLIP-T" if adherence.field == "clip_t" else "prompt hits"
        base = f", baseline {said(base_adherence)}" if base_adherence is not None else ""
        message += f" while the prompt still steers it ({what} {said(adherence.of(chosen))}{base})"
    else:
        message += "; nothing measures prompt adherence (set LORASTUDIO_SCORER_CLIP), so over-training cannot be seen"
    spread = max(identity.of(s) for s in checkpoints) - min(identity.of(s) for s in checkpoints)
    if len(checkpoints) > 1 and spread <= IDENTITY_TIE[identity.field]:
        message += "; the checkpoints score alike, so the earliest is kept"
    base_identity = getattr(baseline, identity.field) if baseline else None
    if base_identity is not None and identity.of(chosen) <= base_identity + IDENTITY_TIE[identity.field]:
        message += (
            f"; no more like the references than the base without the LoRA ({label} "
            f"{identity.said(base_identity)}): it may not have learned its subject"
        )

    overtrained_after = None
    if adherence and floor is not None:
        # over-trained: a later checkpoint that is more "consistent" than the chosen one but was left out because
        # the prompt no longer steers it; the flag names the last checkpoint before the first such one
        later = [s for s in checkpoints if s.step > chosen.step]
        for i, s in enumerate(later):
            if identity.of(s) > identity.of(chosen) and adherence.of(s) < floor - 1e-9:
                overtrained_after = (later[i - 1] if i else chosen).step
                break
    if overtrained_after is not None:
        message += f"; after step {overtrained_after} identity kept rising while prompt adherence fell: over-trained"
    return Choice(step=chosen.step, by=BY[identity.field], overtrained_after=overtrained_after, message=message)


# the table's columns: (field, heading); a column nobody scored is left out
_COLUMNS = (
    ("dino", "DINO"),
    ("clip_i", "CLIP-I"),
    ("clip_t", "CLIP-T"),
    ("change", "change"),
    ("hit_rate", "hits"),
    ("adherence_hits", "prompt hits"),
)


def scores_table(evaluation: Evaluation) -> str:
    """The evaluation as text: a row per checkpoint (the chosen one marked), the choice, over-training, the note
    and the evaluation's share of the run's time."""
    scores = evaluation.scores
    columns = [(f, h) for f, h in _COLUMNS if any(getattr(s, f) is not None for s in scores)]
    header = ["step", *(h for _, h in columns), "seconds", ""]
    rows = []
    for s in scores:
        cells = ["base" if s.step == 0 else str(s.step)]
        for f, _ in columns:
            cells.append(_Measure(f).said(getattr(s, f)))
        cells.append(f"{s.seconds:.1f}")
        marks = []
        if evaluation.choice.step is not None and s.step == evaluation.choice.step:
            marks.append("<- chosen")
        if evaluation.choice.overtrained_after is not None and s.step > evaluation.choice.overtrained_after:
            marks.append("over-trained")
        cells.append(", ".join(marks))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # numbers right-aligned; the last column (the marks) reads as words, left-aligned
    lines = [
        "  ".join([*(c.rjust(w) for c, w in zip(r[:-1], widths, strict=False)), r[-1]]).rstrip()
        for r in [header, *rows]
    ]
    lines.append("")
    lines.append(f"Chosen: {evaluation.choice.message}")
    if evaluation.scorers:
        lines.append(f"Scored with: {', '.join(evaluation.scorers)}")
    if evaluation.note:
        lines.append(f"Note: {evaluation.note}")
    took = f"Evaluation took {evaluation.eval_seconds:.1f} s"
    if evaluation.train_seconds:
        took += f", {evaluation.share:.0%} of the run's time"
    lines.append(took)
    return "\n".join(lines)
