"""What a job needs from a worker (model family, device memory) and what a worker has.

The service hands a job only to a worker that can run it: an SDXL training at 1024 px never goes to an
8 GB card, where it would only run out of memory after a long model load. The memory figures are the
family table's (`Family.train_memory` and `generate_memory` in engine/models/families.py): estimates for
LoRA training and inference with the settings the guide uses, scaled here by batch and pixels;
`lorastudio worker --memory-gb` states a card's usable memory when the detected total is not what a job
may take (a card shared with a display, say).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from lorastudio.engine import get_family


def _memory_mb(fixed_gb: float, activations_gb: float) -> int:
    return int((fixed_gb + activations_gb) * 1024)


def training_memory_mb(
    family: str | None, base: str, *, resolution: int, batch_size: int, gradient_checkpointing: bool = False
) -> int | None:
    """Device memory a training needs, in MB; None when any worker can run it (a family without memory
    figures: the built-in small models', an unknown one's). `base` is the job's; its family decides."""
    fam = get_family(family)
    if fam is None or fam.train_memory is None:
        return None
    need = fam.train_memory
    activations = need.per_image_gb * batch_size * (resolution / fam.default_size) ** 2
    if gradient_checkpointing:
        activations /= 3  # recomputed in the backward pass instead of kept
    return _memory_mb(need.fixed_gb, activations)


def generation_memory_mb(
    family: str | None, base: str, *, width: int | None, height: int | None, batch: int
) -> int | None:
    """Device memory a generation needs, in MB (an unset side is the family's default size); None when any
    worker can run it."""
    fam = get_family(family)
    if fam is None or fam.generate_memory is None:
        return None
    need = fam.generate_memory
    pixels = (width or fam.default_size) * (height or fam.default_size) / fam.default_size**2
    return _memory_mb(need.fixed_gb, need.per_image_gb * batch * pixels)


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

    from lorastudio.engine import resolve_device

    device = resolve_device(device_setting)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        label, total = f"cuda: {props.name}", props.total_memory
    else:
        label, total = device.type, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    memory = int(memory_gb * 1024) if memory_gb else int(total / 2**20)
    return Capabilities(device=label[:120], memory_mb=memory, families=families, host=socket.gethostname()[:255])
