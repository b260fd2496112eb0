"""The training area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, create_model

from lorastudio.engine import SEED_LIMIT, TrainConfig

# The training settings a user may change ("custom configuration"): never paths, the device setting or the
# dataset gate. `devices` asks for that many devices (data parallel); which ones is the worker's business.
TUNABLE = (
    "steps",
    "learning_rate",
    "text_encoder_lr",
    "network_dim",
    "network_alpha",
    "resolution",
    "batch_size",
    "gradient_accumulation",
    "target",
    "train_text_encoder",
    "optimizer",
    "lr_scheduler",
    "warmup_steps",
    "min_snr_gamma",
    "noise_offset",
    "precision",
    "gradient_checkpointing",
    # Transformer families (FLUX.1, FLUX.2, Qwen-Image, Z-Image): the memory savers a 12-20B base needs, and the
    # file's key layout; the train page shows them only for those families.
    "quantize_base",
    "blocks_to_swap",
    "lora_format",
    "flip_augment",
    "seed",
    "devices",
    "checkpoint_every",
    "sample_every",
    # Score every checkpoint and keep the best as the version (on by default in the studio): the most of the run's
    # time that may take, how many prompts each checkpoint renders, and the sampling steps of each render.
    "evaluate",
    "eval_share",
    "eval_prompts",
    "eval_steps",
)


DEVICES_WORDS = (
    "GPUs (devices) to train on at once, data parallel: each takes a batch of batch_size, so a step sees devices x "
    "batch_size images; the plan keeps the images seen equal (steps / devices, rounded up) and multiplies the "
    "learning rate by the square root of devices (Adam's rule), unless you set steps or learning_rate yourself; "
    "a worker with that many devices runs it"
)


def _tunable(name: str) -> tuple:
    """A TrainConfig field as an optional override with the same type and limits (one copy of each limit)."""
    field = TrainConfig.model_fields[name]
    copy = Field(default=None, description=field.description)
    copy.metadata = list(field.metadata)
    if name == "seed":  # -1: pick one and record it, as A1111 and the CLI take it
        copy = Field(default=None, ge=-1, lt=SEED_LIMIT, description=field.description + "; -1: random")
    if name == "devices":  # the studio plans for them (the engine takes steps and learning rate as given)
        copy.description = DEVICES_WORDS
    annotation = field.annotation if field.annotation is not None else object
    return (annotation | None, copy)


TrainingSettings = create_model(
    "TrainingSettings",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    __doc__="Preset values to change; each left out keeps the preset's.",
    **{name: _tunable(name) for name in TUNABLE},
)


class TrainingIn(BaseModel):
    """A training job: a dataset, a kind and preset, and any overrides of the preset."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dataset_id: int = Field(ge=1, le=2**62, description="Dataset to train on")
    preset: str | None = Field(default=None, max_length=40, description="Preset name (default: the kind's)")
    base: str | None = Field(default=None, max_length=200, description="Base model, by name (default: the studio's)")
    description: str | None = Field(
        default=None, max_length=300, description="What the subject looks like (default: its character's)"
    )
    overrides: TrainingSettings = Field(  # type: ignore[valid-type]
        default_factory=TrainingSettings,
        description="Preset values to change: " + ", ".join(TUNABLE),
        examples=[{"steps": 1200}],
    )
