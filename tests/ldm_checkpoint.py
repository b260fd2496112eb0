"""Write a diffusers SD1.5- or SDXL-family pipeline as one original-layout .safetensors checkpoint, the
form A1111 and Civitai share, so the single-file loading path is tested on models we build ourselves.

Names follow CompVis/Stability's layout: model.diffusion_model.* (UNet, the same SGM names kohya uses
for SDXL LoRAs, see engine/lora/keys.py), first_stage_model.* (VAE), and the text encoders:
cond_stage_model.transformer.* (SD1.5's CLIP, transformers layout), or for SDXL
conditioner.embedders.0.transformer.* (CLIP-L, transformers layout) and conditioner.embedders.1.model.*
(OpenCLIP-G, OpenCLIP's own layout: fused q/k/v projections, transposed text projection).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from lorastudio.engine.lora.keys import sgm_module_name

_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_ldm_name(name: str, layers_per_block: int, up_has_attn: dict[int, bool]) -> str:
    """diffusers UNet parameter name -> LDM name (without the model.diffusion_model. prefix)."""
    module, leaf = name.rsplit(".", 1)
    return f"{sgm_module_name(module, layers_per_block, up_has_attn)}.{leaf}"


def vae_ldm_name(name: str, up_blocks: int) -> str:
    """diffusers AutoencoderKL parameter name -> LDM name (without the first_stage_model. prefix)."""
    parts = name.split(".")
    if parts[0] in ("quant_conv", "post_quant_conv"):
        return name
    side, rest = parts[0], parts[1:]
    if rest[0] == "conv_norm_out":
        return ".".join([side, "norm_out", *rest[1:]])
    if rest[0] in ("down_blocks", "up_blocks"):
        level = "down" if rest[0] == "down_blocks" else "up"
        index = int(rest[1]) if level == "down" else up_blocks - 1 - int(rest[1])  # LDM counts up blocks upward
        if rest[2] == "resnets":
            return ".".join([side, level, str(index), "block", rest[3], *_resnet(rest[4:])])
        return ".".join([side, level, str(index), "downsample" if level == "down" else "upsample", *rest[4:]])
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return ".".join([side, "mid", f"block_{int(rest[2]) + 1}", *_resnet(rest[3:])])
        inner = ".".join(rest[3:-1])
        return ".".join([side, "mid", "attn_1", _VAE_ATTN[inner], rest[-1]])
    return name  # conv_in, conv_out


def _resnet(rest: list[str]) -> list[str]:
    return ["nin_shortcut", *rest[1:]] if rest[0] == "conv_shortcut" else rest


def write_single_file(pipe, path: Path) -> Path:
    """Save pipe's UNet, VAE and text encoder(s) as one original-layout .safetensors checkpoint."""
    unet = pipe.unet
    lpb = int(unet.config.layers_per_block)
    up_attn = {i: hasattr(b, "attentions") for i, b in enumerate(unet.up_blocks)}
    tensors: dict[str, torch.Tensor] = {}
    for name, value in unet.state_dict().items():
        tensors["model.diffusion_model." + unet_ldm_name(name, lpb, up_attn)] = value
    up_blocks = len(pipe.vae.decoder.up_blocks)
    for name, value in pipe.vae.state_dict().items():
        ldm = vae_ldm_name(name, up_blocks)
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention uses 1x1 convolutions
        tensors["first_stage_model." + ldm] = value
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    clip_prefix = "conditioner.embedders.0.transformer." if sdxl else "cond_stage_model.transformer."
    for name, value in pipe.text_encoder.state_dict().items():
        tensors[clip_prefix + _with_text_model(name)] = value
    if sdxl:
        tensors.update(open_clip_tensors(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))
    return path


def _with_text_model(name: str) -> str:
    return name if name.startswith(("text_model.", "text_projection")) else "text_model." + name


_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def open_clip_tensors(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIPTextModelWithProjection state dict in OpenCLIP's names and shapes."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in state.items():
        short = name.removeprefix("text_model.")
        if short == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif short == "embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif short.startswith("final_layer_norm."):
            out["ln_final." + short.split(".")[-1]] = value
        elif short == "text_projection.weight":
            out["text_projection"] = value.T  # OpenCLIP multiplies x @ P
        elif short.startswith("encoder.layers."):
            _, _, i, *rest = short.split(".")
            inner, leaf = ".".join(rest[:-1]), rest[-1]
            if inner in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault(f"transformer.resblocks.{i}.attn.in_proj_{leaf}", {})[inner[-6]] = value
            else:
                out[f"transformer.resblocks.{i}.{_OPEN_CLIP_LAYER[inner]}.{leaf}"] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {prefix + k: v for k, v in out.items()}
