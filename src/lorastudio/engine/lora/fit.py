"""Fit checks between a LoRA file and a loaded base model, done before anything is applied.

Whether a LoRA fits is decided from the base model actually loaded: every module the LoRA names must
exist there with the shapes its weights expect (a fused stem's: the sum of its layers' output rows).
A family label in the file is only used to name it in the message; a file from another trainer with no
(or another) label still fits when its shapes do. On SD bases, modules may be spelled any way diffusers'
own kohya loader reads them (the loader applies the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from lorastudio.config import Settings
from lorastudio.engine.lora.file import LoraFile, read_lora
from lorastudio.engine.lora.keys import te_kohya_prefix, te_name_table, unet_name_table
from lorastudio.engine.lora.layouts import SD_LAYOUTS, Group, layer_of, layout_name, stem_groups
from lorastudio.engine.lora.layouts import text_encoders_of as _encoders
from lorastudio.engine.models.base import LoadedBase, load_base_model
from lorastudio.engine.models.families import family_label
from lorastudio.errors import FamilyMismatch


class Expected(NamedTuple):
    """What a stem's LoRA must produce in the loaded base."""

    shape: tuple[int, ...]  # (output rows, input features, *kernel) of the layer, rows summed over a fused group
    parts: int  # layers the stem covers; more than one: fused along the output rows


def stem_paths(base: LoadedBase) -> dict[str, tuple[torch.nn.Module, str]]:
    """kohya stem -> (denoiser or text encoder, path of the layer in it) for every stem naming ONE layer
    (the hot swap copies into those); the path stays valid when peft wraps the layer."""
    return {stem: group[0] for stem, group in stem_groups(base).items() if len(group) == 1}


def module_table(base: LoadedBase, groups: dict[str, Group] | dict | None = None) -> dict[str, Expected]:
    """kohya stem -> the shape its LoRA must produce in this base (UNet/transformer and text encoders).
    groups: stem_groups (or stem_paths) of this base, when the caller keeps them."""
    table = {}
    for stem, group in (stem_groups(base) if groups is None else groups).items():
        layers = [layer_of(owner, path) for owner, path in ([group] if isinstance(group, tuple) else group)]
        first = tuple(layers[0].weight.shape)
        table[stem] = Expected((sum(int(x.weight.shape[0]) for x in layers), *first[1:]), len(layers))
    return table


def spellings(base: LoadedBase) -> dict[str, str]:
    """Other kohya spellings that diffusers' kohya loader maps to a module of this SD base -> our stem for it:
    what diffusers' own convert_state_dict_to_kohya writes (diffusers UNet names on SDXL, lora_te1_ for a
    single text encoder) and text-encoder names without transformers 4's text_model level. The transformer
    families' other spellings are converted when the file is read (lora/layouts/foreign.py)."""
    layout = layout_name(base.family)
    if layout not in SD_LAYOUTS:
        return {}
    sdxl = layout == "kohya-sgm"
    unet = base.denoiser
    out: dict[str, str] = {}
    if sdxl:
        sgm = {path: stem for stem, path in unet_name_table(unet, True).items()}
        out |= {stem: sgm[path] for stem, path in unet_name_table(unet, False).items() if path in sgm}
    for i, encoder in enumerate(_encoders(base)):
        prefix = te_kohya_prefix(i, sdxl)
        # diffusers reads lora_te1_ as the first encoder, which for a single-encoder base kohya spells lora_te_
        prefixes = [prefix] if sdxl else [prefix, "lora_te1_"]
        for stem in te_name_table(encoder, prefix):
            rest = stem.removeprefix(prefix)
            for other in (p + r for p in prefixes for r in (rest, rest.removeprefix("text_model_"))):
                if other != stem:
                    out[other] = stem
    return out


def misfits(lora: LoraFile, table: dict[str, Expected], aliases: dict[str, str] | None = None) -> list[str]:
    """Stems of the LoRA that name no module of the base, or whose weights do not fit its shape."""
    bad = []
    for stem in lora.stems:
        expected = table.get(stem)
        if expected is None and aliases:
            expected = table.get(aliases.get(stem, ""))
        if expected is None:
            bad.append(stem)
            continue
        down = lora.tensors[f"{stem}.lora_down.weight"]
        up = lora.tensors[f"{stem}.lora_up.weight"]
        shape = expected.shape
        if (
            down.shape[1] != shape[1]
            or up.shape[0] != shape[0]
            or len(shape) != down.ndim
            and not (len(shape) == 4 and down.ndim == 2)  # a 1x1 conv stored as a Linear's 2-D weight
        ):
            bad.append(stem)
    return bad


def check_fits(
    lora: LoraFile,
    base: LoadedBase,
    table: dict[str, Expected] | None = None,
    aliases: dict[str, str] | None = None,
) -> None:
    """Raise FamilyMismatch, naming both families, unless every module of the LoRA fits the base
    (table and aliases: module_table and spellings of this base, when the caller keeps them)."""
    bad = misfits(lora, module_table(base) if table is None else table, spellings(base) if aliases is None else aliases)
    if not bad:
        return
    family = lora.info.family
    lora_label = family_label(family) if family and family != base.family else "another model family"
    raise FamilyMismatch(
        f"this LoRA was trained for {lora_label}, but the base model is {family_label(base.family)} "
        f"({len(bad)} of {len(lora.stems)} modules do not fit, e.g. {bad[0][:80]}); use a base model of the "
        "LoRA's family or a LoRA trained for this one"
    )


def check_lora_fits(file: Path, base_spec: str, settings: Settings) -> LoraFile:
    """Load the base model named by base_spec and check that the LoRA file fits it."""
    lora = read_lora(file)
    check_fits(lora, load_base_model(base_spec, settings))
    return lora
