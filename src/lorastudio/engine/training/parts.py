"""Small pure helpers the training loop calls: batches, pixels, noise, optimizer."""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass

import torch

from lorastudio.engine.data.buckets import Fitted
from lorastudio.engine.models.device import weight_dtype
from lorastudio.errors import Invalid


@dataclass
class Sample:
    """One training example after bucketing: its image tensor or cached latent, caption and SDXL sizes."""

    pixels: torch.Tensor | None  # (3, h, w) in [-1, 1]; dropped once latents are cached
    latent: torch.Tensor | None
    caption: str
    time_ids: torch.Tensor
    bucket: tuple[int, int]


def to_pixels(fitted: Fitted, flip: bool = False) -> torch.Tensor:
    """PIL image -> (3, h, w) float tensor in [-1, 1]."""
    img = fitted.image.transpose(0) if flip else fitted.image  # 0 = FLIP_LEFT_RIGHT
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    t = data.view(img.height, img.width, 3).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def epoch_batches(samples: list[Sample], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Deterministic batches for one epoch: shuffled within each bucket, then batch order shuffled."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**64)
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(samples):
        by_bucket.setdefault(s.bucket, []).append(i)
    batches = []
    for bucket in sorted(by_bucket):
        idx = by_bucket[bucket]
        order = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        batches += [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    return [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]


def step_noise(
    shape: torch.Size, seed: int, micro_step: int, offset: float, objective
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps for one micro-step, drawn from a generator seeded by (seed, step) so a
    resumed run draws exactly what an uninterrupted one would."""
    gen = torch.Generator().manual_seed((seed * 7919 + micro_step) % 2**64)
    noise = torch.randn(shape, generator=gen)
    if offset:
        noise = noise + offset * torch.randn((shape[0], shape[1], 1, 1), generator=gen)
    return noise, objective.timesteps(shape[0], gen)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to the device without making the host wait: a copy from ordinary (pageable)
    memory to a CUDA device first waits for all queued GPU work, so each one per step ends the overlap
    of host and GPU. From pinned memory the copy is queued like a kernel."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def release(modules: tuple[torch.nn.Module, ...], device: torch.device) -> None:
    """Drop the weights of modules the caches replaced (on the GPU and in host memory alike): kohya moves
    them to the CPU, where on a CPU run they still take their RAM."""
    for module in modules:
        module.to("meta")
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_optimizer(name: str, device: torch.device) -> None:
    """Refuse an optimizer this machine cannot run, before any model is loaded."""
    if name == "adamw":
        return
    if name == "adamw8bit":
        if device.type != "cuda":
            raise Invalid(
                "the adamw8bit optimizer needs a CUDA GPU; use $optimizer adamw on this machine", setting="optimizer"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise Invalid("adamw8bit needs bitsandbytes: pip install 'lorastudio[cuda]'")
    elif name == "prodigy":
        if importlib.util.find_spec("prodigyopt") is None:
            raise Invalid("the prodigy optimizer needs prodigyopt: pip install prodigyopt")
    else:
        raise Invalid(f"unknown optimizer {name!r}; choose adamw, adamw8bit or prodigy")


def make_optimizer(name: str, groups: list[dict], device: torch.device, weight_decay: float):
    """AdamW, or bitsandbytes AdamW8bit / Prodigy (checked with check_optimizer first)."""
    check_optimizer(name, device)
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, weight_decay=weight_decay)
    if name == "prodigy":
        from prodigyopt import Prodigy

        return Prodigy(groups, weight_decay=weight_decay)
    # Fused on CUDA: one kernel for all LoRA tensors. Not on CPU: alone it was 1.07x a step on the tiny
    # model and 1.00x on the SD1.5 UNet (benchmarks/levers.py), but its OpenMP loop per tensor made three
    # processes of 2 threads sharing 2 cores 5x slower at the optimizer step (10 s against 2 s for 200 steps).
    return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=True if device.type == "cuda" else None)


def tag_frequency(captions: list[str]) -> dict[str, int]:
    """How often each comma-separated tag appears (kohya's ss_tag_frequency)."""
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in (t.strip() for t in caption.split(",")):
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def autocast(device: torch.device, precision: str):
    """Mixed precision at the run's setting; nothing for full precision."""
    if precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=weight_dtype(precision))
