"""What the denoiser learns to predict: SD's noise (epsilon or v) at integer timesteps, or flow matching's
velocity at a shifted sigma. One object per run; the loop asks it for timesteps, noisy inputs, targets and
loss weights, and every draw comes from the step's own generator so a resumed run draws what an
uninterrupted one would."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler


class NoiseObjective:
    """SD1.5/SDXL: DDPM noise at t in [0, 1000), predicting epsilon or v, with optional min-SNR weights."""

    def __init__(self, scheduler_config: dict, min_snr_gamma: float | None) -> None:
        self.scheduler = DDPMScheduler.from_config(scheduler_config)
        self.v_pred = self.scheduler.config.prediction_type == "v_prediction"
        self.gamma = min_snr_gamma

    def timesteps(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """Uniform integer timesteps."""
        return torch.randint(0, len(self.scheduler), (batch,), generator=gen)

    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The latents noised to timestep t."""
        return self.scheduler.add_noise(latents, noise, t)

    def target(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noise, or v for v-prediction models."""
        return self.scheduler.get_velocity(latents, noise, t) if self.v_pred else noise

    def weights(self, t: torch.Tensor) -> torch.Tensor | None:
        """Min-SNR-gamma loss weights (Hang et al. 2023); None when gamma is off."""
        if self.gamma is None:
            return None
        ac = self.scheduler.alphas_cumprod.to(t.device)[t]
        snr = ac / (1 - ac)
        clipped = torch.clamp(snr, max=self.gamma)
        return clipped / (snr + 1) if self.v_pred else clipped / snr


class FlowObjective:
    """Rectified flow (FLUX, FLUX.2, Qwen-Image, Z-Image): x_s = (1 - s) x + s noise, target noise - x.

    Sigmas are logit-normal (sigmoid of a standard normal, SD3's and sd-scripts' `--timestep_sampling
    sigmoid`) and then shifted toward noise by the family's shift at the training size, the same shift
    the family's sampler uses (`--timestep_sampling flux_shift` in sd-scripts, ai-toolkit's shifted
    flowmatch): big images need more steps at high noise to settle their layout."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def timesteps(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """Shifted logit-normal sigmas in (0, 1)."""
        s = torch.sigmoid(torch.randn(batch, generator=gen))
        return self.shift * s / (1 + (self.shift - 1) * s)

    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The straight line from the image (sigma 0) to noise (sigma 1)."""
        s = t.to(latents.device, latents.dtype).view(-1, *([1] * (latents.ndim - 1)))
        return (1 - s) * latents + s * noise

    def target(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The line's velocity."""
        return noise - latents

    def weights(self, t: torch.Tensor) -> torch.Tensor | None:
        """Flow models train unweighted (sd-scripts' `--weighting_scheme none`)."""
        return None
