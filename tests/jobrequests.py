"""Typed job requests for tests that put job rows in the table directly (what a submit would store)."""

from __future__ import annotations

from lorastudio.studio.credits import Estimate
from lorastudio.studio.jobs import ExportJob, GenerationJob, TrainingJob

_ESTIMATE = Estimate(minutes=(1, 2), credits=(0, 0), dollars=0, images=1, steps=1, resolution=32, breakdown=[])


def sample_request(type: str, **values) -> TrainingJob | GenerationJob | ExportJob:
    """A request of this job type with placeholder values (`values` override them)."""
    if type == "training":
        return TrainingJob(**{"dataset_id": 1, "plan": {}, "estimate": _ESTIMATE, "credits_per_gpu_minute": 1} | values)
    if type == "export":
        return ExportJob(**{"storyboard_id": 1, "format": "pdf"} | values)
    return GenerationJob(**{"prompt": "a test scene", "base": "tiny-sd15"} | values)
