"""Prompt -> conditioning tensors for SD1.5-like (one CLIP) and SDXL-like (two CLIPs + pooled) models."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Conditioning:
    """What the UNet needs from text: per-token embeddings, and SDXL's pooled embedding."""

    hidden: torch.Tensor  # (batch, tokens, dim)
    pooled: torch.Tensor | None = None  # (batch, dim) for SDXL-like models

    def index(self, idx: list[int]) -> Conditioning:
        """Rows `idx` of this conditioning."""
        return Conditioning(self.hidden[idx], None if self.pooled is None else self.pooled[idx])


def encode_text(tokenizers: list, encoders: list[torch.nn.Module], prompts: list[str]) -> Conditioning:
    """Encode prompts the way the pipelines do: last layer for SD1.5, penultimate + pooled for SDXL."""
    device = next(encoders[0].parameters()).device
    if len(encoders) == 1:
        ids = _ids(tokenizers[0], prompts, device)
        return Conditioning(encoders[0](ids)[0])
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
        out = encoder(_ids(tokenizer, prompts, device), output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        if hasattr(out, "text_embeds"):
            pooled = out.text_embeds
    return Conditioning(torch.cat(hidden, dim=-1), pooled)


def _ids(tokenizer, prompts: list[str], device: torch.device) -> torch.Tensor:
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def sdxl_time_ids(
    original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]
) -> torch.Tensor:
    """SDXL's micro-conditioning vector (original h,w; crop top,left; target h,w)."""
    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)
