"""txt2img with a stack of LoRAs at chosen strengths, fixed seeds, and parameters for every image."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image
from pydantic import BaseModel as Model
from pydantic import ConfigDict, Field, ValidationError, field_validator

from lorastudio import __version__
from lorastudio.engine.generation.pipecache import LoadedLora, PipelineCache, resolve_lora
from lorastudio.engine.generation.pngmeta import save_png
from lorastudio.engine.generation.regions import (
    DEFAULT_REGION_BLEND,
    RegionPlan,
    blend_latents,
    blend_now,
    parse_region,
    pass_prompt,
    plan_passes,
    region_masks,
    regional_unet,
)
from lorastudio.engine.generation.samplers import DEFAULT_SAMPLER, canonical_sampler, make_scheduler
from lorastudio.engine.models.basemodel import is_sdxl_like
from lorastudio.engine.models.device import is_out_of_memory
from lorastudio.engine.prompts import SelectedLora, add_missing_triggers, parse_lora_tags, prompt_warnings
from lorastudio.engine.training.config import ProgressEvent, format_validation_error
from lorastudio.errors import Invalid, OutOfMemory

DEFAULT_SIZE = {"toyworld": 32, "sd15": 512, "sdxl": 1024, "tiny-sd15": 64, "tiny-sdxl": 64}


class LoraChoice(Model):
    """A LoRA picked explicitly (file path or library name) with its strength; None = recommended."""

    model_config = ConfigDict(extra="forbid")
    lora: str
    strength: float | None = Field(default=None, ge=-4, le=4)
    region: str | None = None  # None: the whole picture; else a part of it (engine/generation/regions.py)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return None if v is None else parse_region(v)


class GenerateRequest(Model):
    """Everything that decides the pixels of a txt2img call."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    loras: list[LoraChoice] = Field(default_factory=list)
    base: str
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    n: int = Field(default=1, ge=1, le=16)
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=0, le=30)
    width: int | None = Field(default=None, ge=32, le=2048)
    height: int | None = Field(default=None, ge=32, le=2048)
    sampler: str = DEFAULT_SAMPLER
    variation_seed: int | None = Field(default=None, ge=0, lt=2**32)
    variation_strength: float = Field(default=0.0, ge=0, le=1)
    add_triggers: bool = False
    fuse: bool | None = None  # None: fuse for batches when weights are fp32 (see generate())
    region_blend: float = Field(default=DEFAULT_REGION_BLEND, ge=0, le=1)  # see engine/generation/regions.py

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str) -> str:
        return canonical_sampler(v)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise ValueError(f"{v} is not a multiple of 8; SD models need sizes like {v // 8 * 8} or {v // 8 * 8 + 8}")
        return v

    @classmethod
    def build(cls, **values: object) -> GenerateRequest:
        """Validate, turning pydantic's errors into one Invalid that names each bad field."""
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise Invalid(format_validation_error(exc).replace("training settings", "generation settings")) from exc


@dataclass
class GenerateResult:
    """Images with the parameters that reproduce each, and the warnings the user should see."""

    images: list[Image.Image]
    params: list[dict]
    warnings: list[str]
    seconds: float
    paths: list[Path] = field(default_factory=list)


@dataclass
class Prepared:
    """A request resolved against the warm pipeline: final prompt, LoRAs, sizes, seeds."""

    prompt: str
    loras: list[tuple[LoadedLora, float, str | None]]  # LoRA, strength, region (None: everywhere)
    width: int
    height: int
    seeds: list[int]
    warnings: list[str]


def prepare(cache: PipelineCache, req: GenerateRequest) -> Prepared:
    """Load the base and the LoRAs (checking each fits), settle the prompt and collect warnings."""
    base = cache.get_base(req.base)
    clean, tags = parse_lora_tags(req.prompt)
    search = [cache.settings.loras_dir]
    wanted = [(resolve_lora(c.lora, search), c.strength, c.region) for c in req.loras]
    wanted += [(resolve_lora(t.name, search), t.strength, None) for t in tags]
    keep: set[str] = set()
    loras = []
    for path, strength, region in wanted:
        # The adapter is shared by content; the name and path are the ones this request used.
        loaded = replace(cache.load_lora(path, keep), name=path.stem, path=path.resolve())
        keep.add(loaded.adapter)
        chosen = strength if strength is not None else (loaded.recommended_strength or 1.0)
        loras.append((loaded, chosen, None if region == "full" else region))
    if len({lora.adapter for lora, _, _ in loras}) != len(loras):
        raise Invalid("the same LoRA is selected twice; give it once with the strength (and region) you want")
    if req.add_triggers:
        clean = add_missing_triggers(clean, [t for lora, s, _ in loras if s > 0 for t in lora.triggers])
    selected = [
        SelectedLora(lora.name, s, lora.kind, lora.triggers, region, lora.description) for lora, s, region in loras
    ]
    size = DEFAULT_SIZE.get(base.family, 512)
    seed = req.seed if req.seed is not None else random.randrange(2**32)
    seeds = [(seed + i) % 2**32 for i in range(req.n)]
    return Prepared(clean, loras, req.width or size, req.height or size, seeds, prompt_warnings(clean, selected))


