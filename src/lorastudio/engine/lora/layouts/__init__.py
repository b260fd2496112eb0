"""LoRA key layouts, one per `Family.key_layout`: which kohya stem names which layers of a loaded base.

A stem names a GROUP: the ordered (owner module, path) layers whose output rows its LoRA produces. SD's
stems name one layer each (keys.py); FLUX's fuse several (the double blocks' q/k/v, the single blocks'
q/k/v/MLP projection). From the groups come the kohya tensors of a trained adapter (export_tensors), the
diffusers/peft state a pipeline loads without conversion (to_diffusers_state), and the fit check's shapes.
"""

from __future__ import annotations

import torch

from lorastudio.engine.lora.keys import base_layers, te_kohya_prefix, te_name_table, unet_name_table
from lorastudio.engine.lora.layouts import flux1, flux2, qwen_image, z_image
from lorastudio.engine.lora.layouts.fused import fuse, split_fused
from lorastudio.engine.lora.layouts.rules import Layout
from lorastudio.engine.models.families import get_family
from lorastudio.errors import Unsupported

Group = list[tuple[torch.nn.Module, str]]

SD_LAYOUTS = ("kohya-sd", "kohya-sgm")
TRANSFORMER_LAYOUTS: dict[str, Layout] = {m.LAYOUT.name: m.LAYOUT for m in (flux1, flux2, qwen_image, z_image)}
# families.py rows written before these layouts were read from their trainers; the names say whose layout it is.
# FLUX.1's CLIP-L as sd-scripts' lora_flux.py names it (its T5 would be lora_te3_, which nothing here trains).
_TE_PREFIXES = {"kohya-flux1": ("lora_te1_",)}


def layout_name(family: str | None) -> str:
    """The key layout of a family (an unknown one reads as SD1.5's)."""
    row = get_family(family)
    return row.key_layout if row else "kohya-sd"


def transformer_layout(family: str | None) -> Layout | None:
    """The transformer layout of a family, or None for the SD ones."""
    return TRANSFORMER_LAYOUTS.get(layout_name(family))


def text_encoders_of(base) -> list[torch.nn.Module]:
    """The loaded base's text encoders that exist (a pipeline built without one holds None)."""
    return [e for e in base.text_encoders if e is not None]


def stem_groups(base) -> dict[str, Group]:
    """kohya stem -> the layers (owner, path) its LoRA covers, in the order their rows are stacked; the paths
    stay valid when peft wraps the layers."""
    layout = layout_name(base.family)
    denoiser = base.denoiser
    groups: dict[str, Group] = {}
    if layout in SD_LAYOUTS:
        sgm = layout == "kohya-sgm"
        groups = {stem: [(denoiser, path)] for stem, path in unet_name_table(denoiser, sgm).items()}
        prefixes = [te_kohya_prefix(i, sgm) for i in range(len(text_encoders_of(base)))]
    else:
        rules = TRANSFORMER_LAYOUTS[layout]
        slots: dict[str, list] = {}
        for path, layer in base_layers(denoiser):
            named = rules.stem(path) if isinstance(layer, torch.nn.Linear) else None
            if named:
                stem, slot, count = named
                slots.setdefault(stem, [None] * count)[slot] = (denoiser, path)
        # a fused layer is named only when the model has all its parts
        groups = {stem: list(parts) for stem, parts in slots.items() if all(parts)}
        prefixes = list(_TE_PREFIXES.get(layout, ()))
    for encoder, prefix in zip(text_encoders_of(base), prefixes, strict=False):  # only the named ones
        if type(encoder).__name__.startswith("CLIPText"):
            groups |= {stem: [(encoder, path)] for stem, path in te_name_table(encoder, prefix).items()}
    return groups


def layer_of(owner: torch.nn.Module, path: str) -> torch.nn.Module:
    """The base layer at path, seen under a peft wrapper."""
    module = owner.get_submodule(path)
    return getattr(module, "base_layer", module)


def _trained(owner: torch.nn.Module, path: str) -> tuple[torch.Tensor, torch.Tensor, float, float] | None:
    """(lora_A, lora_B, scale, lora_alpha) of the adapter peft injected at path, or None if it has none."""
    module = owner.get_submodule(path)
    lora_a = getattr(module, "lora_A", None)
    if not lora_a:
        return None
    active = [a for a in getattr(module, "active_adapters", ()) if a in lora_a] or list(lora_a)
    name = active[0]
    a, b = module.lora_A[name].weight.detach(), module.lora_B[name].weight.detach()
    return a, b, float(module.scaling[name]), float(module.lora_alpha[name])


