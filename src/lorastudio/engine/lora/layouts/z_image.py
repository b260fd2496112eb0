"""Z-Image: musubi-tuner's layout (networks/lora_zimage.py), which diffusers' Z-Image loader reads: diffusers'
module names after `lora_unet_` (lora_unet_layers_0_attention_to_q), nothing fused.

ComfyUI's own Z-Image model fuses q/k/v (`attention_qkv`) and names the output `attention_out`; musubi's
convert_z_image_lora_to_comfy.py writes that form, and read_lora takes it back (normalize_kohya)."""

from __future__ import annotations

import re

import torch

from lorastudio.engine.lora.layouts.rules import Layout, identity_rules

LAYOUT = Layout(
    name="kohya-z-image",
    network_module="networks.lora_zimage",
    rules=identity_rules(
        r"(layers|noise_refiner|context_refiner)\.\d+\.attention\.(to_q|to_k|to_v|to_out\.0)",
        r"(layers|noise_refiner|context_refiner)\.\d+\.feed_forward\.(w1|w2|w3)",
        r"(layers|noise_refiner)\.\d+\.adaLN_modulation\.0",
    ),
)

_COMFY = re.compile(r"^(lora_unet_(?:layers|noise_refiner|context_refiner)_\d+_attention_)(qkv|out)$")


def normalize_kohya(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI-form Z-Image stems (fused attention_qkv, attention_out) as musubi-tuner names them."""
    from lorastudio.engine.lora.layouts.fused import split_fused

    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        stem, _, part = key.partition(".")
        match = _COMFY.match(stem)
        if match is None:
            out[key] = tensor
        elif match[2] == "out":
            out[f"{match[1]}to_out_0.{part}"] = tensor
        else:
            fused.setdefault(match[1], {})[part] = tensor
    for prefix, parts in fused.items():
        if "lora_down.weight" not in parts or "lora_up.weight" not in parts:
            continue  # read_lora's pair check names what is missing
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(down.shape[0])
        rows = [up.shape[0] // 3] * 3
        for name, (a, b, part_alpha) in zip(("to_q", "to_k", "to_v"), split_fused(down, up, alpha, rows), strict=True):
            out[f"{prefix}{name}.lora_down.weight"] = a
            out[f"{prefix}{name}.lora_up.weight"] = b
            out[f"{prefix}{name}.alpha"] = torch.tensor(part_alpha)
    return out
