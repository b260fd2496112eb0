"""txt2img with a stack of LoRAs at chosen strengths, fixed seeds, and parameters for every image."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from pydantic import BaseModel as Model
from pydantic import ConfigDict, Field, ValidationError, field_validator

from lorastudio import __version__
from lorastudio.engine.generation.flow import sample_flow, to_images
from lorastudio.engine.generation.pipecache import LoadedLora, PipelineCache, resolve_lora
from lorastudio.engine.generation.pngmeta import save_png
from lorastudio.engine.generation.regions import (
    DEFAULT_REGION_BLEND,
    RegionPlan,
    blend_latents,
    blend_now,
    pass_prompt,
    plan_passes,
    region_masks,
    regional_unet,
)
from lorastudio.engine.generation.samplers import DEFAULT_SAMPLER, canonical_sampler, flow_sampler, make_scheduler
from lorastudio.engine.kinds import acts_as_character
from lorastudio.engine.models.denoisers import Denoiser, denoiser_for
from lorastudio.engine.models.device import is_out_of_memory
from lorastudio.engine.models.families import FAMILIES, Family
from lorastudio.engine.progress import OnProgress, ProgressEvent, ShouldStop, never_stop, no_progress
from lorastudio.engine.prompts import add_missing_triggers, parse_lora_tags, prompt_warnings
from lorastudio.engine.seeds import SEED_LIMIT, offset_seed, pick_seed
from lorastudio.engine.selection import LoraSelection
from lorastudio.errors import Invalid, OutOfMemory, format_validation_error
from lorastudio.fileio import check_writable_dir

MAX_PROMPT = 10_000  # characters; CLIP reads 77 tokens anyway, so more is a mistake or an attack


class GenerateRequest(Model):
    """Everything that decides the pixels of a txt2img call."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT, description="Prompt; <lora:name:0.8> tags work too")
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT, description="What to keep out of the picture")
    loras: list[LoraSelection] = Field(default_factory=list, max_length=16, description="LoRAs with strengths, regions")
    base: str = Field(min_length=1, max_length=4096, description="Base model")
    seed: int | None = Field(default=None, ge=-1, lt=SEED_LIMIT, description="-1 or None: random (recorded)")
    n: int = Field(default=1, ge=1, le=16, description="Images in the batch")
    steps: int = Field(default=20, ge=1, le=150, description="Sampling steps")
    cfg_scale: float | None = Field(
        default=None, ge=0, le=30, allow_inf_nan=False, description="CFG scale (null: the family's, 7 on SD)"
    )
    width: int | None = Field(default=None, ge=32, le=2048, description="Width (null: the family's size)")
    height: int | None = Field(default=None, ge=32, le=2048, description="Height (null: the family's size)")
    sampler: str = Field(default=DEFAULT_SAMPLER, max_length=40, description="Sampler (A1111 or ComfyUI name)")
    variation_seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT, description="Variation seed (A1111)")
    variation_strength: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False, description="How far toward it")
    add_triggers: bool = Field(default=False, description="Add the chosen LoRAs' missing trigger words")
    fuse: bool | None = Field(default=None, description="Fuse the LoRAs into the weights (null: when fp32)")
    region_blend: float = Field(
        default=DEFAULT_REGION_BLEND,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Shared steps that smooth regional seams",
    )  # generation/regions.py
    # <lora:name:w> tags in the prompt name files (the CLI). A studio resolves tags in its own library before
    # the request reaches us and turns this off, so no text a user typed is ever opened as a file.
    prompt_tags: bool = Field(default=True, description="Read <lora:name:w> tags in the prompt as files")

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str) -> str:
        try:
            return canonical_sampler(v)
        except Invalid as exc:
            raise ValueError(str(exc)) from exc

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
            raise Invalid(format_validation_error(exc, "generation settings")) from exc


@dataclass
class GenerateResult:
    """Images with the parameters that reproduce each, and the warnings the user should see."""

    images: list[Image.Image]
    params: list[dict]
    warnings: list[str]
    seconds: float
    paths: list[Path] = field(default_factory=list)
    stopped: bool = False  # should_stop() said so between two steps; no images then

    def to_dict(self) -> dict:
        """What `generate --json` prints and the HTTP API returns (images as their saved paths)."""
        first = self.params[0] if self.params else {}
        return {
            "images": [str(p) for p in self.paths],
            "seeds": [p["seed"] for p in self.params],
            "prompt": first.get("prompt"),
            "loras": first.get("loras", []),
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "params": self.params,
        }


