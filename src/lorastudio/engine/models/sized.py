"""SD1.5- and SDXL-sized pipelines from their published configs, with random weights (benchmarks).

Speed and memory depend on shapes, not on the values of the weights, so these measure what a real
SD1.5 (UNet 860M, VAE 84M, CLIP-L 123M) or SDXL base (UNet 2.6B, CLIP-L + OpenCLIP-G) costs without
downloading one. The configs are the ones published with runwayml/stable-diffusion-v1-5 and
stabilityai/stable-diffusion-xl-base-1.0, written out so nothing reaches a hub. The tokenizer is the
tiny models' (a few hundred tokens): token ids only index the embedding table, so it costs the same.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from lorastudio.engine.models.tiny import TINY_WORDS, save_pipeline_once, sd_scheduler
from lorastudio.engine.models.tokenizer import build_clip_tokenizer

SIZED_NAMES = ("sd15-sized", "sdxl-sized")

SD15_UNET = dict(
    sample_size=64,
    cross_attention_dim=768,
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2,
)
SDXL_UNET = dict(
    sample_size=128,
    cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20),
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
CLIP_L = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu"
)
CLIP_G = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    projection_dim=1280,
    hidden_act="gelu",
)


def text_config(shape: dict, tokens: int = 49408) -> CLIPTextConfig:
    """A CLIP text config of the given shape with CLIP's 49408-row token table and 77 positions; the
    special tokens are the last two of a tokenizer of `tokens` tokens (the pooled output is read at EOS)."""
    return CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        bos_token_id=tokens - 2,
        eos_token_id=tokens - 1,
        pad_token_id=tokens - 1,
        **shape,
    )


def build_sized(name: str, seed: int = 0) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """The SD1.5- or SDXL-sized pipeline, fp32, random weights drawn from `seed`."""
    if name not in SIZED_NAMES:
        raise ValueError(f"unknown sized model {name!r}; choose one of {', '.join(SIZED_NAMES)}")
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(TINY_WORDS)
    n = len(tokenizer)
    if name == "sd15-sized":
        return StableDiffusionPipeline(
            vae=AutoencoderKL(**SD_VAE, sample_size=512),
            text_encoder=CLIPTextModel(text_config(CLIP_L, n)),
            tokenizer=tokenizer,
            unet=UNet2DConditionModel(**SD15_UNET),
            scheduler=sd_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        vae=AutoencoderKL(**SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        text_encoder=CLIPTextModel(text_config(CLIP_L, n)),
        text_encoder_2=CLIPTextModelWithProjection(text_config(CLIP_G, n)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(**SDXL_UNET),
        scheduler=sd_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def ensure_sized_model(name: str, models_dir: Path) -> Path:
    """Write the named sized model (fp16 on disk, ~2 GB for SD1.5, ~7 GB for SDXL) once, atomically."""
    target = models_dir / name
    if (target / "model_index.json").exists():
        return target
    pipe = build_sized(name)
    pipe.to(torch.float16)  # half the disk; loaders cast to the dtype they ask for
    return save_pipeline_once(pipe, target)
