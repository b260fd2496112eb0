"""What a base's family allows a run, checked before anything is loaded, and the settings that size its memory."""

from __future__ import annotations

from lorastudio.engine.models.families import Family, full_size_families
from lorastudio.engine.training.config import TrainConfig
from lorastudio.errors import Invalid


def check_family_settings(cfg: TrainConfig, family: Family | None) -> None:
    """Refuse settings the base's family cannot use, before anything is loaded."""
    if family is None:
        return
    if family.is_flow and cfg.train_text_encoder:
        raise Invalid(
            f"{family.label} LoRAs train the transformer only (its text encoders are too big to gain from it, "
            "and no trainer of the family trains them); turn off $train_text_encoder",
            setting="train_text_encoder",
        )
    if family.is_flow and cfg.bucket_step % 16:
        raise Invalid(
            f"{family.label} packs latents in 2x2 patches, so its buckets step by multiples of 16 pixels; "
            f"the bucket step is {cfg.bucket_step}: use {max(16, cfg.bucket_step // 16 * 16)}"
        )
    if not family.is_flow and cfg.quantize_base != "none":
        raise Invalid(
            f"$quantize_base is for the big transformer families ({_flow_labels()}); a {family.label} base fits "
            "without it: set it to none",
            setting="quantize_base",
        )
    if not family.is_flow and cfg.blocks_to_swap:
        raise Invalid(
            f"$blocks_to_swap moves transformer blocks; a {family.label} base has none: set it to 0",
            setting="blocks_to_swap",
        )


def _flow_labels() -> str:
    return ", ".join(f.label for f in full_size_families() if f.is_flow)


def memory_settings(cfg: TrainConfig) -> dict:
    """The settings of a run that decide its device memory (models/memory.py)."""
    return {
        "resolution": cfg.resolution,
        "batch_size": cfg.batch_size,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "quantize_base": cfg.quantize_base,
        "blocks_to_swap": cfg.blocks_to_swap,
    }
