"""What an evaluation reports: each checkpoint's scores, the checkpoint chosen, and what it cost. One shape from
the engine to the job page, the library and the file's metadata."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CheckpointScore(BaseModel):
    """One evaluated checkpoint (step 0: the base model without the LoRA, the baseline)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    step: int = Field(ge=0, description="Training step of the checkpoint; 0 is the base model without the LoRA")
    dino: float | None = Field(
        default=None, description="Identity/style similarity: DINOv2 cosine of the renders to the training pictures"
    )
    clip_i: float | None = Field(default=None, description="Identity/style similarity: CLIP image-image cosine")
    clip_t: float | None = Field(
        default=None, description="Prompt adherence: CLIP cosine of each render to its prompt without the trigger"
    )
    change: float | None = Field(
        default=None, description="How far the renders moved from the no-LoRA baseline (mean pixel change, 0-1)"
    )
    hit_rate: float | None = Field(
        default=None, description="Toy world: share of renders where the detectors find the character or style"
    )
    adherence_hits: float | None = Field(
        default=None, description="Toy world: share of renders that also show what the rest of the prompt asked for"
    )
    seconds: float = Field(default=0.0, ge=0, description="Seconds rendering and scoring this checkpoint took")


class Choice(BaseModel):
    """The checkpoint chosen, and why."""

    model_config = ConfigDict(extra="ignore")
    step: int | None = Field(description="The chosen checkpoint's step; None: nothing to rank by, the last is kept")
    by: str = Field(description="What ranked them: dino, clip_i, toy detectors, or none")
    overtrained_after: int | None = Field(
        default=None, description="Step after which identity kept rising while prompt adherence fell (over-training)"
    )
    message: str = Field(description="Why this checkpoint, in words")


class Evaluation(BaseModel):
    """A run's (or a file's) evaluation."""

    model_config = ConfigDict(extra="ignore")
    scores: list[CheckpointScore] = Field(description="The baseline (step 0) first, then checkpoints by step")
    choice: Choice = Field(description="The checkpoint chosen, and why")
    scorers: list[str] = Field(default_factory=list, description="Scoring models used, by name (never a path)")
    note: str | None = Field(default=None, description="What is missing (no scorer configured) and how to add it")
    chosen_step: int | None = Field(
        default=None, description="The step whose file became the LoRA (the choice's, or the last when unranked)"
    )
    eval_seconds: float = Field(default=0.0, ge=0, description="Seconds the evaluation took in all")
    train_seconds: float = Field(default=0.0, ge=0, description="Seconds the training took, evaluation excluded")

    @property
    def share(self) -> float:
        """The evaluation's share of the run's time (0-1)."""
        total = self.eval_seconds + self.train_seconds
        return self.eval_seconds / total if total else 0.0
