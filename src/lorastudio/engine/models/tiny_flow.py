"""Tiny FLUX.1-, FLUX.2 [klein]-, Qwen-Image- and Z-Image-shaped pipelines built from config with a fixed seed.

Each keeps its released model's structure - the same denoiser, VAE and text-encoder classes, FLUX's double
and single blocks, several attention heads with rope axes that add up to the head dimension, the latent
channels, VAE scale/shift and scheduler config - at a width of 32, so a 64 px training step takes
milliseconds on a CPU. The pipelines' own `encode_prompt` and `__call__` run on them unchanged: the text
encoders are as deep as the pipelines read them (FLUX.2 [klein] stacks Qwen3's layers 9, 18 and 27) and the
Qwen tokenizer keeps Qwen-Image's prompt template the 34-token prefix the pipeline drops.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    FluxPipeline,
    FluxTransformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import (
    CLIPTextModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
)

from lorastudio.engine.models.tiny_parts import TINY_WORDS, clip_text_config
from lorastudio.engine.models.tokenizer import build_clip_tokenizer, build_qwen_tokenizer, build_t5_tokenizer

WIDTH = 32  # every tiny transformer: 2 heads of 16
HEADS, HEAD_DIM = 2, 16
ROPE_3 = (4, 6, 6)  # FLUX.1 / Qwen-Image / Z-Image split their head dim (t, h, w) like (16, 56, 56) of 128
ROPE_4 = (4, 4, 4, 4)  # FLUX.2 splits it in four equal axes, (32, 32, 32, 32) of 128

# Published scheduler configs (scheduler/scheduler_config.json of each release).
FLUX1_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)
FLUX2_SCHEDULER = FLUX1_SCHEDULER | dict(time_shift_type="exponential")
QWEN_IMAGE_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=0.9,
    base_image_seq_len=256,
    max_image_seq_len=8192,
    shift_terminal=0.02,
    time_shift_type="exponential",
)
Z_IMAGE_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
# FLUX.1's autoencoder (Z-Image ships the same one): 16 latent channels, its own scale and shift, no quant convs.
FLUX_AE = dict(
    latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False
)

QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def qwen_tokenizer():
    """The tiny Qwen tokenizer: the toy vocabulary, the chat roles and Qwen-Image's template as whole tokens."""
    return build_qwen_tokenizer(
        [QWEN_IMAGE_TEMPLATE.format(""), "system user assistant", " ".join(TINY_WORDS), *TINY_WORDS]
    )


def _flux_vae(**kw) -> AutoencoderKL:
    # Four blocks: 8x down, as FLUX's autoencoder.
    return AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        **FLUX_AE | kw,
    )


def _qwen3_config(tok, layers: int) -> Qwen3Config:
    # Qwen3-4B's shape at width 32: grouped-query attention (4 query heads over 2 key/value heads), tied
    # embeddings, rope theta 1e6.
    return Qwen3Config(
        vocab_size=len(tok),
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )


def build_tiny_flux1(seed: int = 0) -> FluxPipeline:
    """A FLUX.1 [dev]-shaped pipeline: CLIP-L and T5 encoders, double + single blocks, guidance embedding."""
    torch.manual_seed(seed)
    clip_tok = build_clip_tokenizer(TINY_WORDS)
    t5_tok = build_t5_tokenizer(TINY_WORDS)
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok),
            d_model=WIDTH,
            d_kv=8,
            d_ff=2 * WIDTH,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",  # T5 v1.1 (T5-XXL), as FLUX uses
            tie_word_embeddings=False,
            pad_token_id=t5_tok.pad_token_id,
            eos_token_id=t5_tok.eos_token_id,
            decoder_start_token_id=t5_tok.pad_token_id,
        )
    )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels in 2x2 patches
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=WIDTH,  # T5's width
        pooled_projection_dim=WIDTH,  # CLIP's pooled width
        guidance_embeds=True,  # [dev]'s distilled guidance
        axes_dims_rope=ROPE_3,
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX1_SCHEDULER),
        vae=_flux_vae(),
        text_encoder=CLIPTextModel(clip_text_config(len(clip_tok), WIDTH)),
        tokenizer=clip_tok,
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
        transformer=transformer,
    )


def build_tiny_flux2_klein(seed: int = 0) -> Flux2KleinPipeline:
    """A FLUX.2 [klein] base-shaped pipeline: Qwen3 (3 hidden layers stacked), the 32-channel FLUX.2
    autoencoder, shared modulations, no guidance embedding (CFG)."""
    torch.manual_seed(seed)
    tok = qwen_tokenizer()
    # 28 layers, so the pipeline's default layers 9, 18 and 27 are inner ones, as in Qwen3-4B's 36.
    text_encoder = Qwen3ForCausalLM(_qwen3_config(tok, layers=28))
    vae = AutoencoderKLFlux2(
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=8,
        sample_size=64,
    )
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,  # 32 latent channels in 2x2 patches
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=3 * WIDTH,  # three Qwen3 layers side by side
        timestep_guidance_channels=WIDTH,
        mlp_ratio=3.0,
        axes_dims_rope=ROPE_4,
        guidance_embeds=False,
    )
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX2_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        transformer=transformer,
        is_distilled=False,
    )


def build_tiny_qwen_image(seed: int = 0) -> QwenImagePipeline:
    """A Qwen-Image-shaped pipeline: Qwen2.5-VL (with its vision tower, unused for text), the causal-3D
    Qwen-Image autoencoder, the 60-block MMDiT cut to 2 blocks."""
    torch.manual_seed(seed)
    tok = qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>")}
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config=dict(
                vocab_size=len(tok),
                hidden_size=WIDTH,
                intermediate_size=2 * WIDTH,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                max_position_embeddings=2048,
                # multimodal rope splits half the head dim (t, h, w) as Qwen2.5-VL's (16, 24, 24) of 64
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=None,
                eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tok.pad_token_id,
            ),
            vision_config=dict(
                depth=1,
                hidden_size=16,
                intermediate_size=32,
                num_heads=2,
                out_hidden_size=WIDTH,
                fullatt_block_indexes=[0],
            ),
            image_token_id=ids["<|image_pad|>"],
            video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
    )
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=WIDTH,
        axes_dims_rope=ROPE_3,
    )
    return QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        transformer=transformer,
    )


def build_tiny_z_image(seed: int = 0) -> ZImagePipeline:
    """A Z-Image-shaped pipeline: Qwen3 (its second-last layer), FLUX's autoencoder, the single-stream
    transformer with its noise and caption refiners."""
    torch.manual_seed(seed)
    tok = qwen_tokenizer()
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=WIDTH,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=HEADS,
        n_kv_heads=HEADS,
        cap_feat_dim=WIDTH,
        axes_dims=list(ROPE_3),
        axes_lens=[1536, 512, 512],
    )
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**Z_IMAGE_SCHEDULER),
        vae=_flux_vae(),
        text_encoder=Qwen3Model(_qwen3_config(tok, layers=3)),
        tokenizer=tok,
        transformer=transformer,
    )


FLOW_BUILDERS = {
    "tiny-flux1": build_tiny_flux1,
    "tiny-flux2-klein": build_tiny_flux2_klein,
    "tiny-qwen-image": build_tiny_qwen_image,
    "tiny-z-image": build_tiny_z_image,
}
