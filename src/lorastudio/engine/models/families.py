"""Model families: the one table of what each family is called, how kohya and the model spec name it,
what size it draws and trains at, whether it is SDXL-shaped, and how much device memory its jobs take.
Adding a family means a row here.

sd15 and sdxl are the real ones; toyworld is the built-in toy-world model (SD1.5-shaped at 32 px);
tiny-sd15 and tiny-sdxl share their structure at a smaller width, so a LoRA for one never fits another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# kohya's modelspec implementations: SD1.5 LoRAs name diffusers; SDXL LoRAs name Stability's SGM code.
IMPL_DIFFUSERS = "diffusers"
IMPL_SGM = "https://github.com/Stability-AI/generative-models"


@dataclass(frozen=True)
class Memory:
    """Device memory a job on a family takes, in GB: what it holds whatever the batch (weights, and for
    training the optimizer's state), plus each batch image's activations at the family's default_size
    (scaled by pixels at other sizes)."""

    fixed_gb: float
    per_image_gb: float


@dataclass(frozen=True)
class Family:
    """What LoRA Studio knows about one model family."""

    name: str
    label: str  # for messages
    ss_base_model_version: str  # kohya's ss_base_model_version
    architecture: str  # modelspec.architecture of the base ("/lora" is added for LoRA files)
    implementation: str  # modelspec.implementation of a LoRA for it
    default_size: int  # generation width/height when none is asked for
    train_resolution: int  # presets' training resolution on this family
    hires_resolution: int  # the -hires presets' resolution
    bucket_step: int  # bucket sides are multiples of this
    sdxl_like: bool  # two text encoders, pooled embeddings and size ids; kohya's SGM key names
    prediction_type: str = "epsilon"
    # Training values that replace the preset's on this family (the toy world's CPU recipe).
    recipe: dict = field(default_factory=dict)
    # The strength a LoRA trained on this family is recorded with (None: its kind's, the guide's 0.8 / 0.6 / 0.4).
    recommended_strength: float | None = None
    # Device memory of LoRA training and of generation with the guide's settings (fp16/bf16 weights, AdamW),
    # rounded up from what kohya_ss and diffusers users report; None: small enough for any worker.
    train_memory: Memory | None = None
    generate_memory: Memory | None = None


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "sd15",
            "SD1.5",
            "sd_v1",
            "stable-diffusion-v1",
            IMPL_DIFFUSERS,
            512,
            768,
            1024,
            64,
            False,
            train_memory=Memory(5.0, 2.0),
            generate_memory=Memory(2.5, 0.5),
        ),
        Family(
            "sdxl",
            "SDXL",
            "sdxl_base_v1-0",
            "stable-diffusion-xl-v1-base",
            IMPL_SGM,
            1024,
            1024,
            1024,
            64,
            True,
            train_memory=Memory(12.0, 6.0),
            generate_memory=Memory(7.0, 1.5),
        ),
        Family(
            "toyworld",
            "toyworld (built-in 32x32 toy-world model, not SD)",
            "sd_v1",
            "stable-diffusion-v1",
            IMPL_DIFFUSERS,
            32,
            32,
            32,
            32,
            False,
            # Measured on 2 CPU cores: 600 steps (~110 s) give 100% identity hits (benchmarks/consistency.py).
            recipe=dict(
                steps=600, learning_rate=2e-3, network_dim=16, network_alpha=16, batch_size=4, target="attn-ff"
            ),
            # On 32x32 pictures a 0.8 LoRA loses the 1-pixel headband; 1.2 draws it in 20 of 20 scenes.
            recommended_strength=1.2,
        ),
        Family(
            "tiny-sd15",
            "tiny SD1.5-shaped test model",
            "sd_v1",
            "stable-diffusion-v1",
            IMPL_DIFFUSERS,
            64,
            64,
            64,
            64,
            False,
        ),
        Family(
            "tiny-sdxl",
            "tiny SDXL-shaped test model",
            "sdxl_base_v1-0",
            "stable-diffusion-xl-v1-base",
            IMPL_SGM,
            64,
            64,
            64,
            64,
            True,
        ),
    )
}


def get_family(name: str | None) -> Family | None:
    """The family row for a name, or None when the name is unknown (or None)."""
    return FAMILIES.get(name) if name else None


def family_label(name: str | None) -> str:
    """Human name of a family for messages."""
    family = get_family(name)
    return family.label if family else (name or "an unknown model family")


def is_sdxl_like(name: str) -> bool:
    """SDXL-shaped families use kohya's SGM key names and two text encoders."""
    family = get_family(name)
    return family.sdxl_like if family else name.endswith("sdxl")
