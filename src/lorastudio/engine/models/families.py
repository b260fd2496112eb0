"""Model families: the one table of what each family is, from the denoiser class to the LoRA key layout.

Each row says what the engine needs to train, generate and load files for a family: its pipeline and
denoiser, its text encoders, the training objective (epsilon / v-prediction noise for SD, flow matching
for the transformer families, whose timestep shift is the model's own scheduler config: FLUX.1 and
FLUX.2's grows with the image's token count, Qwen-Image's too on its own range, Z-Image's is a fixed 3.0;
training and sampling both read it, engine/models/denoisers), the guidance, the latents, the LoRA layers per
`--target`, the key layout its files are written in and the layouts they are read from, its sizes, its
kohya/modelspec names and the device memory its jobs take. Adding a family means a row here plus, where
its keys differ, one key namer in lora/layouts/. Nothing outside this table asks "is this SDXL?".

sd15 and sdxl are the real SD ones; toyworld is the built-in toy-world model (SD1.5-shaped at 32 px).
The `tiny-*` families share their real family's structure at a small width (tests and the demo), so a LoRA
for one never fits another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# kohya's modelspec implementations: SD1.5 LoRAs name diffusers; SDXL LoRAs name Stability's SGM code;
# the transformer families name their makers' reference code (sd-scripts' and musubi-tuner's sai_model_spec).
IMPL_DIFFUSERS = "diffusers"
IMPL_SGM = "https://github.com/Stability-AI/generative-models"
IMPL_FLUX = "https://github.com/black-forest-labs/flux"
IMPL_FLUX2 = "https://github.com/black-forest-labs/flux2"
IMPL_QWEN_IMAGE = "https://github.com/QwenLM/Qwen-Image"
IMPL_Z_IMAGE = "https://github.com/Tongyi-MAI/Z-Image"

Objective = Literal["epsilon", "v_prediction", "flow"]
# cfg: classifier-free guidance, two denoiser calls a step; distilled: FLUX.1 [dev]'s guidance embedding
# (one call; the scale is an input), which a model without the embedding ([schnell]) simply ignores.
Guidance = Literal["cfg", "distilled"]

# LoRA layers per --target, as regexes on the denoiser's module paths (diffusers names).
UNET_TARGETS = {
    "attn": (r"transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$",),
    "ff": (r"(transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)|attentions\.\d+\.(proj_in|proj_out))$",),
    "conv": (r"(resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|(down|up)samplers\.0\.conv)$",),
}
# FLUX.1/.2: the joint blocks' image and text attention (to_q/k/v/out, add_q/k/v_proj, to_add_out) and the
# single blocks' fused projections; ff: the feed-forwards; all: the modulations too (kohya's default set).
FLUX_TARGETS = {
    "attn": (
        r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$",
        r"single_transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_qkv_mlp_proj|to_out)$",
    ),
    "ff": (
        r"transformer_blocks\.\d+\.(ff|ff_context)\.(net\.0\.proj|net\.2|linear_in|linear_out)$",
        r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)$",
    ),
    "conv": (r"(transformer_blocks|single_transformer_blocks)\.\d+\.(norm1|norm1_context|norm)\.linear$",),
}
QWEN_TARGETS = {
    "attn": (
        r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$",
    ),
    "ff": (r"transformer_blocks\.\d+\.(img_mlp|txt_mlp)\.net\.(0\.proj|2)$",),
    "conv": (r"transformer_blocks\.\d+\.(img_mod|txt_mod)\.1$",),
}
Z_IMAGE_TARGETS = {
    "attn": (r"layers\.\d+\.attention\.(to_q|to_k|to_v|to_out\.0)$",),
    "ff": (r"layers\.\d+\.feed_forward\.(w1|w2|w3)$",),
    "conv": (r"layers\.\d+\.adaLN_modulation\.0$",),
}


def target_patterns(family: Family, target: str) -> tuple[str, ...]:
    """Module-path regexes of the denoiser layers that get a LoRA for --target attn, attn-ff or all."""
    groups = {"attn": ("attn",), "attn-ff": ("attn", "ff"), "all": ("attn", "ff", "conv")}
    if target not in groups:
        raise ValueError(f"target must be one of {tuple(groups)}")
    return tuple(p for g in groups[target] for p in family.targets.get(g, ()))


@dataclass(frozen=True)
class Memory:
    """Device memory a job on a family takes, in GB: what it holds whatever the batch (weights, and for
    training the optimizer's state), plus each batch image's activations at the family's default_size
    (scaled by pixels at other sizes)."""

    fixed_gb: float
    per_image_gb: float
    denoiser_gb: float = 0.0  # of fixed_gb, the denoiser's bf16 weights: what 8-bit and block swap shrink
    blocks: int = 0  # the denoiser's transformer blocks (block swap keeps some of them on the host)


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
    pipeline: str  # the diffusers pipeline class that loads a folder of this family
    denoiser: str  # the diffusers class of its denoiser (the pipeline's `unet` or `transformer`)
    text_encoders: tuple[str, ...]  # what encodes its prompts, in the pipeline's order
    key_layout: str  # the LoRA key layout its files are written in (lora/layouts/)
    objective: Objective = "epsilon"
    guidance: Guidance = "cfg"
    latent_channels: int = 4
    targets: dict[str, tuple[str, ...]] = field(default_factory=lambda: UNET_TARGETS)
    reads: tuple[str, ...] = ()  # other trainers' key layouts its files are imported from
    # Training values that replace the preset's on this family: the toy world's CPU recipe, the transformer
    # families' learning rates from their trainers' example configs (each row says where a value comes from).
    recipe: dict = field(default_factory=dict)
    # The strength a LoRA trained on this family is recorded with (None: its kind's, the guide's 0.8 / 0.6 / 0.4).
    recommended_strength: float | None = None
    # Device memory of LoRA training and of generation with the guide's settings (fp16/bf16 weights, AdamW),
    # rounded up from what kohya_ss and diffusers users report; None: small enough for any worker.
    train_memory: Memory | None = None
    generate_memory: Memory | None = None
    # Seconds a training step takes at batch 1 and train_resolution on the guide's reference GPU (RTX 6000 Ada),
    # what the studio estimates with until its own devices have measured the family (credits/estimates.py).
    step_seconds: float = 0.03
    default_cfg: float = 7.0  # the guidance scale a generation uses when none is asked for
    # Prompt tokens the text encoder is run with (the pipeline's max_sequence_length; padded to it by FLUX's).
    # The tiny models use 32: a 512-token text stream would make their every step ten times slower.
    text_tokens: int = 77
    tiny_of: str | None = None  # a test model's real family (same structure, smaller width)
    # The released transformers' inner widths (heads x head dim, or Z-Image's dim), from their config.json: a
    # folder of the family at another width is one of our tiny test models.
    released_widths: tuple[int, ...] = ()

    @property
    def is_flow(self) -> bool:
        """Trained and sampled by flow matching (the transformer families) rather than SD's noise schedule."""
        return self.objective == "flow"


def _sd(name, label, ss, arch, impl, size, train, hires, step, *, sgm=False, **kw) -> Family:
    pipeline = "StableDiffusionXLPipeline" if sgm else "StableDiffusionPipeline"
    encoders = ("clip-l", "clip-g") if sgm else ("clip-l",)
    layout = "kohya-sgm" if sgm else "kohya-sd"
    return Family(
        name, label, ss, arch, impl, size, train, hires, step, pipeline, "UNet2DConditionModel", encoders, layout, **kw
    )


FLUX1 = dict(
    pipeline="FluxPipeline",
    denoiser="FluxTransformer2DModel",
    text_encoders=("clip-l", "t5-xxl"),
    key_layout="kohya-flux1",
    reads=("diffusers", "ai-toolkit", "sd-scripts", "musubi-tuner"),
    objective="flow",
    guidance="distilled",
    latent_channels=16,
    targets=FLUX_TARGETS,
    default_cfg=3.5,  # the guidance BFL's and diffusers' FLUX.1 [dev] examples use
    text_tokens=512,  # FluxPipeline's default for [dev] (256 for [schnell])
)
FLUX2_KLEIN = dict(
    pipeline="Flux2KleinPipeline",
    denoiser="Flux2Transformer2DModel",
    text_encoders=("qwen3",),
    key_layout="kohya-flux2",
    reads=("diffusers", "ai-toolkit", "musubi-tuner"),
    objective="flow",
    latent_channels=32,
    targets=FLUX_TARGETS,
    default_cfg=4.0,
    text_tokens=512,  # Flux2KleinPipeline's default max_sequence_length
)
QWEN_IMAGE = dict(
    pipeline="QwenImagePipeline",
    denoiser="QwenImageTransformer2DModel",
    text_encoders=("qwen2.5-vl",),
    key_layout="kohya-qwen-image",
    reads=("diffusers", "ai-toolkit", "musubi-tuner"),
    objective="flow",
    latent_channels=16,
    targets=QWEN_TARGETS,
    default_cfg=4.0,  # true CFG, as QwenImagePipeline's true_cfg_scale
    text_tokens=1024,  # QwenImagePipeline's cap on prompt tokens after the template
)
Z_IMAGE = dict(
    pipeline="ZImagePipeline",
    denoiser="ZImageTransformer2DModel",
    text_encoders=("qwen3",),
    key_layout="kohya-z-image",
    reads=("diffusers", "ai-toolkit", "musubi-tuner"),
    objective="flow",
    latent_channels=16,
    targets=Z_IMAGE_TARGETS,
    default_cfg=4.0,
    text_tokens=512,  # ZImagePipeline's default max_sequence_length
)


def _tiny(name: str, label: str, ss: str, arch: str, impl: str, row: dict) -> Family:
    """A transformer family's test model: its real family's structure at 64 px and a short text stream."""
    real = name.removeprefix("tiny-")
    return Family(
        name,
        f"tiny {label}-shaped test model",
        ss,
        arch,
        impl,
        64,
        64,
        64,
        32,
        **row | {"text_tokens": 32},
        tiny_of=real,
    )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _sd(
            "sd15",
            "SD1.5",
            "sd_v1",
            "stable-diffusion-v1",
            IMPL_DIFFUSERS,
            512,
            768,
            1024,
            64,
            train_memory=Memory(5.0, 2.0),
            generate_memory=Memory(2.5, 0.5),
            # 0.75 s makes the guide's character 15 + 1 min and its style (batch 2) 31 + 1 min.
            step_seconds=0.75,
        ),
        _sd(
            "sdxl",
            "SDXL",
            "sdxl_base_v1-0",
            "stable-diffusion-xl-v1-base",
            IMPL_SGM,
            1024,
            1024,
            1024,
            64,
            sgm=True,
            train_memory=Memory(12.0, 6.0),
            generate_memory=Memory(7.0, 1.5),
            step_seconds=1.9,  # ~2.5x SD1.5 at 768 px: kohya's and OneTrainer's users' figures
        ),
        _sd(
            "toyworld",
            "toyworld (built-in 32x32 toy-world model, not SD)",
            "sd_v1",
            "stable-diffusion-v1",
            IMPL_DIFFUSERS,
            32,
            32,
            32,
            32,
            # Measured on 2 CPU cores: 600 steps (~110 s) give 100% identity hits (benchmarks/consistency.py).
            recipe=dict(
                steps=600, learning_rate=2e-3, network_dim=16, network_alpha=16, batch_size=4, target="attn-ff"
            ),
            # On 32x32 pictures a 0.8 LoRA loses the 1-pixel headband; 1.2 draws it in 20 of 20 scenes.
            recommended_strength=1.2,
        ),
        _sd(
            "tiny-sd15",
            "tiny SD1.5-shaped test model",
            "sd_v1",
            "stable-diffusion-v1",
            IMPL_DIFFUSERS,
            64,
            64,
            64,
            64,
            tiny_of="sd15",
        ),
        _sd(
            "tiny-sdxl",
            "tiny SDXL-shaped test model",
            "sdxl_base_v1-0",
            "stable-diffusion-xl-v1-base",
            IMPL_SGM,
            64,
            64,
            64,
            64,
            sgm=True,
            tiny_of="sdxl",
        ),
        Family(
            "flux1",
            "FLUX.1",
            "flux1",  # sd-scripts' MODEL_VERSION_FLUX_V1
            "flux-1-dev",  # sd-scripts' ARCH_FLUX_1_DEV
            IMPL_FLUX,
            1024,
            1024,
            1024,
            64,
            **FLUX1,
            released_widths=(3072,),
            # 11.9B transformer (23.8 GB in bf16) + LoRA and AdamW; T5-XXL is freed once the captions are cached.
            # SimpleTuner's FLUX quickstart: >30 GB unquantized, >18 GB int8 for a rank-16 LoRA at 1024 px.
            train_memory=Memory(25.0, 6.0, denoiser_gb=23.8, blocks=57),
            generate_memory=Memory(35.0, 2.0),  # transformer + T5-XXL (9.5 GB), held while prompts change
            step_seconds=2.5,  # 12B at 1024 px; users report 1.5-3 s/it on 4090-class cards (ai-toolkit, kohya)
        ),
        Family(
            "flux2-klein",
            "FLUX.2 [klein]",
            "flux_2_klein_4b",  # musubi-tuner's architecture_full_name (klein 9B: flux_2_klein_9b)
            "Flux.2-klein-4b",  # musubi-tuner's sai_model_spec ARCH_FLUX_2_KLEIN_4B
            IMPL_FLUX2,
            1024,
            1024,
            1024,
            64,
            **FLUX2_KLEIN,
            released_widths=(3072, 4096),
            # 3.9B (7.8 GB bf16); SimpleTuner's FLUX.2 notes: klein-4b about 12 GB bf16, 8 GB int8.
            train_memory=Memory(8.5, 3.5, denoiser_gb=7.8, blocks=25),
            generate_memory=Memory(17.0, 1.5),  # transformer + Qwen3-4B (8 GB)
            step_seconds=1.2,  # 4B: about half FLUX.1's work a step
        ),
        Family(
            "qwen-image",
            "Qwen-Image",
            "qwen_image",
            "Qwen-Image",  # musubi-tuner's ARCH_QWEN_IMAGE
            IMPL_QWEN_IMAGE,
            1024,
            1024,
            1024,
            64,
            **QWEN_IMAGE,
            released_widths=(3072,),
            # 20.4B (40.9 GB bf16); musubi-tuner's table: 42 GB at 1024 px with gradient checkpointing.
            train_memory=Memory(41.5, 4.5, denoiser_gb=40.9, blocks=60),
            generate_memory=Memory(58.0, 2.5),  # transformer + Qwen2.5-VL-7B (16.6 GB)
            step_seconds=6.0,  # 20B: about 1.7x FLUX.1's parameters, and longer text
        ),
        Family(
            "z-image",
            "Z-Image",
            "z_image",
            "Z-Image",  # musubi-tuner's ARCH_Z_IMAGE
            IMPL_Z_IMAGE,
            1024,
            1024,
            1024,
            64,
            **Z_IMAGE,
            released_widths=(3840,),
            # 6.2B (12.3 GB bf16); SimpleTuner's Z-Image notes: 16-24 GB int8.
            train_memory=Memory(13.5, 8.0, denoiser_gb=12.3, blocks=32),
            generate_memory=Memory(22.0, 1.5),  # transformer + Qwen3-4B (8 GB)
            step_seconds=1.5,  # 6B single-stream
        ),
        _tiny("tiny-flux1", "FLUX.1", "flux1", "flux-1-dev", IMPL_FLUX, FLUX1),
        _tiny("tiny-flux2-klein", "FLUX.2 [klein]", "flux_2_klein_4b", "Flux.2-klein-4b", IMPL_FLUX2, FLUX2_KLEIN),
        _tiny("tiny-qwen-image", "Qwen-Image", "qwen_image", "Qwen-Image", IMPL_QWEN_IMAGE, QWEN_IMAGE),
        _tiny("tiny-z-image", "Z-Image", "z_image", "Z-Image", IMPL_Z_IMAGE, Z_IMAGE),
    )
}


def get_family(name: str | None) -> Family | None:
    """The family row for a name, or None when the name is unknown (or None)."""
    return FAMILIES.get(name) if name else None


def family_label(name: str | None) -> str:
    """Human name of a family for messages."""
    family = get_family(name)
    return family.label if family else (name or "an unknown model family")


def full_size_families() -> list[Family]:
    """The families of real, full-size models (a user adds these; the toy-world and tiny test ones are built in)."""
    return [f for f in FAMILIES.values() if f.train_memory is not None]
