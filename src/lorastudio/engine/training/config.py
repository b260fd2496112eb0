"""What a training run is asked to do (TrainConfig), what it reports (ProgressEvent) and returns (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lorastudio.engine.training.presets import KINDS, check_trigger, get_preset
from lorastudio.errors import Invalid

SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial")


class TrainConfig(BaseModel):
    """Every knob of a run. Preset values fill whatever is left unset (see `from_preset`)."""

    model_config = ConfigDict(extra="forbid")

    images: list[Path] | Path = Field(description="A folder of images (with optional .txt captions) or a list")
    kind: Literal["character", "fighting_style", "pose", "visual_style"]
    trigger: str = Field(description="Trigger word put in every caption, e.g. 'johnhero'")
    description: str = Field(default="", max_length=300, description="What the subject looks like, in plain words")
    base: str = Field(description="Base model: built-in name, diffusers folder, .safetensors or hf:<id>")
    output: Path = Field(description="Where the finished .safetensors LoRA is written")
    run_dir: Path = Field(description="Checkpoints, samples and loss history of this run")
    preset: str
    steps: int = Field(gt=0, le=100_000)
    learning_rate: float = Field(gt=0, le=1.0)
    text_encoder_lr: float | None = Field(default=None, gt=0, le=1.0)
    network_dim: int = Field(gt=0, le=1024)
    network_alpha: float = Field(gt=0)
    resolution: int = Field(ge=32, le=4096)
    batch_size: int = Field(ge=1, le=64)
    bucket_step: int = Field(default=64, ge=8, le=256, description="Bucket sides are multiples of this")
    gradient_accumulation: int = Field(default=1, ge=1, le=128)
    target: Literal["attn", "attn-ff", "all"] = "attn"
    train_text_encoder: bool = False
    optimizer: Literal["adamw", "adamw8bit", "prodigy"] = "adamw"
    weight_decay: float = Field(default=1e-2, ge=0)
    lr_scheduler: Literal[SCHEDULERS] = "constant_with_warmup"  # type: ignore[valid-type]
    warmup_steps: int = Field(default=0, ge=0)
    min_snr_gamma: float | None = Field(default=5.0, gt=0)
    noise_offset: float = Field(default=0.0, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, ge=0)
    gradient_checkpointing: bool = False
    precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    save_precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    seed: int = 42
    flip_augment: bool = False
    cache_latents: bool = True
    checkpoint_every: int = Field(default=100, ge=0)
    keep_checkpoints: int = Field(default=3, ge=1)
    sample_every: int = Field(default=0, ge=0)
    sample_prompts: list[str] = Field(default_factory=list)
    sample_steps: int = Field(default=20, ge=1)
    resume: bool = False
    device: str = "auto"
    min_images: int | None = Field(default=None, ge=1, description="Override the kind's hard minimum")

    @field_validator("trigger")
    @classmethod
    def _one_word(cls, v: str) -> str:
        try:
            return check_trigger(v)
        except Invalid as exc:
            raise ValueError(str(exc)) from exc

    @classmethod
    def from_preset(cls, *, kind: str, preset: str | None = None, **overrides: object) -> TrainConfig:
        """Build a config from the kind's preset (or a named one) with explicit overrides on top."""
        if kind not in KINDS:
            raise Invalid(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
        p = get_preset(preset, kind)
        values = {
            "preset": p.name,
            "steps": p.steps,
            "learning_rate": p.learning_rate,
            "network_dim": p.network_dim,
            "network_alpha": p.network_alpha,
            "resolution": p.resolution,
            "batch_size": p.batch_size,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["warmup_steps"] = values.get("warmup_steps", min(100, int(values["steps"]) // 10))
        try:
            return cls(kind=kind, **values)
        except ValidationError as exc:
            raise Invalid(format_validation_error(exc)) from exc


def format_validation_error(exc: ValidationError) -> str:
    """One readable line per bad field."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        lines.append(f"{where}: {err['msg']}")
    return "invalid training settings - " + "; ".join(lines)


@dataclass
class ProgressEvent:
    """One progress report from a run; `phase` is prepare, cache, train, sample, checkpoint or save."""

    phase: str
    step: int = 0
    total: int = 0
    loss: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    preview: Path | None = None


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    lora_path: Path | None
    steps_done: int
    total_steps: int
    stopped: bool
    seconds: float
    loss_history: list[tuple[int, float]]
    images_used: int
    family: str
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    peak_memory_mb: float | None = None
    report: dict = field(default_factory=dict)