@dataclass
class Prepared:
    """A request resolved against the warm pipeline: final prompt, LoRAs, sizes, seeds."""

    prompt: str
    loras: list[tuple[LoraSelection, LoadedLora]]  # each selection with its strength settled
    width: int
    height: int
    seeds: list[int]
    warnings: list[str]
    family: Family
    cfg_scale: float  # the request's, or the family's default
    sampler: str  # what runs: the request's, or Euler on a flow-matching family


def prepare(cache: PipelineCache, req: GenerateRequest) -> Prepared:
    """Load the base and the LoRAs (checking each fits), settle the prompt and collect warnings."""
    base = cache.get_base(req.base)
    clean, tags = parse_lora_tags(req.prompt)
    if tags and not req.prompt_tags:
        raise Invalid("this prompt still carries <lora:...> tags; pick LoRAs from the library instead")
    search = [cache.settings.loras_dir]
    wanted = [(resolve_lora(sel.lora, search), sel) for sel in [*req.loras, *tags]]
    keep: set[str] = set()
    loras: list[tuple[LoraSelection, LoadedLora]] = []
    for path, sel in wanted:
        # The adapter is shared by content; the name, path and description are the ones this request used.
        loaded = cache.load_lora(path, keep)
        loaded = replace(
            loaded,
            name=sel.name or path.stem,
            path=path.resolve(),
            description=loaded.description if sel.description is None else sel.description,
        )
        keep.add(loaded.adapter)
        strength = sel.strength if sel.strength is not None else (loaded.recommended_strength or 1.0)
        loras.append((sel.model_copy(update={"strength": strength}), loaded))
    if len({lora.adapter for _, lora in loras}) != len(loras):
        raise Invalid("the same LoRA is selected twice; give it once with the strength (and region) you want")
    if req.add_triggers:
        clean = add_missing_triggers(clean, [t for sel, lora in loras if sel.strength > 0 for t in lora.triggers])
    family = FAMILIES[base.family]
    size = family.default_size
    seed = pick_seed(req.seed)
    seeds = [offset_seed(seed, i) for i in range(req.n)]
    warnings = [w for _, lora in loras for w in lora.warnings] + prompt_warnings(clean, loras)
    width, height = req.width or size, req.height or size
    if family.is_flow and (width % 16 or height % 16):
        # 8x smaller latents, packed in 2x2 patches: the transformer families draw in steps of 16 pixels
        below, above = (
            f"{width // 16 * 16 or 16}x{height // 16 * 16 or 16}",
            f"{width // 16 * 16 + 16}x{height // 16 * 16 + 16}",
        )
        raise Invalid(f"{family.label} draws sizes that are multiples of 16; use {below} or {above}")
    cfg = family.default_cfg if req.cfg_scale is None else req.cfg_scale
    sampler = flow_sampler(req.sampler, family.label) if family.is_flow else req.sampler
    return Prepared(clean, loras, width, height, seeds, warnings, family, cfg, sampler)


def initial_latents(model: Denoiser, seeds: list[int], width: int, height: int, req: GenerateRequest) -> torch.Tensor:
    """Starting noise per image from a CPU generator (same on every device), with an optional
    variation: the same seed's noise blended toward another seed's (A1111's variation seed)."""
    shape = (1, *model.latent_shape(height, width))
    out = []
    for i, seed in enumerate(seeds):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        if req.variation_seed is not None and req.variation_strength > 0:
            other = torch.randn(shape, generator=torch.Generator().manual_seed(offset_seed(req.variation_seed, i)))
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


class _StopRequested(Exception):
    """Raised from the step callback to leave the pipeline between two steps."""


