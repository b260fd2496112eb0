"""Sample previews during training: the LoRA as trained so far, drawn at fixed seeds so runs compare."""

from __future__ import annotations

from pathlib import Path

import torch

from lorastudio.engine.generation.flow import sample_flow, to_images
from lorastudio.engine.models.base import LoadedBase
from lorastudio.engine.models.denoisers import Cond
from lorastudio.engine.progress import ProgressEvent
from lorastudio.engine.training.config import TrainConfig
from lorastudio.engine.training.parts import autocast


@torch.no_grad()
def render_samples(
    base: LoadedBase, model, conds: list[Cond], cfg: TrainConfig, step: int, device, precision, emit
) -> list[Path]:
    """Render the sample prompts with the LoRA as trained so far (fixed seed, so runs compare): SD through its
    pipeline, the flow families through the sampler generation uses, from prompts encoded before the loop."""
    base.denoiser.eval()
    paths = []
    folder = cfg.run_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(cfg.sample_prompts):
        gen = torch.Generator().manual_seed(cfg.seed + i)
        with autocast(device, precision):
            if conds:
                noise = torch.randn((1, *model.latent_shape(cfg.resolution, cfg.resolution)), generator=gen)
                noise = noise.to(device, next(model.module.parameters()).dtype)
                negative = conds[len(cfg.sample_prompts) :] or None
                latents = sample_flow(
                    model,
                    noise,
                    [(lambda: None, [conds[i]], negative)],
                    steps=cfg.sample_steps,
                    cfg_scale=model.family.default_cfg,
                    height=cfg.resolution,
                    width=cfg.resolution,
                )
                image = to_images(model, latents)[0]
            else:
                image = base.pipe(
                    prompt,
                    num_inference_steps=cfg.sample_steps,
                    height=cfg.resolution,
                    width=cfg.resolution,
                    generator=gen,
                ).images[0]
        path = folder / f"step-{step:06d}-{i}.png"
        image.save(path)
        paths.append(path)
        emit(ProgressEvent("sample", step, cfg.steps, message=prompt, preview=path))
    base.denoiser.train()
    return paths
