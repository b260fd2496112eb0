"""Module names: which layers get a LoRA, and how diffusers paths map to kohya's key names.

kohya (and so A1111/ComfyUI) names SD1.5 UNet modules with diffusers paths ('.' -> '_'), but names
SDXL UNet modules after Stability's SGM layout (input_blocks / middle_block / output_blocks), so
SDXL paths are translated first. Text encoders: lora_te_ (SD1.5), lora_te1_ / lora_te2_ (SDXL).
"""

from __future__ import annotations

import re

import torch

TARGETS = ("attn", "attn-ff", "all")
_ATTN = re.compile(r"transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
_FF = re.compile(r"(transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)|attentions\.\d+\.(proj_in|proj_out))$")
_CONV = re.compile(r"(resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|(down|up)samplers\.0\.conv)$")
_TE_ATTN = re.compile(r"encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)$")
_TE_MLP = re.compile(r"encoder\.layers\.\d+\.mlp\.(fc1|fc2)$")

_RESNET_SGM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP_SGM = {
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}


def unet_targets(unet: torch.nn.Module, target: str) -> list[str]:
    """Full module paths in `unet` that get a LoRA for a target set (attn, attn-ff, all)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}")
    patterns = [_ATTN] + ([_FF] if target != "attn" else []) + ([_CONV] if target == "all" else [])
    return [
        name
        for name, mod in unet.named_modules()
        if isinstance(mod, torch.nn.Linear | torch.nn.Conv2d) and any(p.search(name) for p in patterns)
    ]


def text_encoder_targets(encoder: torch.nn.Module, target: str) -> list[str]:
    """Module paths in a CLIP text encoder that get a LoRA (attention; MLP too unless target is attn)."""
    patterns = [_TE_ATTN] + ([_TE_MLP] if target != "attn" else [])
    return [
        name
        for name, mod in encoder.named_modules()
        if isinstance(mod, torch.nn.Linear) and any(p.search(name) for p in patterns)
    ]


def diffusers_to_sgm(path: str, layers_per_block: int) -> str:
    """Translate a diffusers UNet module path to Stability's SGM layout (used by kohya for SDXL)."""
    for src, dst in _TOP_SGM.items():
        if path == src or path.startswith(src + "."):
            return dst + path[len(src) :]
    stride = layers_per_block + 1
    parts = path.split(".")
    if parts[0] == "mid_block":
        kind, idx, rest = parts[1], int(parts[2]), parts[3:]
        block = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}[(kind, idx)]
        return ".".join(["middle_block", str(block), *_inner(kind, rest)])
    if parts[0] in ("down_blocks", "up_blocks"):
        i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if parts[0] == "down_blocks":
            if kind == "downsamplers":
                return ".".join(["input_blocks", str((i + 1) * stride), "0", "op", *rest[1:]])
            slot = "0" if kind == "resnets" else "1"
            return ".".join(["input_blocks", str(1 + i * stride + j), slot, *_inner(kind, rest)])
        if kind == "upsamplers":
            # The upsampler follows the last resnet; index 2 when the block also has attentions.
            return ".".join(["output_blocks", str(i * stride + layers_per_block), "?", *rest])
        slot = "0" if kind == "resnets" else "1"
        return ".".join(["output_blocks", str(i * stride + j), slot, *_inner(kind, rest)])
    raise ValueError(f"no SGM name for UNet module {path!r}")


def _inner(kind: str, rest: list[str]) -> list[str]:
    if kind == "resnets" and rest and rest[0] in _RESNET_SGM:
        return _RESNET_SGM[rest[0]].split(".") + rest[1:]
    return rest


def sgm_module_name(path: str, layers_per_block: int, up_has_attn: dict[int, bool]) -> str:
    """diffusers_to_sgm with the upsampler's slot settled: index 2 when its up block also attends."""
    sgm = diffusers_to_sgm(path, layers_per_block)
    if ".?." in sgm:
        sgm = sgm.replace(".?.", ".2." if up_has_attn.get(int(path.split(".")[1])) else ".1.")
    return sgm


def unet_kohya_name(path: str, sdxl_like: bool, layers_per_block: int, up_has_attn: dict[int, bool]) -> str:
    """kohya key stem for a UNet module path, e.g. lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q."""
    if sdxl_like:
        path = sgm_module_name(path, layers_per_block, up_has_attn)
    return "lora_unet_" + path.replace(".", "_")


def te_kohya_prefix(index: int, sdxl_like: bool) -> str:
    """lora_te_ for SD1.5's single encoder; lora_te1_ / lora_te2_ for SDXL's two."""
    return f"lora_te{index + 1}_" if sdxl_like else "lora_te_"


def te_kohya_name(prefix: str, path: str) -> str:
    """kohya stem for a text-encoder module; always spelled with transformers 4's `text_model.` level,
    which transformers 5 dropped from CLIPTextModel but every kohya/A1111 file still carries."""
    if not path.startswith("text_model."):
        path = "text_model." + path
    return prefix + path.replace(".", "_")


def unet_stem_namer(unet: torch.nn.Module, sdxl_like: bool):
    """A function path -> kohya stem for this UNet's layout (layers per block, which up blocks attend)."""
    lpb = int(unet.config.layers_per_block) if isinstance(unet.config.layers_per_block, int) else 2
    up_attn = {i: hasattr(b, "attentions") for i, b in enumerate(unet.up_blocks)}
    return lambda path: unet_kohya_name(path, sdxl_like, lpb, up_attn)


def base_layers(model: torch.nn.Module):
    """(path, layer) for every Linear/Conv2d of the base model, seen through peft LoRA wrappers
    (a wrapped layer's path is the wrapper's; the adapters' own small layers are skipped)."""
    for name, mod in model.named_modules():
        if ".lora_" in name or "lora_dropout" in name:
            continue
        if name.endswith(".base_layer"):
            continue  # reported under its wrapper's path below
        layer = getattr(mod, "base_layer", mod)
        if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
            yield name, layer


def unet_name_table(unet: torch.nn.Module, sdxl_like: bool) -> dict[str, str]:
    """kohya stem -> diffusers path for every Linear/Conv2d of `unet` (used to apply kohya files)."""
    namer = unet_stem_namer(unet, sdxl_like)
    table = {}
    for name, _ in base_layers(unet):
        try:
            table[namer(name)] = name
        except (ValueError, KeyError):
            continue
    return table


def te_name_table(encoder: torch.nn.Module, prefix: str) -> dict[str, str]:
    """kohya stem -> module path for every Linear of a text encoder."""
    return {
        te_kohya_name(prefix, name): name for name, layer in base_layers(encoder) if isinstance(layer, torch.nn.Linear)
    }
