"""The LoRA adapters a training adds to its frozen base: on the denoiser's target layers, and on the text
encoders' when they train too."""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model

from lorastudio.engine.lora.keys import text_encoder_targets
from lorastudio.engine.models.denoisers.common import lora_targets
from lorastudio.engine.training.config import TrainConfig


def add_adapters(cfg: TrainConfig, denoiser, encoders, family) -> None:
    """LoRA adapters on the denoiser's target layers (and the text encoders' when they train), drawn from the seed."""
    torch.manual_seed(cfg.seed)
    denoiser.add_adapter(
        LoraConfig(
            r=cfg.network_dim,
            lora_alpha=cfg.network_alpha,
            target_modules=lora_targets(denoiser, family, cfg.target),
            init_lora_weights="gaussian",
        )
    )
    if cfg.train_text_encoder:
        for encoder in encoders:
            # peft directly: transformers' own add_adapter demands a newer peft than diffusers does.
            te_config = LoraConfig(
                r=cfg.network_dim,
                lora_alpha=cfg.network_alpha,
                target_modules=text_encoder_targets(encoder, cfg.target),
                init_lora_weights="gaussian",
            )
            inject_adapter_in_model(te_config, encoder)
