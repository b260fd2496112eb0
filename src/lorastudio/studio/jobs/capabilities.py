"""What a job needs from a worker (model family, device memory) and what a worker has.

The service hands a job only to a worker that can run it: an SDXL training at 1024 px never goes to an
8 GB card, where it would only run out of memory after a long model load. The memory figures are
estimates for LoRA training and inference with the settings the guide uses (fp16/bf16 weights, AdamW),
rounded up from what kohya_ss and diffusers users report; `lorastudio worker --memory-gb` states a card's
usable memory when the detected total is not what a job may take (a card shared with a display, say).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from lorastudio.engine.models.basemodel import BUILT_IN

# (GB for the weights and optimizer, GB of activations per image at the family's native size)
TRAINING_GB = {"sd15": (5.0, 2.0), "sdxl": (12.0, 6.0)}
GENERATION_GB = {"sd15": (2.5, 0.5), "sdxl": (7.0, 1.5)}
NATIVE = {"sd15": 512, "sdxl": 1024}


def training_memory_mb(family: str | None, base: str, *, resolution: int, batch_size: int,
                       gradient_checkpointing: bool = False) -> int | None:  # fmt: skip
    """Device memory a training needs, in MB; None when any worker can run it (the built-in small models)."""
    if base in BUILT_IN or family not in TRAINING_GB:
        return None
    fixed, per_image = TRAINING_GB[family]
    activations = per_image * batch_size * (resolution / NATIVE[family]) ** 2
    if gradient_checkpointing:
        activations /= 3  # recomputed in the backward pass instead of kept
    return int((fixed + activations) * 1024)


def generation_memory_mb(family: str | None, base: str, *, width: int, height: int, batch: int) -> int | None:
    """Device memory a generation needs, in MB; None when any worker can run it."""
    if base in BUILT_IN or family not in GENERATION_GB:
        return None
    fixed, per_image = GENERATION_GB[family]
    return int((fixed + per_image * batch * width * height / NATIVE[family] ** 2) * 1024)


@dataclass(frozen=True)
class Capabilities:
    """What one worker can run."""

    device: str  # "cuda: <card name>" or "cpu"
    memory_mb: int
    families: tuple[str, ...]
    host: str


def detect(device_setting: str, *, memory_gb: float | None, families: tuple[str, ...]) -> Capabilities:
    """This machine's worker capabilities: the device the settings pick, its memory (or `memory_gb`)."""
    import torch

    from lorastudio.engine.models.device import resolve_device

    device = resolve_device(device_setting)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        label, total = f"cuda: {props.name}", props.total_memory
    else:
        label, total = device.type, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    memory = int(memory_gb * 1024) if memory_gb else int(total / 2**20)
    return Capabilities(device=label[:120], memory_mb=memory, families=families, host=socket.gethostname()[:255])
