"""Pipelines of the released architectures from their published configs, with random weights (benchmarks).

Speed and memory depend on shapes, not on the values of the weights, so these measure what a real
SD1.5 (UNet 860M, VAE 84M, CLIP-L 123M) or SDXL base (UNet 2.6B, CLIP-L + OpenCLIP-G) costs without
downloading one. The configs are the ones published with runwayml/stable-diffusion-v1-5 and
stabilityai/stable-diffusion-xl-base-1.0, written out so nothing reaches a hub. The tokenizer is the
tiny models' (a few hundred tokens): token ids only index the embedding table, so it costs the same.

The transformer families are here too - FLUX.1 [dev] (12B transformer), FLUX.2 [klein] 4B, Qwen-Image (20B)
and Z-Image (6B) - from the transformer/, vae/ and text_encoder/ config.json of black-forest-labs/FLUX.1-dev,
black-forest-labs/FLUX.2-klein-base-4B, Qwen/Qwen-Image and Tongyi-MAI/Z-Image. Build them under
`accelerate.init_empty_weights()` to count or plan (nothing is allocated); `build_sized_denoiser` materializes
only the transformer, in bf16 (Z-Image 12 GB, klein 8 GB; FLUX.1's 24 GB and Qwen-Image's 41 GB need a bigger
machine than a 2-core CI box).
"""

from __future__ import annotations

from pathlib import Path

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
)

from lorastudio.engine.models.tiny import save_pipeline_once, sd_scheduler
from lorastudio.engine.models.tiny_flow import (
    FLUX1_SCHEDULER,
    FLUX2_SCHEDULER,
    FLUX_AE,
    QWEN_IMAGE_SCHEDULER,
    Z_IMAGE_SCHEDULER,
    qwen_tokenizer,
)
from lorastudio.engine.models.tiny_parts import TINY_WORDS
from lorastudio.engine.models.tokenizer import build_clip_tokenizer, build_t5_tokenizer

SIZED_NAMES = ("sd15-sized", "sdxl-sized", "flux1-sized", "flux2-klein-sized", "qwen-image-sized", "z-image-sized")

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


# The transformer families' published configs (the keys that differ from diffusers' and transformers' defaults
# are written out; the defaults of FluxTransformer2DModel, QwenImageTransformer2DModel, ZImageTransformer2DModel
# and AutoencoderKLFlux2 / AutoencoderKLQwenImage are the released models').
FLUX1_TRANSFORMER = dict(guidance_embeds=True)  # [dev]: 19 double + 38 single blocks, 24 x 128
FLUX2_KLEIN_TRANSFORMER = dict(
    num_layers=5, num_single_layers=20, num_attention_heads=24, joint_attention_dim=7680, guidance_embeds=False
)
QWEN_IMAGE_TRANSFORMER: dict = {}  # 60 blocks, 24 x 128, joint dim 3584 (Qwen2.5-VL-7B's width)
Z_IMAGE_TRANSFORMER = dict(axes_lens=[1536, 512, 512])  # dim 3840, 30 layers + 2 + 2 refiners
FLUX_AE_SIZED = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=1024,
    **FLUX_AE,
)
T5_XXL = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"
)
QWEN3_4B = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
)
QWEN25_VL_7B_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=128000,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
)
QWEN25_VL_7B_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    out_hidden_size=3584,
    fullatt_block_indexes=[7, 15, 23, 31],
)
DENOISERS = {
    "flux1-sized": ("FluxTransformer2DModel", FLUX1_TRANSFORMER),
    "flux2-klein-sized": ("Flux2Transformer2DModel", FLUX2_KLEIN_TRANSFORMER),
    "qwen-image-sized": ("QwenImageTransformer2DModel", QWEN_IMAGE_TRANSFORMER),
    "z-image-sized": ("ZImageTransformer2DModel", Z_IMAGE_TRANSFORMER),
}


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


