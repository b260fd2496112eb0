"""kohya key names on the real SD1.5 and SDXL architectures (random/empty weights, nothing downloaded).

The UNet configs are the published SD1.5 / SDXL-base ones (engine/models/sized.py), so no hub is needed.
Modules are created on the meta device, so building the 2.6B-parameter SDXL UNet costs no memory
and the test is fast enough for the default run.
"""

import re

import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from diffusers.loaders.lora_conversion_utils import (
    _convert_non_diffusers_lora_to_diffusers,
    _maybe_map_sgm_blocks_to_diffusers,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from lorastudio.engine.lora.keys import (
    te_kohya_name,
    te_kohya_prefix,
    text_encoder_targets,
    unet_stem_namer,
    unet_targets,
)
from lorastudio.engine.models.base import family_from_unet_config
from lorastudio.engine.models.sized import CLIP_G, CLIP_L, SD15_UNET, SDXL_UNET


def build(config: dict) -> UNet2DConditionModel:
    with init_empty_weights():
        return UNet2DConditionModel(**config)


def kohya_state(unet, sdxl: bool, target: str) -> dict[str, torch.Tensor]:
    """A rank-1 kohya state dict with our names for every targeted module (weights are zeros)."""
    namer = unet_stem_namer(unet, sdxl)
    state = {}
    for path in unet_targets(unet, target):
        weight = unet.get_submodule(path).weight
        stem = namer(path)
        state[f"{stem}.lora_down.weight"] = torch.zeros((1, *weight.shape[1:2]))
        state[f"{stem}.lora_up.weight"] = torch.zeros((weight.shape[0], 1))
        state[f"{stem}.alpha"] = torch.tensor(1.0)
    return state


def diffusers_maps_back(unet, state: dict, sdxl: bool) -> None:
    """diffusers' kohya converter must turn every key into a module path that exists in the UNet."""
    if sdxl:
        state = _maybe_map_sgm_blocks_to_diffusers(dict(state), unet.config)
    converted, alphas = _convert_non_diffusers_lora_to_diffusers(dict(state))
    modules = dict(unet.named_modules())
    paths = {
        re.sub(r"(_lora|\.lora|\.lora_linear_layer)?\.(down|up)\.weight$", "", k[len("unet.") :]).replace(
            ".processor", ""
        )
        for k in converted
    }
    missing = [p for p in paths if p not in modules and p.replace("to_out", "to_out.0") not in modules]
    assert not missing, missing[:5]
    assert len(alphas) == len(paths)


def test_sd15_names_follow_kohya():
    unet = build(SD15_UNET)
    assert family_from_unet_config(dict(unet.config)) == "sd15"
    state = kohya_state(unet, False, "attn")
    stems = {k.split(".")[0] for k in state}
    assert len(stems) == 16 * 2 * 4  # 16 transformer blocks x (attn1, attn2) x (q, k, v, out)
    for name in (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_out_0",
    ):
        assert name in stems
    diffusers_maps_back(unet, state, sdxl=False)
    diffusers_maps_back(unet, kohya_state(unet, False, "attn-ff"), sdxl=False)


def test_sdxl_names_use_sgm_blocks():
    unet = build(SDXL_UNET)
    assert family_from_unet_config(dict(unet.config)) == "sdxl"
    state = kohya_state(unet, True, "attn")
    stems = {k.split(".")[0] for k in state}
    assert len(stems) == 70 * 2 * 4  # 70 transformer blocks in SDXL's UNet
    assert all(re.match(r"lora_unet_(input_blocks|middle_block|output_blocks)_\d+_", s) for s in stems)
    for name in (
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "lora_unet_input_blocks_8_1_transformer_blocks_9_attn2_to_v",
        "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_out_0",
        "lora_unet_output_blocks_0_1_transformer_blocks_9_attn1_to_k",
        "lora_unet_output_blocks_5_1_transformer_blocks_1_attn2_to_q",
    ):
        assert name in stems, name
    diffusers_maps_back(unet, state, sdxl=True)
    diffusers_maps_back(unet, kohya_state(unet, True, "attn-ff"), sdxl=True)


def test_text_encoder_names():
    with init_empty_weights():
        clip_l = CLIPTextModel(CLIPTextConfig(**CLIP_L))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G))
    sd15 = {te_kohya_name(te_kohya_prefix(0, False), p) for p in text_encoder_targets(clip_l, "attn")}
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in sd15 and len(sd15) == 12 * 4
    te2 = {te_kohya_name(te_kohya_prefix(1, True), p) for p in text_encoder_targets(clip_g, "attn-ff")}
    assert "lora_te2_text_model_encoder_layers_31_mlp_fc2" in te2 and len(te2) == 32 * 6
