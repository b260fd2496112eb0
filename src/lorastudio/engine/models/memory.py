"""How much device memory a training needs, from the family table's figures and the levers that lower it;
the trainer refuses a run that cannot fit before it loads anything, and the studio routes jobs with it."""

from __future__ import annotations

from lorastudio.engine.models.families import Family
from lorastudio.errors import OutOfMemory


def training_need_gb(
    family: Family,
    *,
    resolution: int,
    batch_size: int,
    gradient_checkpointing: bool = False,
    quantize_base: str = "none",
    blocks_to_swap: int = 0,
    full_precision: bool = False,
) -> float | None:
    """Device memory (GB) a LoRA training on this family takes; None for a family without figures. The
    figures are for bf16/fp16 weights; full precision (fp32) doubles the denoiser's."""
    need = family.train_memory
    if need is None:
        return None
    weights = need.denoiser_gb * (2 if full_precision else 1)
    fixed = need.fixed_gb + (weights - need.denoiser_gb)
    if quantize_base != "none":
        fixed -= weights / 2  # 8-bit weights: half of bf16's
        weights /= 2
    if blocks_to_swap and need.blocks:
        fixed -= weights * min(blocks_to_swap, need.blocks) / need.blocks
    activations = need.per_image_gb * batch_size * (resolution / family.default_size) ** 2
    if gradient_checkpointing:
        activations /= 3  # recomputed in the backward pass instead of kept
    return fixed + activations


def check_training_fits(family: Family, device_gb: float, device: str, **settings) -> None:
    """Refuse, before any work, a training that cannot fit `device_gb`, naming what would make it fit."""
    need = training_need_gb(family, **settings)
    if need is None or need <= device_gb:
        return
    turn_on = []
    if not settings.get("gradient_checkpointing"):
        turn_on.append("$gradient_checkpointing")
    if family.train_memory.denoiser_gb and settings.get("quantize_base", "none") == "none":
        turn_on.append("$quantize_base int8")
    if family.train_memory.blocks and settings.get("blocks_to_swap", 0) < family.train_memory.blocks - 1:
        turn_on.append(f"$blocks_to_swap (up to {family.train_memory.blocks - 1})")
    advice = f"turn on {', '.join(turn_on)}, or lower " if turn_on else "lower "
    raise OutOfMemory(
        f"this {family.label} training needs about {need:.0f} GB of device memory and {device} has "
        f"{device_gb:.0f} GB; {advice}$resolution or $batch_size",
        setting=(turn_on[0][1:].split(" ")[0] if turn_on else "resolution"),
    )
