"""Fit checks between a LoRA file and a base model, done before anything is applied."""

from __future__ import annotations

from pathlib import Path

import torch

from lorastudio.config import Settings
from lorastudio.engine.lora.file import LoraFile, check_compatible, read_lora
from lorastudio.engine.lora.keys import unet_name_table
from lorastudio.engine.models.basemodel import BaseModel, is_sdxl_like, load_base_model


def unet_module_table(base: BaseModel) -> dict[str, torch.nn.Module]:
    """kohya stem -> module of the base model's UNet."""
    table = unet_name_table(base.unet, is_sdxl_like(base.family))
    modules = {stem: base.unet.get_submodule(path) for stem, path in table.items()}
    return {stem: getattr(m, "base_layer", m) for stem, m in modules.items()}  # the layer under a LoRA wrapper


def check_fits(lora: LoraFile, base: BaseModel) -> None:
    """Raise FamilyMismatch unless every UNet module of the LoRA exists in the base with matching shapes."""
    check_compatible(lora, base.family, unet_module_table(base))


def check_lora_fits(file: Path, base_spec: str, settings: Settings) -> LoraFile:
    """Load the base model named by base_spec and check that the LoRA file fits it."""
    lora = read_lora(file)
    base = load_base_model(
        base_spec,
        models_dir=settings.models_dir,
        single_file_config=settings.single_file_config,
        allow_downloads=settings.allow_downloads,
    )
    check_fits(lora, base)
    return lora
