"""Fit checks between a LoRA file and a loaded base model, done before anything is applied.

Whether a LoRA fits is decided from the base model actually loaded: every module the LoRA names must
exist there with the shapes its weights expect. A family label in the file is only used to name it in
the message; a file from another trainer with no (or another) label still fits when its shapes do.
Modules may be spelled any way diffusers' own kohya loader reads them (the loader applies the file).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lorastudio.config import Settings
from lorastudio.engine.lora.file import LoraFile, read_lora
from lorastudio.engine.lora.keys import te_kohya_prefix, te_name_table, unet_name_table
from lorastudio.engine.models.base import LoadedBase, load_base_model
from lorastudio.engine.models.families import family_label, is_sdxl_like
from lorastudio.errors import FamilyMismatch


def stem_paths(base: LoadedBase) -> dict[str, tuple[torch.nn.Module, str]]:
    """kohya stem -> (UNet or text encoder, path of the layer in it); the path stays valid when peft
    wraps the layer (the wrapper takes its place)."""
    sdxl = is_sdxl_like(base.family)
    paths = {stem: (base.unet, path) for stem, path in unet_name_table(base.unet, sdxl).items()}
    for i, encoder in enumerate(base.text_encoders):
        for stem, path in te_name_table(encoder, te_kohya_prefix(i, sdxl)).items():
            paths[stem] = (encoder, path)
    return paths


def module_table(
    base: LoadedBase, paths: dict[str, tuple[torch.nn.Module, str]] | None = None
) -> dict[str, torch.nn.Module]:
    """kohya stem -> layer of the base model (UNet and text encoders), seen under any LoRA wrapper."""
    table = {}
    for stem, (owner, path) in (paths or stem_paths(base)).items():
        module = owner.get_submodule(path)
        table[stem] = getattr(module, "base_layer", module)
    return table


def spellings(base: LoadedBase) -> dict[str, str]:
    """Other kohya spellings that diffusers' kohya loader maps to a module of this base -> our stem for it:
    what diffusers' own convert_state_dict_to_kohya writes (diffusers UNet names on SDXL, lora_te1_ for a
    single text encoder) and text-encoder names without transformers 4's text_model level."""
    sdxl = is_sdxl_like(base.family)
    out: dict[str, str] = {}
    if sdxl:
        sgm = {path: stem for stem, path in unet_name_table(base.unet, True).items()}
        out |= {stem: sgm[path] for stem, path in unet_name_table(base.unet, False).items() if path in sgm}
    for i, encoder in enumerate(base.text_encoders):
        prefix = te_kohya_prefix(i, sdxl)
        # diffusers reads lora_te1_ as the first encoder, which for a single-encoder base kohya spells lora_te_
        prefixes = [prefix] if sdxl else [prefix, "lora_te1_"]
        for stem in te_name_table(encoder, prefix):
            rest = stem.removeprefix(prefix)
            for other in (p + r for p in prefixes for r in (rest, rest.removeprefix("text_model_"))):
                if other != stem:
                    out[other] = stem
    return out


def misfits(lora: LoraFile, table: dict[str, torch.nn.Module], aliases: dict[str, str] | None = None) -> list[str]:
    """Stems of the LoRA that name no module of the base, or whose weights do not fit its shape."""
    bad = []
    for stem in lora.stems:
        module = table.get(stem)
        if module is None and aliases:
            module = table.get(aliases.get(stem, ""))
        if module is None:
            bad.append(stem)
            continue
        down = lora.tensors[f"{stem}.lora_down.weight"]
        up = lora.tensors[f"{stem}.lora_up.weight"]
        w = module.weight
        if (
            down.shape[1] != w.shape[1]
            or up.shape[0] != w.shape[0]
            or w.ndim != down.ndim
            and not (w.ndim == 4 and down.ndim == 2)
        ):
            bad.append(stem)
    return bad


def check_fits(
    lora: LoraFile,
    base: LoadedBase,
    table: dict[str, torch.nn.Module] | None = None,
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
