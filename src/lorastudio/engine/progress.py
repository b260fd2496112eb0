"""Progress events: what training and generation report to their caller (CLI bar, job worker, SSE)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from lorastudio.engine.evaluation.results import CheckpointScore


@dataclass
class ProgressEvent:
    """One report. `phase`: prepare, cache, train, sample, checkpoint, evaluate, save (training) or generate."""

    phase: str
    step: int = 0
    total: int = 0
    loss: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    preview: Path | None = None  # a file written for this event (training samples)
    preview_image: Image.Image | None = None  # an in-memory preview (generation, when asked for)
    checkpoint: Path | None = None  # the checkpoint file this event announces (phase "checkpoint")
    score: CheckpointScore | None = None  # phase "evaluate": the scores of the checkpoint at `step`
    renders: list[Path] | None = None  # phase "evaluate": that checkpoint's evaluation renders

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the preview image is left out: it is not text)."""
        return {
            "phase": self.phase,
            "step": self.step,
            "total": self.total,
            "loss": self.loss,
            "seconds_per_step": self.seconds_per_step,
            "eta_seconds": self.eta_seconds,
            "message": self.message,
            "preview": str(self.preview) if self.preview else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "score": self.score.model_dump() if self.score else None,
        }


OnProgress = Callable[[ProgressEvent], None]
ShouldStop = Callable[[], bool]


def no_progress(event: ProgressEvent) -> None:
    """The default callback: ignore the event."""


def never_stop() -> bool:
    """The default stop check: keep going."""
    return False
