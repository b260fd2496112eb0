"""What every denoiser adapter offers, and the pieces the transformer families share."""

from __future__ import annotations

import math
import re

import torch

from lorastudio.engine.models.families import target_patterns

# One prompt's conditioning: named tensors with a batch dimension of 1 (lengths may differ between prompts).
Cond = dict[str, torch.Tensor]


class Denoiser:
    """A family's denoiser as the training loop and the sampler see it."""

    patch = 1  # latent pixels per image token along each side (2 for the packed transformer families)

    def __init__(self, base, family) -> None:
        self.base, self.family, self.pipe = base, family, base.pipe

    @property
    def module(self) -> torch.nn.Module:
        """The denoiser network (UNet or transformer)."""
        return self.base.denoiser

    def encode(self, prompts: list[str]) -> list[Cond]:
        """Each prompt's conditioning, as the family's pipeline encodes it."""
        raise NotImplementedError

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, h, w) of the latents of a height x width image."""
        factor = self.pipe.vae_scale_factor
        return self.family.latent_channels, height // factor, width // factor

    def to_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE-encode pixels in [-1, 1] to normalized latents (the distribution's mode: deterministic)."""
        return encode_latents(self.pipe.vae, pixels)

    @torch.no_grad()
    def to_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents back to pixels in [-1, 1]."""
        vae = self.pipe.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        scaled = latents.to(vae.device, vae.dtype) / vae.config.scaling_factor + shift
        return vae.decode(scaled, return_dict=False)[0].float().clamp(-1, 1)

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, conds: list[Cond], *, guidance: float | None = None, extra=None
    ) -> torch.Tensor:
        """The denoiser's prediction for latents x (B, C, h, w) at t (B,): noise or velocity per its objective."""
        raise NotImplementedError

    def uses_cfg(self, scale: float) -> bool:
        """Whether the family's pipeline runs classifier-free guidance at this scale (a scale of 1 or less
        is the conditional prediction alone in most of them)."""
        return scale > 1

    def combine_cfg(self, uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
        """The guided prediction from the unconditional and conditional ones, as the family's pipeline mixes them."""
        return uncond + scale * (cond - uncond)

    def sample_shift(self, height: int, width: int, steps: int) -> float:
        """The timestep shift the family's pipeline samples with at this size and step count (the training
        shift unless the pipeline computes its own)."""
        return self.flow_shift(height, width)

    def flow_shift(self, height: int, width: int) -> float:
        """The flow-matching timestep shift at this image size, from the model's own scheduler config: fixed
        (`shift`), or dynamic, growing with the image token count (mu linear in it between base and max
        sequence lengths, shift = e^mu), as FLUX's and Qwen-Image's pipelines compute it."""
        config = self.pipe.scheduler.config
        if not config.get("use_dynamic_shifting"):
            return float(config.get("shift", 1.0))
        _, h, w = self.latent_shape(height, width)
        tokens = (h // self.patch) * (w // self.patch)
        lo, hi = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        return math.exp(base_shift + (max_shift - base_shift) * (tokens - lo) / (hi - lo))


@torch.no_grad()
def encode_latents(vae: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """VAE-encode a pixel batch to normalized latents ((mode - shift) * scale), in fp32."""
    dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((dist.mode() - shift) * vae.config.scaling_factor).float()


def pack(x: torch.Tensor, p: int = 2) -> torch.Tensor:
    """(B, C, h, w) latents -> (B, h/p * w/p, C*p*p) image tokens, each a p x p patch (row-major)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpack(tokens: torch.Tensor, h: int, w: int, p: int = 2) -> torch.Tensor:
    """Image tokens back to (B, C, h, w) latents (the inverse of pack)."""
    b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.view(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def stack(conds: list[Cond], key: str) -> torch.Tensor:
    """One conditioning tensor of a batch (all prompts of equal length, as padded encoders give)."""
    return torch.cat([c[key] for c in conds])


def lora_targets(module: torch.nn.Module, family, target: str) -> list[str]:
    """Module paths of the denoiser's Linear/Conv2d layers that get a LoRA for --target (the family's patterns)."""
    patterns = [re.compile(p) for p in target_patterns(family, target)]
    return [
        name
        for name, mod in module.named_modules()
        if isinstance(mod, torch.nn.Linear | torch.nn.Conv2d) and any(p.search(name) for p in patterns)
    ]
