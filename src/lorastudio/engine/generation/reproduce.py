"""Reproduce an image from the parameters inside its PNG: our own JSON record (exact, the whole batch
re-run) or A1111's `parameters` text (prompt, seed, steps, sampler, CFG, size). A PNG is untrusted
input: anything missing, mistyped or out of range is refused with what is wrong, never a traceback."""

from __future__ import annotations

from pathlib import Path

from lorastudio.engine.generation.generate import GenerateRequest
from lorastudio.engine.generation.pngmeta import read_png_parameters
from lorastudio.engine.generation.regions import DEFAULT_REGION_BLEND
from lorastudio.errors import Invalid

_NEEDED = ("prompt", "base", "seed", "steps", "cfg_scale", "width", "height", "sampler")


def request_from_png(path: Path, *, base: str | None, default_base: str) -> tuple[GenerateRequest, int]:
    """The request that reproduces the image in `path`, and the image's index in that request's batch;
    `base` replaces the recorded base model, `default_base` is used for A1111 files (they name none)."""
    params = read_png_parameters(path)
    if params.get("source") == "lorastudio":
        request, index = request_from_params(params, what=path.name)
        return (request.model_copy(update={"base": base}) if base else request), index
    return request_from_a1111(params, base or default_base, what=path.name), 0


def request_from_params(params: dict, what: str = "the record") -> tuple[GenerateRequest, int]:
    """The request that reproduces one image from our own JSON record, and the image's index in it.
    A batch is re-run whole: batched maths can differ from a single image's in the last bits."""
    missing = [k for k in _NEEDED if k not in params]
    if missing:
        raise Invalid(f"{what}: its record lacks {', '.join(missing)}, so it cannot be reproduced")
    loras = params.get("loras") or []
    if not isinstance(loras, list) or not all(isinstance(x, dict) for x in loras):
        raise Invalid(f"{what}: its record's LoRA list is garbled, so it cannot be reproduced")
    index = _int(params.get("batch_index", 0), "batch_index", what)
    size = _int(params.get("batch_size", 1), "batch_size", what)
    if not 0 <= index < size:
        raise Invalid(f"{what}: its record says image {index} of a batch of {size}; it cannot be reproduced")
    variation = params.get("variation_seed")
    request = GenerateRequest.build(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt") or "",
        loras=[
            {"lora": x.get("lora") or x.get("path"), "strength": x.get("strength"), "region": x.get("region")}
            for x in loras
        ],
        base=params["base"],
        seed=params.get("first_seed", params["seed"]),
        n=size,
        steps=params["steps"],
        cfg_scale=params["cfg_scale"],
        width=params["width"],
        height=params["height"],
        sampler=params["sampler"],
        variation_seed=None if variation is None else _int(variation, "variation_seed", what) - index,
        variation_strength=params.get("variation_strength", 0.0),
        region_blend=params.get("region_blend", DEFAULT_REGION_BLEND),
    )
    return request, index


def request_from_a1111(params: dict, base: str, what: str = "the text") -> GenerateRequest:
    """A request from A1111's parameters (its LoRA tags stay in the prompt and are read from there)."""
    width, _, height = str(params.get("Size", "")).partition("x")
    if "Seed" not in params or "Steps" not in params:
        raise Invalid(f"{what}: its A1111 parameters lack the seed or the steps; cannot reproduce it")
    return GenerateRequest.build(
        prompt=params.get("prompt") or "",
        negative_prompt=params.get("negative_prompt", ""),
        base=base,
        seed=_int(params["Seed"], "Seed", what),
        steps=_int(params["Steps"], "Steps", what),
        cfg_scale=_float(params.get("CFG scale", 7), "CFG scale", what),
        sampler=params.get("Sampler", "Euler a"),
        width=_int(width, "Size", what) if width else None,
        height=_int(height, "Size", what) if height else None,
    )


def _int(value: object, field: str, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise Invalid(f"{what}: {field} {str(value)[:30]!r} is not a whole number; cannot reproduce it") from None


def _float(value: object, field: str, what: str) -> float:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        raise Invalid(f"{what}: {field} {str(value)[:30]!r} is not a number; cannot reproduce it") from None
