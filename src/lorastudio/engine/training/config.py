"""What a training run is asked to do (TrainConfig) and what it returns (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lorastudio.engine.evaluation.results import Evaluation
from lorastudio.engine.kinds import KindName, check_kind
from lorastudio.engine.lora.info import LoraInfo
from lorastudio.engine.prompts import check_trigger
from lorastudio.engine.seeds import SEED_LIMIT, pick_seed
from lorastudio.engine.training.presets import get_preset
from lorastudio.errors import Invalid, format_validation_error

SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial")


class TrainConfig(BaseModel):
    """Every knob of a run. Preset values fill whatever is left unset (see `from_preset`)."""

    # Every number has bounds and none may be NaN or infinite: a config also comes from untrusted requests.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    images: list[Path] | Path = Field(description="A folder of images (with optional .txt captions) or a list")
    kind: KindName
    trigger: str = Field(description="Trigger word put in every caption, e.g. 'johnhero'")
    description: str = Field(default="", max_length=300, description="What the subject looks like, in plain words")
    base: str = Field(description="Base model: built-in name, diffusers folder, .safetensors or hf:<id>")
    output: Path = Field(description="Where the finished .safetensors LoRA is written")
    run_dir: Path = Field(description="Checkpoints, samples and loss history of this run")
    preset: str
    steps: int = Field(gt=0, le=100_000, description="Training steps")
    learning_rate: float = Field(gt=0, le=1.0, description="Learning rate of the UNet's LoRA")
    text_encoder_lr: float | None = Field(default=None, gt=0, le=1.0, description="Learning rate of the text encoder")
    network_dim: int = Field(gt=0, le=1024, description="Network dim (rank)")
    network_alpha: float = Field(gt=0, le=1024, description="Network alpha (scale = alpha / rank)")
    resolution: int = Field(ge=32, le=4096, description="Training resolution (pixels, a bucket's area)")
    batch_size: int = Field(ge=1, le=64, description="Images per step")
    bucket_step: int = Field(default=64, ge=8, le=256, description="Bucket sides are multiples of this")
    family: str | None = Field(default=None, description="Family of the base model the defaults were fitted to")
    gradient_accumulation: int = Field(default=1, ge=1, le=128, description="Steps whose gradients are summed")
    target: Literal["attn", "attn-ff", "all"] = Field(default="attn", description="Which layers get a LoRA")
    train_text_encoder: bool = Field(default=False, description="Train the text encoder's LoRA too")
    optimizer: Literal["adamw", "adamw8bit", "prodigy"] = Field(default="adamw", description="Optimizer")
    weight_decay: float = Field(default=1e-2, ge=0, le=1)
    lr_scheduler: Literal[SCHEDULERS] = Field(  # type: ignore[valid-type]
        default="constant_with_warmup", description="Learning-rate schedule"
    )
    warmup_steps: int = Field(default=0, ge=0, le=100_000, description="Steps of learning-rate warm-up")
    min_snr_gamma: float | None = Field(default=5.0, gt=0, le=100, description="Min-SNR weighting gamma (5 is usual)")
    noise_offset: float = Field(default=0.0, ge=0, le=1, description="Noise offset (darker darks, brighter lights)")
    max_grad_norm: float = Field(default=1.0, ge=0, le=1000)
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations: less memory, slower")
    precision: Literal["auto", "no", "fp16", "bf16"] = Field(default="auto", description="Mixed precision")
    quantize_base: Literal["none", "int8"] = Field(
        default="none", description="Hold the frozen denoiser in 8 bits (the LoRA trains in full precision on top)"
    )
    blocks_to_swap: int = Field(
        default=0, ge=0, le=200, description="Transformer blocks kept in host memory, moved in as each runs"
    )
    lora_format: Literal["kohya", "diffusers"] = Field(
        default="kohya", description="Key layout of the file: kohya (ComfyUI, Forge, A1111) or diffusers"
    )
    save_precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    seed: int = Field(default=42, ge=0, lt=SEED_LIMIT, description="0 to 2**64-1; -1 picks one (recorded)")
    flip_augment: bool = Field(default=False, description="Mirror images at random (not for asymmetric subjects)")
    cache_latents: bool = True
    checkpoint_every: int = Field(default=100, ge=0, le=100_000, description="Save a checkpoint every N steps")
    keep_checkpoints: int = Field(default=3, ge=1, le=1000)
    sample_every: int = Field(default=0, ge=0, le=100_000, description="Render a sample preview every N steps")
    sample_prompts: list[str] = Field(default_factory=list, max_length=16)
    sample_steps: int = Field(default=20, ge=1, le=150, description="Sampling steps of each preview")
    evaluate: bool = Field(
        default=False,
        description="Score every checkpoint on a fixed evaluation set and keep the best one as the LoRA",
    )
    eval_prompts: int = Field(default=4, ge=1, le=16, description="Evaluation prompts rendered per checkpoint")
    eval_steps: int = Field(
        default=12, ge=1, le=150, description="Sampling steps of each evaluation render (few: it runs often)"
    )
    eval_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="The most of the run's time the evaluation may take (0.1: 10%; 1: every checkpoint, unbounded)",
    )
    resume: bool = False
    device: str = "auto"
    devices: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Data-parallel processes, one per device: the global batch is devices x batch_size "
        "(the learning rate is used as given)",
    )
    device_ids: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="Which CUDA devices to train on, by index (empty: the first `devices`); ignored on a CPU",
    )
    profile: bool = Field(default=False, description="Time each phase of a step (waits for the GPU at each)")
    min_images: int | None = Field(default=None, ge=1, le=10_000, description="Override the kind's hard minimum")

    @field_validator("trigger")
    @classmethod
    def _one_word(cls, v: str) -> str:
        try:
            return check_trigger(v)
        except Invalid as exc:
            raise ValueError(str(exc)) from exc

    @classmethod
    def from_preset(
        cls, *, kind: str, preset: str | None = None, family: str | None = None, **overrides: object
    ) -> TrainConfig:
        """Build a config from the kind's preset (or a named one), fitted to the base model's family
        (resolution, bucket step, the toy world's recipe), with explicit overrides on top."""
        check_kind(kind)
        p = get_preset(preset, kind, family)
        values = {
            "preset": p.name,
            "family": family,
            "steps": p.steps,
            "learning_rate": p.learning_rate,
            "network_dim": p.network_dim,
            "network_alpha": p.network_alpha,
            "resolution": p.resolution,
            "batch_size": p.batch_size,
            "bucket_step": p.bucket_step,
            "target": p.target,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("seed") == -1:
            values["seed"] = pick_seed(None)  # A1111's -1: pick one, and record it in the file
        try:
            steps = int(values["steps"])
        except (TypeError, ValueError):
            steps = 0
        values["warmup_steps"] = values.get("warmup_steps", min(100, max(steps, 0) // 10))
        try:
            return cls(kind=kind, **values)
        except ValidationError as exc:
            raise Invalid(format_validation_error(exc, "training settings")) from exc


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
    phase_seconds: dict[str, float] | None = None  # with profile: seconds per phase of the steps
    info: LoraInfo | None = None  # what the written file says about itself (no need to read it back)
    evaluation: Evaluation | None = None  # with `evaluate`: every checkpoint's scores and the one chosen
    alternatives: dict[int, Path] = field(default_factory=dict)  # other evaluated checkpoints' LoRA files, by step

    def to_dict(self) -> dict:
        """What `train --json` prints and the HTTP API returns."""
        return {
            "lora": str(self.lora_path) if self.lora_path else None,
            "stopped": self.stopped,
            "steps": self.steps_done,
            "total_steps": self.total_steps,
            "family": self.family,
            "images_used": self.images_used,
            "seconds": round(self.seconds, 2),
            "final_loss": self.loss_history[-1][1] if self.loss_history else None,
            "checkpoints": [str(p) for p in self.checkpoints],
            "samples": [str(p) for p in self.samples],
            "peak_memory_mb": self.peak_memory_mb,
            "phase_seconds": self.phase_seconds,
            "evaluation": self.evaluation.model_dump() if self.evaluation else None,
            "alternatives": {str(step): str(path) for step, path in sorted(self.alternatives.items())},
        }
