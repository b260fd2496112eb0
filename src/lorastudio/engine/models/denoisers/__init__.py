"""How each family's denoiser is called: prompts to conditioning, pixels to latents and back, and one
prediction. Training and generation both go through these, so what a LoRA learns is what it is sampled with.
The family row's `denoiser` picks the adapter."""

from __future__ import annotations

from lorastudio.engine.models.denoisers.common import Cond, Denoiser
from lorastudio.engine.models.denoisers.flux import FluxDenoiser
from lorastudio.engine.models.denoisers.flux2 import Flux2Denoiser
from lorastudio.engine.models.denoisers.qwen_image import QwenImageDenoiser
from lorastudio.engine.models.denoisers.unet import UNetDenoiser
from lorastudio.engine.models.denoisers.z_image import ZImageDenoiser
from lorastudio.engine.models.families import FAMILIES

ADAPTERS: dict[str, type[Denoiser]] = {
    "UNet2DConditionModel": UNetDenoiser,
    "FluxTransformer2DModel": FluxDenoiser,
    "Flux2Transformer2DModel": Flux2Denoiser,
    "QwenImageTransformer2DModel": QwenImageDenoiser,
    "ZImageTransformer2DModel": ZImageDenoiser,
}


def denoiser_for(base) -> Denoiser:
    """The adapter that calls this loaded base's denoiser the way its family's pipeline does."""
    family = FAMILIES[base.family]
    if family.denoiser not in ADAPTERS:
        raise NotImplementedError(f"no denoiser adapter for {family.denoiser}")
    return ADAPTERS[family.denoiser](base, family)


__all__ = ["ADAPTERS", "Cond", "Denoiser", "denoiser_for"]
