"""Sampling for the flow-matching families (FLUX.1, FLUX.2 [klein], Qwen-Image, Z-Image).

One loop for all four, through the family's denoiser adapter (the one training uses): Euler steps along the
flow with the model's own FlowMatchEulerDiscreteScheduler and the sigmas and shift its pipeline would use.
A distilled family (FLUX.1 [dev]) takes the guidance scale as an input; the others run classifier-free
guidance, conditional and unconditional rows in one batch.

Regional LoRAs: each region's pass keeps its own copy of every image, denoised with its own adapters and
prompt, and in the last `region_blend` of the steps the copies are blended with masks made on the IMAGE
TOKEN grid (one weight per 2x2 latent patch the transformer attends over), not on a UNet's feature maps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from lorastudio.engine.generation.regions import RegionPlan, blend_latents, blend_now
from lorastudio.engine.models.denoisers import Cond, Denoiser


class FlowStopped(Exception):
    """should_stop() said so between two steps."""


def flow_schedule(model: Denoiser, steps: int, height: int, width: int) -> FlowMatchEulerDiscreteScheduler:
    """The model's scheduler set to `steps` steps as its pipeline sets it: sigmas 1 .. 1/steps, shifted by
    mu for the image's token count when the model's config shifts dynamically."""
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(model.pipe.scheduler.config)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    kwargs = {}
    if scheduler.config.get("use_dynamic_shifting"):
        kwargs["mu"] = float(np.log(model.sample_shift(height, width, steps)))
    scheduler.set_timesteps(sigmas=sigmas, device="cpu", **kwargs)
    return scheduler


@torch.no_grad()
def sample_flow(
    model: Denoiser,
    noise: torch.Tensor,
    passes: list[tuple[Callable[[], None], list[Cond], list[Cond] | None]],
    *,
    steps: int,
    cfg_scale: float,
    height: int,
    width: int,
    plan: RegionPlan | None = None,
    region_blend: float = 0.0,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Denoise `noise` (n, C, h, w) to latents. `passes`: one (activate its adapters, conds per image,
    negative conds or None) per region pass (one pass without regions); returns the first pass's copy,
    which after the last blend is the picture."""
    scheduler = flow_schedule(model, steps, height, width)
    distilled = model.family.guidance == "distilled"
    copies = [noise.clone() for _ in passes]
    sigmas = scheduler.sigmas  # one more than the steps: the last is 0, the picture
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i].to(noise.dtype)
        for p, (activate, conds, negative) in enumerate(passes):
            activate()
            x = copies[p]
            ts = sigma.expand(x.shape[0]).to(x.device)
            if distilled or negative is None:
                v = model.predict(x, ts, conds, guidance=cfg_scale if distilled else None)
            else:
                both = model.predict(torch.cat([x, x]), torch.cat([ts, ts]), [*negative, *conds])
                uncond, cond = both.chunk(2)
                v = model.combine_cfg(uncond, cond, cfg_scale)
            copies[p] = (x.float() + (sigmas[i + 1] - sigmas[i]) * v.float()).to(x.dtype)  # an Euler step
        if plan is not None and blend_now(i, len(sigmas) - 1, scheduler, region_blend):
            mixed = blend_latents(torch.cat(copies), _token_masks(plan.masks, model.patch))
            copies = list(mixed.chunk(len(passes)))
        if on_step is not None:
            on_step(i, copies[0])
    return copies[0]


def _token_masks(masks: torch.Tensor, patch: int) -> torch.Tensor:
    """Masks made on the token grid, spread over each token's patch x patch latent pixels."""
    return masks.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3) if patch > 1 else masks


def to_images(model: Denoiser, latents: torch.Tensor) -> list[Image.Image]:
    """Latents decoded by the family's VAE, as 8-bit RGB pictures."""
    pixels = model.to_pixels(latents)
    data = ((pixels + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in data]
