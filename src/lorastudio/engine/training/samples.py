"""Pictures of the LoRA as trained so far, drawn at fixed seeds so checkpoints and runs compare: the sample
previews and the evaluation's renders."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from PIL import Image

from lorastudio.engine.generation.flow import sample_flow, to_images
from lorastudio.engine.models.base import LoadedBase
from lorastudio.engine.models.denoisers import Cond
from lorastudio.engine.progress import ProgressEvent
from lorastudio.engine.training.config import TrainConfig
from lorastudio.engine.training.parts import autocast


@contextlib.contextmanager
def lora_strength(modules, strength: float):
    """Use the adapters being trained at `strength` (0: the base model alone) for a while, then at 1 again."""
    layers = [m for module in modules for m in module.modules() if hasattr(m, "set_scale") and hasattr(m, "scaling")]
    for layer in layers:
        for adapter in list(layer.scaling):
            layer.set_scale(adapter, strength)
    try:
        yield
    finally:
        for layer in layers:
            for adapter in list(layer.scaling):
                layer.set_scale(adapter, 1.0)


@torch.no_grad()
def draw(
    base: LoadedBase,
    model,
    prompts: list[str],
    conds: list[Cond],
    negative: list[Cond] | None,
    seeds: list[int],
    *,
    size: int,
    steps: int,
    device,
    precision,
) -> list[Image.Image]:
    """One picture per prompt and seed: SD through its pipeline, the flow families through the sampler
    generation uses, from prompts encoded before the loop (`conds`, one per prompt; their text encoders are gone)."""
    base.denoiser.eval()
    images = []
    try:
        for i, prompt in enumerate(prompts):
            gen = torch.Generator().manual_seed(seeds[i])
            with autocast(device, precision):
                if conds:
                    noise = torch.randn((1, *model.latent_shape(size, size)), generator=gen)
                    noise = noise.to(device, next(model.module.parameters()).dtype)
                    latents = sample_flow(
                        model,
                        noise,
                        [(lambda: None, [conds[i]], negative or None)],
                        steps=steps,
                        cfg_scale=model.family.default_cfg,
                        height=size,
                        width=size,
                    )
                    images.append(to_images(model, latents)[0])
                else:
                    images.append(
                        base.pipe(prompt, num_inference_steps=steps, height=size, width=size, generator=gen).images[0]
                    )
    finally:
        base.denoiser.train()
    return images


def render_samples(
    base: LoadedBase, model, conds: list[Cond], cfg: TrainConfig, step: int, device, precision, emit
) -> list[Path]:
    """Render the sample prompts with the LoRA as trained so far (seed cfg.seed + i, so runs compare)."""
    folder = cfg.run_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(cfg.sample_prompts)
    images = draw(
        base,
        model,
        list(cfg.sample_prompts),
        conds[:n],
        conds[n:],
        [cfg.seed + i for i in range(n)],
        size=cfg.resolution,
        steps=cfg.sample_steps,
        device=device,
        precision=precision,
    )
    paths = []
    for i, (prompt, image) in enumerate(zip(cfg.sample_prompts, images, strict=True)):
        path = folder / f"step-{step:06d}-{i}.png"
        image.save(path)
        paths.append(path)
        emit(ProgressEvent("sample", step, cfg.steps, message=prompt, preview=path))
    return paths
