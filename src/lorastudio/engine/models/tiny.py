"""Tiny test models built from config with a fixed seed (tests, demo): SD1.5- and SDXL-shaped here, the
transformer families' in tiny_flow.py; `ensure_tiny_model` writes any of them as a diffusers folder.

Shapes follow the real architectures (same block types, cross-attention, SDXL's two text encoders
and added time embeddings) at a fraction of the width, so every code path runs in seconds on a CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from lorastudio.engine.models.tiny_flow import FLOW_BUILDERS
from lorastudio.engine.models.tiny_parts import TINY_WORDS, clip_text_config
from lorastudio.engine.models.tokenizer import build_clip_tokenizer

TINY_NAMES = ("tiny-sd15", "tiny-sdxl", "tiny-flux1", "tiny-flux2-klein", "tiny-qwen-image", "tiny-z-image")
# A diffusers folder may name its family in this file; our tiny models do, so they are told from a real model of
# their family without measuring widths.
FAMILY_MARKER = "lorastudio_family.txt"


def sd_scheduler() -> EulerDiscreteScheduler:
    """The Euler scheduler with SD1.5's and SDXL's published training noise schedule."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )


def _vae() -> AutoencoderKL:
    # Four blocks, so pixels -> latents shrink 8x as in SD: the VAE's share of a training step is
    # then about what it is on a real model, which keeps benchmarks about caching honest.
    return AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=256,
    )


def build_tiny_sd15(seed: int = 0) -> StableDiffusionPipeline:
    """An SD1.5-shaped pipeline: CrossAttn down/up blocks, one CLIP text encoder (hidden 32)."""
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(TINY_WORDS)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    text_encoder = CLIPTextModel(clip_text_config(len(tokenizer), 32))
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl(seed: int = 0) -> StableDiffusionXLPipeline:
    """An SDXL-shaped pipeline: two text encoders, pooled embeddings and added time ids."""
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(TINY_WORDS)
    text_encoder = CLIPTextModel(clip_text_config(len(tokenizer), 16))
    # The second encoder is wider than the first, as in SDXL (1280 vs 768): single-file loaders tell the
    # two apart by width, so equal widths would load one encoder's weights into the other.
    text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(len(tokenizer), 24, projection=24))
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=40,  # text_encoder (16) + text_encoder_2 (24), concatenated
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 24,  # size ids + pooled text_encoder_2
        norm_num_groups=16,
    )
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=sd_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def ensure_tiny_model(name: str, models_dir: Path) -> Path:
    """Build the named tiny model into models_dir once (atomically) and return its diffusers folder."""
    if name not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {', '.join(TINY_NAMES)}")
    target = models_dir / name
    if (target / "model_index.json").exists():
        return target
    builders = {"tiny-sd15": build_tiny_sd15, "tiny-sdxl": build_tiny_sdxl, **FLOW_BUILDERS}
    return save_pipeline_once(builders[name](), target, family=name)


def save_pipeline_once(pipe, target: Path, family: str | None = None) -> Path:
    """Write a pipeline as a diffusers folder at target (naming its family in FAMILY_MARKER when given),
    temp-then-rename; a copy another process finished first is kept (it is as good as ours)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if family:
            (tmp / FAMILY_MARKER).write_text(family + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model_index.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
