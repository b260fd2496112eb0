"""Sampler names users know from A1111/ComfyUI -> diffusers schedulers built from the model's own config."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

from lorastudio.errors import Invalid

# A1111 name -> (scheduler class, extra config). Karras variants use Karras sigmas.
SAMPLERS = {
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "Euler": (EulerDiscreteScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {}),
    "DPM++ 2M Karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": (
        DPMSolverMultistepScheduler,
        {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
    ),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
}
DEFAULT_SAMPLER = "DPM++ 2M Karras"


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower().replace("+", "p") if ch.isalnum())


# ComfyUI-style spellings (euler_ancestral, dpmpp_2m_karras) and loose ones (dpm++2m karras) all match.
_ALIASES = {_key(name): name for name in SAMPLERS} | {
    "eulerancestral": "Euler a",
    "eulera": "Euler a",
    "dpmpp2m": "DPM++ 2M",
    "dpmpp2mkarras": "DPM++ 2M Karras",
    "dpmpp2msdekarras": "DPM++ 2M SDE Karras",
}


def canonical_sampler(name: str) -> str:
    """The A1111 spelling of a sampler name, or Invalid listing the choices."""
    found = _ALIASES.get(_key(name))
    if not found:
        raise Invalid(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return found


def make_scheduler(name: str, base_config: dict):
    """A fresh scheduler for `name`, configured from the base model's scheduler config."""
    cls, extra = SAMPLERS[canonical_sampler(name)]
    return cls.from_config(base_config, **extra)


FLOW_SAMPLER = "Euler"  # flow-matching families sample with their own FlowMatchEulerDiscreteScheduler


def flow_sampler(name: str, family_label: str) -> str:
    """The sampler a flow-matching family runs for a requested one: Euler (the default request means it too)."""
    canonical = canonical_sampler(name)
    if canonical not in (FLOW_SAMPLER, DEFAULT_SAMPLER):
        raise Invalid(
            f"{family_label} samples by flow matching with Euler; {canonical} is an SD sampler - use $sampler Euler",
            setting="sampler",
        )
    return FLOW_SAMPLER