def export_tensors(base, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The peft-injected LoRA of the base in its family's standard kohya layout, alphas included."""
    out: dict[str, torch.Tensor] = {}
    for stem, group in stem_groups(base).items():
        parts = [_trained(owner, path) for owner, path in group]
        if all(p is None for p in parts):
            continue
        if len(group) == 1:
            down, up, scale, lora_alpha = parts[0]
            rank = int(down.shape[0])
            # the configured alpha when it gives the scale exactly (files say 16, not 15.999999); rsLoRA's otherwise
            alpha = lora_alpha if lora_alpha / rank == scale else scale * rank
        else:
            rows = [int(layer_of(owner, path).weight.shape[0]) for owner, path in group]
            down, up, alpha = fuse([p and p[:3] for p in parts], rows)
        out[f"{stem}.lora_down.weight"] = down.to(dtype)
        out[f"{stem}.lora_up.weight"] = up.to(dtype)
        out[f"{stem}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def alpha_folded(lora) -> dict[str, torch.Tensor]:
    """The kohya tensors with each module's alpha/rank folded into its up weight and the alphas dropped.

    diffusers' kohya loader (0.42) misnames the alphas of attention modules, so a file whose modules
    have different alphas would be applied with the most common one everywhere; without alpha keys it
    scales every module by 1, which the folded up weights make right."""
    tensors = dict(lora.tensors)
    for stem in lora.stems:
        alpha = tensors.pop(f"{stem}.alpha", None)
        if alpha is None:
            continue
        up = tensors[f"{stem}.lora_up.weight"]
        rank = tensors[f"{stem}.lora_down.weight"].shape[0]
        tensors[f"{stem}.lora_up.weight"] = (up.float() * (float(alpha) / rank)).to(up.dtype)
    return tensors


def to_diffusers_state(lora, base) -> dict[str, torch.Tensor]:
    """What `pipe.load_lora_weights(state, adapter_name=...)` of the base's pipeline loads with no conversion:
    SD keeps kohya keys (alpha folded: diffusers' kohya loader also reads the other spellings SD files use);
    the transformer families get peft's `transformer.<path>.lora_A/B.weight`, fused layers split again."""
    if layout_name(base.family) in SD_LAYOUTS:
        return alpha_folded(lora)
    return diffusers_tensors(lora, base)


def diffusers_tensors(lora, base, groups: dict[str, Group] | None = None) -> dict[str, torch.Tensor]:
    """The LoRA as diffusers' save_lora_weights writes it (`transformer.` / `unet.` / `text_encoder.` +
    module path + `.lora_A.weight` / `.lora_B.weight`), alpha/rank folded into B, fused layers split."""
    groups = stem_groups(base) if groups is None else groups
    denoiser = base.denoiser
    component = {id(denoiser): "unet" if layout_name(base.family) in SD_LAYOUTS else "transformer"}
    for i, encoder in enumerate(text_encoders_of(base)):
        component[id(encoder)] = "text_encoder" if i == 0 else f"text_encoder_{i + 1}"
    out: dict[str, torch.Tensor] = {}
    for stem in lora.stems:
        group = groups.get(stem)
        if group is None:
            raise Unsupported(
                f"{stem[:80]} names no layer of this base model; check the LoRA fits it first "
                "(lorastudio lora inspect FILE --base BASE)"
            )
        down, up = lora.tensors[f"{stem}.lora_down.weight"], lora.tensors[f"{stem}.lora_up.weight"]
        alpha = float(lora.tensors[f"{stem}.alpha"]) if f"{stem}.alpha" in lora.tensors else float(down.shape[0])
        if len(group) == 1:
            parts = [(down, up, alpha)]
        else:
            rows = [int(layer_of(owner, path).weight.shape[0]) for owner, path in group]
            parts = split_fused(down, up.reshape(up.shape[0], -1), alpha, rows)
        for (owner, path), (a, b, part_alpha) in zip(group, parts, strict=True):
            if not a.any() and not b.any():
                continue  # a part the fused file leaves at zero (a layer it did not train)
            scale = part_alpha / a.shape[0]
            key = f"{component[id(owner)]}.{path}"
            out[f"{key}.lora_A.weight"] = a
            out[f"{key}.lora_B.weight"] = (b.float() * scale).to(b.dtype)
    return out
