"""FLUX.2 [klein]: Qwen3's hidden states into FLUX.2's joint transformer over 2x2-patchified latents.

Called as Flux2KleinPipeline calls it: the prompt in Qwen3's chat template, padded to 512 tokens, with
layers 9, 18 and 27 side by side (the transformer sees the padding: the pipeline passes no text mask);
timestep = sigma; 4-axis position ids (t, row, col, layer) for image tokens and (0, 0, 0, i) for text;
no guidance input ([klein] has no guidance embedding: the base models run CFG, the distilled ones run
neither). Its autoencoder's batch-norm statistics normalize the PATCHIFIED latents, 128 channels of 2x2
patches; our latents are those normalized patches laid back out as (32, h, w), so every family's
latents are (C, h, w) at the VAE's resolution and the regional masks' 2x2 token patches line up."""

from __future__ import annotations

import math

import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

from lorastudio.engine.models.denoisers.common import Cond, Denoiser, pack, stack, unpack


class Flux2Denoiser(Denoiser):
    """Flux2Transformer2DModel, as Flux2KleinPipeline calls it."""

    patch = 2

    def encode(self, prompts: list[str]) -> list[Cond]:
        """Qwen3's stacked hidden states per prompt (512 tokens each, padding included)."""
        device = next(self.pipe.text_encoder.parameters()).device
        tokens = self.family.text_tokens
        embeds, _ = self.pipe.encode_prompt(prompt=list(prompts), device=device, max_sequence_length=tokens)
        return [{"hidden": embeds[i : i + 1]} for i in range(len(prompts))]

    def to_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE mode, normalized per patch channel by the VAE's batch-norm statistics."""
        vae = self.pipe.vae
        with torch.no_grad():
            raw = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode().float()
        mean, std = self._bn_stats(raw.device)
        return unpack_channels((pack_channels(raw) - mean) / std)

    @torch.no_grad()
    def to_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents back to pixels in [-1, 1]."""
        vae = self.pipe.vae
        mean, std = self._bn_stats(latents.device)
        raw = unpack_channels(pack_channels(latents.float()) * std + mean)
        return vae.decode(raw.to(vae.device, vae.dtype), return_dict=False)[0].float().clamp(-1, 1)

    def _bn_stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        bn, eps = self.pipe.vae.bn, self.pipe.vae.config.batch_norm_eps
        mean = bn.running_mean.view(1, -1, 1, 1).to(device, torch.float32)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1).to(device, torch.float32) + eps)
        return mean, std

    def uses_cfg(self, scale: float) -> bool:
        """The base models guide above 1; the step-distilled ones never (their pipeline ignores the scale)."""
        return scale > 1 and not self.pipe.config.get("is_distilled", False)

    def sample_shift(self, height: int, width: int, steps: int) -> float:
        """BFL's empirical mu for this token count and step count (the pipeline's compute_empirical_mu), which
        shifts short schedules harder; training keeps the scheduler's linear shift (musubi-tuner's flux2_shift)."""
        _, h, w = self.latent_shape(height, width)
        return math.exp(compute_empirical_mu((h // 2) * (w // 2), steps))

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, conds: list[Cond], *, guidance: float | None = None, extra=None
    ) -> torch.Tensor:
        """Velocity (noise - image) at sigma t for latents x (B, 32, h, w)."""
        model = self.module
        _, _, h, w = x.shape
        dtype = next(model.parameters()).dtype
        hidden = stack(conds, "hidden").to(x.device, dtype)
        out = model(
            hidden_states=pack(x).to(dtype),
            encoder_hidden_states=hidden,
            timestep=t.to(x.device, dtype),
            img_ids=_image_ids(h // 2, w // 2, x.device),
            txt_ids=_text_ids(hidden.shape[1], x.device),
            guidance=None,
            return_dict=False,
        )[0]
        return unpack(out, h, w)


def pack_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 4C, h/2, w/2): each 2x2 patch as channels, FLUX.2's patchify order (c, row, col)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unpack_channels(x: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_channels."""
    b, c4, h2, w2 = x.shape
    x = x.view(b, c4 // 4, 2, 2, h2, w2).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, h2 * 2, w2 * 2)


def _image_ids(rows: int, cols: int, device) -> torch.Tensor:
    """FLUX.2's position ids of the image tokens: (t=0, row, col, layer=0), row-major."""
    zero = torch.zeros(1, dtype=torch.long)
    return torch.cartesian_prod(zero, torch.arange(rows), torch.arange(cols), zero).to(device)


def _text_ids(length: int, device) -> torch.Tensor:
    """FLUX.2's position ids of the text tokens: (0, 0, 0, index)."""
    zero = torch.zeros(1, dtype=torch.long)
    return torch.cartesian_prod(zero, zero, zero, torch.arange(length)).to(device)