def build_sized(name: str, seed: int = 0):
    """The named sized pipeline, fp32, random weights drawn from `seed` (under init_empty_weights: shapes only)."""
    if name not in SIZED_NAMES:
        raise ValueError(f"unknown sized model {name!r}; choose one of {', '.join(SIZED_NAMES)}")
    torch.manual_seed(seed)
    if name in DENOISERS:
        return _build_flow(name)
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


def build_sized_denoiser(
    name: str, seed: int = 0, *, dtype: torch.dtype = torch.bfloat16, **overrides
) -> torch.nn.Module:
    """Only the named transformer family's denoiser, materialized on CPU in `dtype` (built in it, so there is no
    fp32 copy at any time), random weights drawn from `seed`; `overrides` change its config (fewer blocks, to
    measure a per-block cost on a machine that cannot hold all of them)."""
    if name not in DENOISERS:
        raise ValueError(f"unknown sized transformer {name!r}; choose one of {', '.join(DENOISERS)}")
    torch.manual_seed(seed)
    cls, config = DENOISERS[name]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return getattr(diffusers, cls)(**config | overrides).eval()
    finally:
        torch.set_default_dtype(previous)


def _build_flow(name: str):
    cls, config = DENOISERS[name]
    transformer = getattr(diffusers, cls)(**config)
    if name == "flux1-sized":
        clip_tok, t5_tok = build_clip_tokenizer(TINY_WORDS), build_t5_tokenizer(TINY_WORDS)
        return diffusers.FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**FLUX1_SCHEDULER),
            vae=AutoencoderKL(**FLUX_AE_SIZED),
            text_encoder=CLIPTextModel(text_config(CLIP_L, len(clip_tok))),
            tokenizer=clip_tok,
            text_encoder_2=T5EncoderModel(T5Config(**T5_XXL, pad_token_id=0, eos_token_id=1)),
            tokenizer_2=t5_tok,
            transformer=transformer,
        )
    tok = qwen_tokenizer()
    special = dict(eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    if name == "flux2-klein-sized":
        return diffusers.Flux2KleinPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**FLUX2_SCHEDULER),
            vae=diffusers.AutoencoderKLFlux2(),
            text_encoder=Qwen3ForCausalLM(Qwen3Config(**QWEN3_4B, **special)),
            tokenizer=tok,
            transformer=transformer,
        )
    if name == "qwen-image-sized":
        ids = {
            k: tok.convert_tokens_to_ids(f"<|{k}|>") for k in ("vision_start", "vision_end", "image_pad", "video_pad")
        }
        vl = Qwen2_5_VLConfig(
            text_config=QWEN25_VL_7B_TEXT | special,
            vision_config=QWEN25_VL_7B_VISION,
            image_token_id=ids["image_pad"],
            video_token_id=ids["video_pad"],
            vision_start_token_id=ids["vision_start"],
            vision_end_token_id=ids["vision_end"],
        )
        return diffusers.QwenImagePipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER),
            vae=diffusers.AutoencoderKLQwenImage(),
            text_encoder=Qwen2_5_VLForConditionalGeneration(vl),
            tokenizer=tok,
            transformer=transformer,
        )
    return diffusers.ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**Z_IMAGE_SCHEDULER),
        vae=AutoencoderKL(**FLUX_AE_SIZED),
        text_encoder=Qwen3Model(Qwen3Config(**QWEN3_4B, **special)),
        tokenizer=tok,
        transformer=transformer,
    )


def ensure_sized_model(name: str, models_dir: Path) -> Path:
    """Write the named sized model once, atomically: fp16 for SD (~2 GB SD1.5, ~7 GB SDXL), bf16 for the
    transformer families (as released; FLUX.1 ~33 GB, klein ~16 GB, Qwen-Image ~58 GB, Z-Image ~20 GB)."""
    target = models_dir / name
    if (target / "model_index.json").exists():
        return target
    pipe = build_sized(name)
    # half the disk; loaders cast to the dtype they ask for
    pipe.to(torch.bfloat16 if name in DENOISERS else torch.float16)
    return save_pipeline_once(pipe, target)
