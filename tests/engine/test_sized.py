"""The sized benchmark models have the published architectures: parameter counts as released.

Built on the meta device (no memory, no weights), so the check is fast enough for the default run.
"""

import pytest
import torch
from accelerate import init_empty_weights

from lorastudio.engine.models.base import family_from_transformer_config, family_from_unet_config
from lorastudio.engine.models.families import FAMILIES
from lorastudio.engine.models.sized import build_sized

# Millions of parameters of runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0;
# the text encoders' token table is CLIP's 49408 rows.
PUBLISHED = {
    "sd15-sized": {"unet": 859.52, "vae": 83.65, "text_encoder": 123.06},
    "sdxl-sized": {"unet": 2567.46, "vae": 83.65, "text_encoder": 123.06, "text_encoder_2": 694.66},
}


# Parameters of the released transformer-family models, exact, as the Hub's safetensors metadata counts them
# (the "Model size" of black-forest-labs/FLUX.1-dev 11.9B, black-forest-labs/FLUX.2-klein-base-4B 3.88B,
# Qwen/Qwen-Image 20.4B, Tongyi-MAI/Z-Image 6.15B), and of their text encoders and VAEs in millions:
# openai/clip-vit-large-patch14's text model 123.06M, google/t5-v1_1-xxl's encoder 4762.31M, Qwen/Qwen3-4B
# 4022.47M (tied embeddings), Qwen/Qwen2.5-VL-7B-Instruct 8292.17M; FLUX.1's autoencoder 83.82M, FLUX.2's
# 84.05M, Qwen-Image's (Wan 2.1's) 126.89M.
FLOW_DENOISERS = {
    "flux1-sized": 11_901_408_320,
    "flux2-klein-sized": 3_875_544_576,
    "qwen-image-sized": 20_430_401_088,
    "z-image-sized": 6_154_908_736,
}
FLOW_PARTS = {
    "flux1-sized": {"vae": 83.82, "text_encoder": 123.06, "text_encoder_2": 4762.31},
    "flux2-klein-sized": {"vae": 84.05, "text_encoder": 4022.47},
    "qwen-image-sized": {"vae": 126.89, "text_encoder": 8292.17},
    "z-image-sized": {"vae": 83.82, "text_encoder": 4022.47},
}


def millions(module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


@pytest.mark.parametrize("name", PUBLISHED)
def test_sized_models_have_the_published_shapes(name):
    with init_empty_weights():
        pipe = build_sized(name)
    got = {part: millions(getattr(pipe, part)) for part in PUBLISHED[name]}
    assert got == PUBLISHED[name]
    assert family_from_unet_config(dict(pipe.unet.config)) == name.removesuffix("-sized")
    ids = pipe.tokenizer("johnhero, kungfustyle").input_ids
    assert ids[0] == pipe.text_encoder.config.bos_token_id and ids[-1] == pipe.text_encoder.config.eos_token_id


@pytest.mark.parametrize("name", FLOW_DENOISERS)
def test_sized_transformer_families_have_the_released_parameter_counts(name):
    # Built on the meta device (not under init_empty_weights, which leaves tied embeddings untied): a table
    # the released checkpoint stores once (T5's, Qwen3-4B's) counts once.
    with torch.device("meta"):
        pipe = build_sized(name)
    assert sum(p.numel() for p in pipe.transformer.parameters()) == FLOW_DENOISERS[name]
    assert {part: millions(getattr(pipe, part)) for part in FLOW_PARTS[name]} == FLOW_PARTS[name]
    family = name.removesuffix("-sized")
    assert family_from_transformer_config(type(pipe).__name__, dict(pipe.transformer.config)) == family
    assert pipe.transformer.config.in_channels == 4 * FAMILIES[family].latent_channels or family == "z-image"


def test_a_sized_denoiser_materializes_in_bf16():
    from lorastudio.engine.models.sized import build_sized_denoiser

    # The smallest released transformer (klein, 7.8 GB in bf16) is too big for the default run: one double and
    # one single block of it, at a quarter of its heads, go through the same builder.
    model = build_sized_denoiser("flux2-klein-sized", num_layers=1, num_single_layers=1, num_attention_heads=6)
    assert type(model).__name__ == "Flux2Transformer2DModel" and model.config.joint_attention_dim == 7680
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and not any(p.is_meta for p in model.parameters())
    assert torch.get_default_dtype() == torch.float32


def test_an_unknown_sized_model_is_named():
    with pytest.raises(ValueError, match="sd15-sized, sdxl-sized, flux1-sized"):
        build_sized("sd3-sized")
