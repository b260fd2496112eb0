"""Which function runs each job type: the one table a new job type adds a row to (with its payloads)."""

from __future__ import annotations

from collections.abc import Callable

from lorastudio.studio.captioning import run_captioning
from lorastudio.studio.generation import run_generation
from lorastudio.studio.jobs import JobRun
from lorastudio.studio.storyboards import run_export
from lorastudio.studio.training import run_training

RUNNERS: dict[str, Callable[[JobRun], None]] = {
    "training": run_training,
    "generation": run_generation,
    "export": run_export,
    "caption": run_captioning,
}