def initial_latents(pipe, seeds: list[int], width: int, height: int, req: GenerateRequest) -> torch.Tensor:
    """Starting noise per image from a CPU generator (same on every device), with an optional
    variation: the same seed's noise blended toward another seed's (A1111's variation seed)."""
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, height // factor, width // factor)
    out = []
    for i, seed in enumerate(seeds):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        if req.variation_seed is not None and req.variation_strength > 0:
            other = torch.randn(shape, generator=torch.Generator().manual_seed(req.variation_seed + i))
            noise = slerp(req.variation_strength, noise, other)
        out.append(noise)
    return torch.cat(out)


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation, which keeps the blend's variance that of unit Gaussian noise."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.acos((an * bn).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def generate(
    cache: PipelineCache,
    req: GenerateRequest,
    *,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> GenerateResult:
    """Render req.n images (seeds seed, seed+1, ...) with the selected LoRAs at their strengths."""
    t0 = time.perf_counter()
    prep = prepare(cache, req)
    base = cache.base
    pipe = base.pipe
    regional = any(region for _, s, region in prep.loras if s != 0)
    if regional and req.fuse:
        raise Invalid("LoRAs confined to a region cannot be fused (each region needs its own set); drop --fuse")
    pipe.scheduler = make_scheduler(req.sampler, pipe.scheduler.config)
    if not regional:  # a regional plan activates each pass's set itself
        cache.activate({lora.adapter: s for lora, s, _ in prep.loras})
    plan = _plan_regions(cache, req, prep) if regional else None
    copies = len(plan.passes) if plan else 1  # each region's pass keeps its own copy of every image
    latents = initial_latents(pipe, prep.seeds, prep.width, prep.height, req).to(cache.device, cache.dtype)
    latents = latents.repeat(copies, 1, 1, 1)
    # ancestral samplers' step noise: the same seeds for every pass's copy
    generators = [torch.Generator().manual_seed(s) for _ in range(copies) for s in prep.seeds]

    def step_end(pipe_, step: int, _t, kwargs: dict) -> dict:
        if on_progress:
            on_progress(ProgressEvent("generate", step + 1, req.steps, message=prep.prompt))
        if plan and blend_now(step, pipe_.num_timesteps, pipe_.scheduler, req.region_blend):
            kwargs["latents"] = blend_latents(kwargs["latents"], plan.masks)
        return kwargs

    # Fusing folds the LoRAs into the weights for the call: measured 5% faster on a batch of 4 and 3%
    # instead of 16% overhead for 3 LoRAs (benchmarks/generate_speed.py). Automatic only for batches in
    # fp32, where fuse + unfuse restores the base weights exactly; fp16 could keep rounding residue.
    auto = req.n >= 2 and cache.dtype == torch.float32 and not regional
    fused = (auto if req.fuse is None else req.fuse) and any(s != 0 for _, s, _ in prep.loras)
    if fused:
        pipe.fuse_lora(adapter_names=[lora.adapter for lora, s, _ in prep.loras if s != 0])
    patch = regional_unet(pipe.unet, plan.passes, cache.activate, plan.text_inputs, req.n) if plan else nullcontext()
    try:
        with torch.inference_mode(), patch:
            images = pipe(
                prompt=prep.prompt,
                negative_prompt=req.negative_prompt or None,
                num_images_per_prompt=req.n * copies,
                num_inference_steps=req.steps,
                guidance_scale=req.cfg_scale,
                width=prep.width,
                height=prep.height,
                generator=generators,
                latents=latents,
                callback_on_step_end=step_end,
            ).images[: req.n]  # after the last blend every pass's copy is the same picture
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_out_of_memory(exc):
            raise
        raise OutOfMemory(
            f"the {cache.device.type} device ran out of memory generating {req.n} image(s) at "
            f"{prep.width}x{prep.height}"
            + (f" with {copies} regions" if copies > 1 else "")
            + "; lower --n or the size"
            + (", or use fewer regions" if copies > 1 else "")
        ) from exc
    finally:
        if fused:
            pipe.unfuse_lora()
    params = [_params(req, prep, base, i) for i in range(req.n)]
    return GenerateResult(images, params, prep.warnings, time.perf_counter() - t0)


