"""Qwen-Image: Qwen2.5-VL's last hidden states into an MMDiT over 2x2-packed latents of a video VAE.

Called as QwenImagePipeline calls it: the prompt in the pipeline's system template with the template's 34
prefix tokens dropped, each prompt at its own length (a batch is padded and the padding masked, as the
pipeline's own batches are), timestep = sigma, the image grid as `img_shapes` for the rope, no guidance
input. "True CFG" rescales the guided prediction, token by token, to the conditional one's norm.
The VAE is a causal 3-D one: a picture is a one-frame video, normalized by its per-channel
latents_mean/latents_std."""

from __future__ import annotations

import torch

from lorastudio.engine.models.denoisers.common import Cond, Denoiser, pack, unpack


class QwenImageDenoiser(Denoiser):
    """QwenImageTransformer2DModel, as QwenImagePipeline calls it."""

    patch = 2

    def encode(self, prompts: list[str]) -> list[Cond]:
        """Qwen2.5-VL's last layer per prompt, at the prompt's own token count."""
        device = next(self.pipe.text_encoder.parameters()).device
        tokens = self.family.text_tokens
        embeds, mask = self.pipe.encode_prompt(prompt=list(prompts), device=device, max_sequence_length=tokens)
        lengths = [embeds.shape[1]] * len(prompts) if mask is None else mask.sum(dim=1).tolist()
        return [{"hidden": embeds[i : i + 1, : int(n)]} for i, n in enumerate(lengths)]

    def to_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE mode of the one-frame video, normalized by latents_mean/std."""
        vae = self.pipe.vae
        with torch.no_grad():
            dist = vae.encode(pixels.to(vae.device, vae.dtype)[:, :, None]).latent_dist
        raw = dist.mode()[:, :, 0].float()
        mean, std = self._stats(raw.device)
        return (raw - mean) / std

    @torch.no_grad()
    def to_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents back to pixels in [-1, 1]."""
        vae = self.pipe.vae
        mean, std = self._stats(latents.device)
        raw = (latents.float() * std + mean)[:, :, None]
        return vae.decode(raw.to(vae.device, vae.dtype), return_dict=False)[0][:, :, 0].float().clamp(-1, 1)

    def _stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.pipe.vae.config
        mean = torch.tensor(config.latents_mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(config.latents_std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return mean, std

    def combine_cfg(self, uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
        """CFG, then each image token's guided vector scaled back to the conditional one's length (the
        pipeline's norm rescale, which keeps high scales from over-saturating)."""
        guided = pack(uncond + scale * (cond - uncond))
        ratio = torch.norm(pack(cond), dim=-1, keepdim=True) / torch.norm(guided, dim=-1, keepdim=True)
        return unpack(guided * ratio, cond.shape[2], cond.shape[3])

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, conds: list[Cond], *, guidance: float | None = None, extra=None
    ) -> torch.Tensor:
        """Velocity (noise - image) at sigma t for latents x (B, 16, h, w)."""
        model = self.module
        b, _, h, w = x.shape
        dtype = next(model.parameters()).dtype
        hidden, mask = collate(conds, x.device, dtype)
        out = model(
            hidden_states=pack(x).to(dtype),
            encoder_hidden_states=hidden,
            encoder_hidden_states_mask=mask,
            timestep=t.to(x.device, dtype),
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            guidance=None,
            return_dict=False,
        )[0]
        return unpack(out, h, w)


def collate(conds: list[Cond], device, dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompts of different lengths as one zero-padded batch and its mask (None when none is padded, as the
    pipeline passes it)."""
    lengths = [c["hidden"].shape[1] for c in conds]
    longest = max(lengths)
    hidden = torch.zeros(len(conds), longest, conds[0]["hidden"].shape[2], device=device, dtype=dtype)
    mask = torch.zeros(len(conds), longest, device=device, dtype=torch.long)
    for i, (c, n) in enumerate(zip(conds, lengths, strict=True)):
        hidden[i, :n] = c["hidden"][0].to(device, dtype)
        mask[i, :n] = 1
    return hidden, (None if min(lengths) == longest else mask)