def generate(
    cache: PipelineCache,
    req: GenerateRequest,
    *,
    on_progress: OnProgress | None = None,
    should_stop: ShouldStop | None = None,
    preview_every: int = 0,
) -> GenerateResult:
    """Render req.n images (seeds seed, seed+1, ...) with the selected LoRAs at their strengths.

    Reports every step to on_progress (with a decoded preview of the first image every `preview_every`
    steps when asked); checks should_stop() between steps and then returns with stopped=True, no images."""
    emit, stop = on_progress or no_progress, should_stop or never_stop
    t0 = time.perf_counter()
    prep = prepare(cache, req)
    base = cache.base
    active = [(sel, lora) for sel, lora in prep.loras if sel.strength != 0]
    regional = any(sel.region for sel, _ in active)
    if regional and req.fuse:
        raise Invalid(
            "LoRAs confined to a region cannot be fused (each region needs its own set); turn off $fuse", setting="fuse"
        )
    # Fusing folds the LoRAs into the weights, where they stay while the set is unchanged (pipecache.fuse):
    # each image then costs what one without LoRAs does (benchmarks/generate_speed.py). Automatic in fp32,
    # where it matches the unfused image to a level; fp16 sums would round differently, so there only
    # when asked for. A regional plan activates each pass's set itself, unfused.
    auto = cache.dtype == torch.float32 and not regional
    fused = (auto if req.fuse is None else req.fuse) and bool(active)
    weights = {lora.adapter: sel.strength for sel, lora in prep.loras}
    if fused:
        cache.fuse(weights)
    elif not regional:
        cache.activate(weights)
    model = denoiser_for(base)
    try:
        if prep.family.is_flow:
            images = _flow_images(cache, model, req, prep, regional, emit, stop, preview_every)
        else:
            images = _sd_images(cache, model, req, prep, regional, emit, stop, preview_every)
    except _StopRequested:
        return GenerateResult([], [], prep.warnings, time.perf_counter() - t0, stopped=True)
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_out_of_memory(exc):
            raise
        copies = len({sel.region for sel, _ in active if sel.region}) + 1 if regional else 1
        raise OutOfMemory(
            f"the {cache.device.type} device ran out of memory generating {req.n} image(s) at "
            f"{prep.width}x{prep.height}"
            + (f" with {copies} regions" if copies > 1 else "")
            + "; lower $n or the size"
            + (", or use fewer regions" if copies > 1 else ""),
            setting="n",
        ) from exc
    params = [_params(req, prep, base, i) for i in range(req.n)]
    return GenerateResult(images, params, prep.warnings, time.perf_counter() - t0)


