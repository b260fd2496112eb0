from lorastudio.studio.training.schemas import TrainingIn, TrainingSettings
from lorastudio.studio.training.service import (
    EVALUATE,
    PREVIEWS,
    estimate_training,
    run_training,
    running_by_character,
    submit_training,
)

__all__ = [
    "EVALUATE",
    "PREVIEWS",
    "TrainingIn",
    "TrainingSettings",
    "estimate_training",
    "run_training",
    "running_by_character",
    "submit_training",
]
