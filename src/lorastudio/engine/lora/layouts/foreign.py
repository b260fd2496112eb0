"""Import transformer-family LoRAs that other trainers write with dotted module paths into our kohya form.

Read from their writers: ai-toolkit saves peft keys of its model with `transformer.` (FLUX.1) or, through
convert_lora_weights_before_save, `diffusion_model.` (FLUX.2 with BFL's module names, Qwen-Image and Z-Image
with diffusers'); diffusers' save_lora_weights writes `transformer.<path>.lora_A/B.weight`; peft's own
`base_model.model.` prefix and `.lora_down/.lora_up/.alpha` parts (ComfyUI-style exports) are read too.
Parts that diffusers keeps apart and the family's layout fuses (FLUX's q/k/v) are fused as sd-scripts does.
"""

from __future__ import annotations

import re

import torch

from lorastudio.engine.lora.layouts import TRANSFORMER_LAYOUTS, layout_name
from lorastudio.engine.lora.layouts.fused import fuse
from lorastudio.engine.lora.layouts.rules import Layout, native_stem
from lorastudio.errors import Invalid, Unsupported

_PREFIXES = ("base_model.model.", "transformer.", "diffusion_model.")
_ROOTS = (
    "transformer_blocks",
    "single_transformer_blocks",
    "double_blocks",
    "single_blocks",
    "layers",
    "noise_refiner",
    "context_refiner",
)
# BFL's own module names (ai-toolkit's FLUX.2, ComfyUI exports): the kohya stem is the path itself.
_BFL = re.compile(
    r"(double_blocks|single_blocks)\.\d+\..+|img_in|txt_in|(time_in|vector_in|guidance_in)\.(in|out)_layer"
    r"|final_layer\.linear|(double_stream_modulation_(img|txt)|single_stream_modulation)\.lin"
)
_PART = re.compile(
    r"^(?P<path>.+?)\.(?:lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight|lora_(?P<du>down|up)\.weight"
    r"|lora\.(?P<dot>down|up)\.weight|(?P<alpha>alpha))$"
)


def is_transformer_file(tensors: dict[str, torch.Tensor]) -> bool:
    """True for dotted LoRA keys of a transformer family (no SD UNet/CLIP part among them)."""
    roots = {_path(key).split(".", 1)[0] for key in tensors}
    prefixed = any(key.startswith(("transformer.", "diffusion_model.")) for key in tensors)
    sd = roots & {"unet", "text_encoder", "text_encoder_2", "down_blocks", "up_blocks", "mid_block", "text_model"}
    return not sd and (prefixed or bool(roots & set(_ROOTS)))


def _path(key: str) -> str:
    for prefix in _PREFIXES:
        key = key.removeprefix(prefix)
    return key


def _parts(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """module path -> {down, up, alpha}; Unsupported for what a kohya LoRA cannot hold."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name = _path(key)
        if "lora_magnitude_vector" in name or "dora_scale" in name:
            raise Unsupported(
                f"this is a DoRA (weight-decomposed LoRA, e.g. {key[:80]}); a kohya LoRA cannot hold its magnitudes "
                "- merge it into the base model (peft's merge_and_unload) or use it in a tool that supports DoRA"
            )
        match = _PART.match(name)
        if match is None:
            raise Unsupported(
                f"this LoRA holds weights that are no LoRA down/up pair or alpha (e.g. {key[:80]}); applying only "
                "the rest would silently change what it does - convert it to a plain LoRA in the tool that made it"
            )
        part = "alpha" if match["alpha"] else {"A": "down", "B": "up"}.get(match["ab"]) or match["du"] or match["dot"]
        parts = modules.setdefault(match["path"], {})
        if part in parts:
            raise Invalid(f"this LoRA holds two {part} weights for {match['path'][:80]}; it is damaged")
        parts[part] = tensor
    return modules


def choose_layout(paths: list[str], family: str | None) -> Layout:
    """The transformer layout that names every module path of a file; the file's own family breaks a tie
    (Qwen-Image first otherwise: an attention-only file names both it and FLUX's double blocks)."""
    layouts = TRANSFORMER_LAYOUTS
    known = [p for p in paths if not _BFL.fullmatch(p)]
    fits = [lay for lay in layouts.values() if all(lay.stem(p) for p in known)]
    if len(known) < len(paths):  # BFL's names: a FLUX file
        fits = [lay for lay in fits if lay.name in ("kohya-flux1", "kohya-flux2")]
    if not fits:
        example = next((p for p in known if not any(lay.stem(p) for lay in layouts.values())), known[0])
        raise Unsupported(
            f"this LoRA names {example[:80]}, which is no layer of a FLUX.1, FLUX.2, Qwen-Image or Z-Image "
            "transformer LoRA Studio knows; use it with the model it was made for"
        )
    claimed = [lay for lay in fits if family and lay.name == layout_name(family)]
    order = ("kohya-qwen-image", "kohya-flux1", "kohya-flux2", "kohya-z-image")
    return (claimed or sorted(fits, key=lambda lay: order.index(lay.name)))[0]


def transformer_to_kohya(tensors: dict[str, torch.Tensor], family: str | None, default_alpha) -> dict:
    """Kohya tensors of a dotted transformer LoRA. default_alpha(path, rank): the alpha of a module the file
    gives none (diffusers' lora_adapter_metadata, else rank: scale 1, as diffusers loads such files)."""
    modules = _parts(tensors)
    layout = choose_layout(list(modules), family)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, tuple[int, dict[int, tuple]]] = {}
    for path, parts in modules.items():
        if "down" not in parts and "up" not in parts:
            continue  # an alpha with no weights changes nothing
        if "down" not in parts or "up" not in parts:
            raise Invalid(f"this LoRA is incomplete: {path[:80]} has a lora_{'up' if 'up' in parts else 'down'} only")
        down, up = parts["down"], parts["up"]
        if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
            raise Invalid(f"this LoRA is damaged: {path[:80]} has down/up weights of mismatched rank")
        rank = int(down.shape[0])
        if "alpha" in parts and parts["alpha"].numel() != 1:
            raise Invalid(f"this LoRA is damaged: the alpha of {path[:80]} is not one number")
        alpha = float(parts["alpha"].reshape(())) if "alpha" in parts else float(default_alpha(path, rank))
        stem, slot, count = (native_stem(path), 0, 1) if _BFL.fullmatch(path) else layout.stem(path)
        if count == 1:
            if f"{stem}.lora_down.weight" in out:
                raise Invalid(f"this LoRA holds two weights for {stem[:80]} (spelled two ways); it is damaged")
            out[f"{stem}.lora_down.weight"] = down
            out[f"{stem}.lora_up.weight"] = up
            out[f"{stem}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
        else:
            fused.setdefault(stem, (count, {}))[1][slot] = (down, up, alpha / rank)
    for stem, (count, slots) in fused.items():
        rows = layout.slot_rows(count, {i: int(p[1].shape[0]) for i, p in slots.items()})
        if f"{stem}.lora_down.weight" in out:
            raise Invalid(f"this LoRA holds two weights for {stem[:80]} (fused and apart); it is damaged")
        down, up, alpha = fuse([slots.get(i) for i in range(count)], rows)
        out[f"{stem}.lora_down.weight"] = down
        out[f"{stem}.lora_up.weight"] = up
        out[f"{stem}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    return out