def _plan_regions(cache: PipelineCache, req: GenerateRequest, prep: Prepared) -> RegionPlan:
    """Passes (one per region, see engine/generation/regions.py), their blend masks at latent size, and each
    pass's text inputs: its own prompt, encoded with its own LoRAs (a LoRA may change the text encoder)."""
    pipe = cache.base.pipe
    passes = plan_passes([(lora.adapter, s, region) for lora, s, region in prep.loras if s != 0])
    factor = pipe.vae_scale_factor
    passes, masks = region_masks(passes, prep.height // factor, prep.width // factor)
    # Only characters stand in for each other; a style or pose LoRA's trigger word stays as it is.
    confined = [
        (lora.triggers, lora.description, region)
        for lora, s, region in prep.loras
        if region and s != 0 and lora.kind in (None, "character")
    ]
    inputs = []
    for p in passes:
        cache.activate(p.weights)
        inputs.append(_text_inputs(pipe, pass_prompt(prep.prompt, p.region, confined), req))
    return RegionPlan(passes, masks, inputs)


def _text_inputs(pipe, prompt: str, req: GenerateRequest) -> dict:
    """The UNet's text inputs for the current adapters, batched as the pipeline batches them (the
    unconditional half first when CFG is on)."""
    cfg = req.cfg_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
    device = pipe.unet.device
    negative = req.negative_prompt or None
    if hasattr(pipe, "text_encoder_2"):
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=req.n,
            do_classifier_free_guidance=cfg,
            negative_prompt=negative,
        )
        if cfg:
            return {"encoder_hidden_states": torch.cat([neg, pos]), "text_embeds": torch.cat([neg_pooled, pooled])}
        return {"encoder_hidden_states": pos, "text_embeds": pooled}
    pos, neg = pipe.encode_prompt(prompt, device, req.n, cfg, negative_prompt=negative)
    return {"encoder_hidden_states": torch.cat([neg, pos]) if cfg else pos}


def _params(req: GenerateRequest, prep: Prepared, base, index: int) -> dict:
    loras = [
        {"name": lora.name, "path": str(lora.path), "hash": lora.sha256, "strength": s, "kind": lora.kind}
        | ({"region": region} if region else {})
        for lora, s, region in prep.loras
    ]
    tags = " ".join(f"<lora:{lora['name']}:{lora['strength']:g}>" for lora in loras)
    return {
        "prompt": prep.prompt,
        "prompt_text": f"{prep.prompt} {tags}".strip(),  # what A1111 needs to reproduce it
        "negative_prompt": req.negative_prompt,
        "steps": req.steps,
        "sampler": req.sampler,
        "cfg_scale": req.cfg_scale,
        "seed": prep.seeds[index],
        "width": prep.width,
        "height": prep.height,
        "base": req.base,
        "model": base.name,
        "model_hash": base.model_hash,
        "family": base.family,
        "sdxl": is_sdxl_like(base.family),
        "loras": loras,
        "variation_seed": None if req.variation_seed is None else req.variation_seed + index,
        "variation_strength": req.variation_strength,
        "region_blend": req.region_blend,
        "batch_index": index,
        "batch_size": req.n,
        "first_seed": prep.seeds[0],
        "version": __version__,
    }


def request_from_params(params: dict) -> tuple[GenerateRequest, int]:
    """The request that reproduces one image from its own parameters (our JSON record), and the image's
    index in that request's results. A batch is re-run whole: batched maths can differ from a single
    image's in the last bits, so only the same batch gives the same pixels."""
    index = int(params.get("batch_index", 0))
    request = GenerateRequest.build(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt", ""),
        loras=[
            {"lora": lora["path"], "strength": lora["strength"], "region": lora.get("region")}
            for lora in params.get("loras", [])
        ],
        base=params["base"],
        seed=params.get("first_seed", params["seed"]),
        n=int(params.get("batch_size", 1)),
        steps=params["steps"],
        cfg_scale=params["cfg_scale"],
        width=params["width"],
        height=params["height"],
        sampler=params["sampler"],
        variation_seed=None if params.get("variation_seed") is None else params["variation_seed"] - index,
        variation_strength=params.get("variation_strength", 0.0),
        region_blend=params.get("region_blend", DEFAULT_REGION_BLEND),
    )
    return request, index


def save_result(result: GenerateResult, out_dir: Path) -> list[Path]:
    """Write each image as NNNNN-<seed>.png (numbering continues what is in the folder)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = 1 + max((int(p.name[:5]) for p in out_dir.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")), default=0)
    paths = []
    for i, (image, params) in enumerate(zip(result.images, result.params, strict=True)):
        paths.append(save_png(out_dir / f"{start + i:05d}-{params['seed']}.png", image, params))
    result.paths = paths
    return paths