def _sd_images(cache, model, req, prep, regional, emit, stop, preview_every) -> list[Image.Image]:
    """The SD families: the diffusers pipeline's own loop, with the regional passes patched into its UNet."""
    pipe = cache.base.pipe
    pipe.scheduler = make_scheduler(prep.sampler, pipe.scheduler.config)
    factor = pipe.vae_scale_factor
    plan = (
        _plan_regions(
            cache, req, prep, (prep.height // factor, prep.width // factor), lambda p: _text_inputs(pipe, p, req, prep)
        )
        if regional
        else None
    )
    copies = len(plan.passes) if plan else 1  # each region's pass keeps its own copy of every image
    latents = initial_latents(model, prep.seeds, prep.width, prep.height, req).to(cache.device, cache.dtype)
    latents = latents.repeat(copies, 1, 1, 1)
    # ancestral samplers' step noise: the same seeds for every pass's copy
    generators = [torch.Generator().manual_seed(s) for _ in range(copies) for s in prep.seeds]

    def step_end(pipe_, step: int, _t, kwargs: dict) -> dict:
        if plan and blend_now(step, pipe_.num_timesteps, pipe_.scheduler, req.region_blend):
            kwargs["latents"] = blend_latents(kwargs["latents"], plan.masks)
        _step_done(step, kwargs["latents"], model, req, prep, emit, stop, preview_every)
        return kwargs

    patch = regional_unet(pipe.unet, plan.passes, cache.activate, plan.text_inputs, req.n) if plan else nullcontext()
    with torch.inference_mode(), patch:
        return pipe(
            prompt=prep.prompt,
            negative_prompt=req.negative_prompt or None,
            num_images_per_prompt=req.n * copies,
            num_inference_steps=req.steps,
            guidance_scale=prep.cfg_scale,
            width=prep.width,
            height=prep.height,
            generator=generators,
            latents=latents,
            callback_on_step_end=step_end,
        ).images[: req.n]  # after the last blend every pass's copy is the same picture


def _flow_images(cache, model, req, prep, regional, emit, stop, preview_every) -> list[Image.Image]:
    """The flow-matching families: our Euler loop through the family's denoiser adapter (generation/flow.py)."""
    with torch.inference_mode():  # the text encoders' graphs too: nothing here is trained
        return _flow_sample(cache, model, req, prep, regional, emit, stop, preview_every)


def _flow_sample(cache, model, req, prep, regional, emit, stop, preview_every) -> list[Image.Image]:
    """Prompts encoded, regions planned on the token grid, noise drawn, then the Euler loop and the VAE."""
    negative = None
    if prep.family.guidance == "cfg" and model.uses_cfg(prep.cfg_scale):
        negative = model.encode([req.negative_prompt]) * req.n
    _, h, w = model.latent_shape(prep.height, prep.width)
    grid = (h // model.patch, w // model.patch)
    plan = _plan_regions(cache, req, prep, grid, lambda p: model.encode([p]) * req.n) if regional else None
    if plan:
        passes = [
            (partial(cache.activate, p.weights), conds, negative)
            for p, conds in zip(plan.passes, plan.text_inputs, strict=True)
        ]
    else:
        passes = [(lambda: None, model.encode([prep.prompt]) * req.n, negative)]
    noise = initial_latents(model, prep.seeds, prep.width, prep.height, req).to(cache.device, cache.dtype)
    latents = sample_flow(
        model,
        noise,
        passes,
        steps=req.steps,
        cfg_scale=prep.cfg_scale,
        height=prep.height,
        width=prep.width,
        plan=plan,
        region_blend=req.region_blend,
        on_step=lambda i, x: _step_done(i, x, model, req, prep, emit, stop, preview_every),
    )
    return to_images(model, latents)


def _step_done(step: int, latents, model, req, prep, emit, stop, preview_every) -> None:
    """Report a finished sampler step (with a preview when due); leave between two steps when asked to."""
    done = step + 1
    preview = None
    if preview_every and done % preview_every == 0 and done < req.steps:
        preview = to_images(model, latents[:1])[0]
    emit(ProgressEvent("generate", done, req.steps, message=prep.prompt, preview_image=preview))
    if done < req.steps and stop():
        raise _StopRequested


def _plan_regions(
    cache: PipelineCache, req: GenerateRequest, prep: Prepared, grid: tuple[int, int], encode
) -> RegionPlan:
    """Passes (one per region, see engine/generation/regions.py), their blend masks on `grid` (the UNet's
    latent pixels, or a transformer's image tokens), and each pass's text inputs: its own prompt, encoded
    by `encode` with its own LoRAs (a LoRA may change the text encoder)."""
    passes = plan_passes([(lora.adapter, sel.strength, sel.region) for sel, lora in prep.loras if sel.strength != 0])
    passes, masks = region_masks(passes, *grid)
    # Only characters stand in for each other; a style or pose LoRA's trigger word stays as it is.
    confined = [
        (lora.triggers, lora.description, sel.region)
        for sel, lora in prep.loras
        if sel.region and sel.strength != 0 and acts_as_character(lora.kind)
    ]
    inputs = []
    for p in passes:
        cache.activate(p.weights)
        inputs.append(encode(pass_prompt(prep.prompt, p.region, confined)))
    return RegionPlan(passes, masks, inputs)


def _text_inputs(pipe, prompt: str, req: GenerateRequest, prep: Prepared) -> dict:
    """The UNet's text inputs for the current adapters, batched as the pipeline batches them (the
    unconditional half first when CFG is on)."""
    cfg = prep.cfg_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
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


def lora_record(sel: LoraSelection, lora: LoadedLora) -> dict:
    """A selection as the PNG record keeps it: the selection itself (the path as the reference, so it
    reproduces; the name instead when the caller named it, as a studio does, whose paths are its own) plus
    what identifies the file (name, hash, kind)."""
    reference = sel.name or str(lora.path)
    record = {"lora": reference, "strength": sel.strength, "name": lora.name, "hash": lora.sha256, "kind": lora.kind}
    library = {k: v for k, v in (("lora_id", sel.lora_id), ("version", sel.version)) if v is not None}
    return record | ({"region": sel.region} if sel.region else {}) | library


def _params(req: GenerateRequest, prep: Prepared, base, index: int) -> dict:
    loras = [lora_record(sel, lora) for sel, lora in prep.loras]
    tags = " ".join(f"<lora:{lora['name']}:{lora['strength']:g}>" for lora in loras)
    return {
        "prompt": prep.prompt,
        "prompt_text": f"{prep.prompt} {tags}".strip(),  # what A1111 needs to reproduce it
        "negative_prompt": req.negative_prompt,
        "steps": req.steps,
        "sampler": prep.sampler,
        "cfg_scale": prep.cfg_scale,
        "seed": prep.seeds[index],
        "width": prep.width,
        "height": prep.height,
        "base": req.base,
        "model": base.name,
        "model_hash": base.model_hash,
        "family": base.family,
        "loras": loras,
        "variation_seed": None if req.variation_seed is None else offset_seed(req.variation_seed, index),
        "variation_strength": req.variation_strength,
        "region_blend": req.region_blend,
        "batch_index": index,
        "batch_size": req.n,
        "first_seed": prep.seeds[0],
        "version": __version__,
    }


def save_result(result: GenerateResult, out_dir: Path) -> list[Path]:
    """Write each image as NNNNN-<seed>.png (numbering continues what is in the folder)."""
    check_writable_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = 1 + max((int(p.name[:5]) for p in out_dir.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")), default=0)
    paths = []
    for i, (image, params) in enumerate(zip(result.images, result.params, strict=True)):
        paths.append(save_png(out_dir / f"{start + i:05d}-{params['seed']}.png", image, params))
    result.paths = paths
    return paths
