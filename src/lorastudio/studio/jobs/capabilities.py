"""What a job needs from a worker (model family, device memory) and what a worker has.

The service hands a job only to a worker that can run it: an SDXL training at 1024 px never goes to an
8 GB card, where it would only run out of memory after a long model load. The memory figures are the
family table's (`Family.train_memory` and `generate_memory` in engine/models/families.py): estimates for
LoRA training and inference with the settings the guide uses, scaled here by batch and pixels;
`lorastudio worker --memory-gb` states a card's usable memory when the detected total is not what a job
may take (a card shared with a display, say); a worker with several devices offers that much on each, and a
job's figure is what it needs on each device it runs on. A worker started without `--family` advertises only the
families whose smallest job fits that memory, so a FLUX.1 job is never claimed by a card that cannot hold it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from lorastudio.engine import FAMILIES, DeviceInfo, detect_devices, get_family, training_need_gb


def _memory_mb(fixed_gb: float, activations_gb: float) -> int:
    return int((fixed_gb + activations_gb) * 1024)


def training_memory_mb(
    family: str | None,
    base: str,
    *,
    resolution: int,
    batch_size: int,
    gradient_checkpointing: bool = False,
    quantize_base: str = "none",
    blocks_to_swap: int = 0,
) -> int | None:
    """Device memory a training needs, in MB, by the engine's own figure (the one its trainer refuses a card
    with); None when any worker can run it (a family without memory figures: the built-in small models', an
    unknown one's). `base` is the job's; its family decides."""
    fam = get_family(family)
    if fam is None:
        return None
    need = training_need_gb(
        fam,
        resolution=resolution,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        quantize_base=quantize_base,
        blocks_to_swap=blocks_to_swap,
    )
    return None if need is None else int(need * 1024)


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


def smallest_job_mb(family: str) -> int | None:
    """Device memory of the smallest job a family has (one image at its default size), in MB; None when any
    worker can run it (the built-in small models)."""
    return generation_memory_mb(family, "", width=None, height=None, batch=1)


def families_that_fit(memory_mb: int) -> tuple[str, ...]:
    """The families a worker with this much device memory can run at all: those whose smallest job fits
    (a training or a bigger generation of them may still need more; claim() checks each job's own need)."""
    return tuple(name for name in FAMILIES if (need := smallest_job_mb(name)) is None or need <= memory_mb)


@dataclass(frozen=True)
class Capabilities:
    """What one worker can run."""

    device: str  # "cuda: <card name>" or "cpu"
    memory_mb: int  # usable memory of each of its devices
    families: tuple[str, ...]
    host: str
    devices: tuple[DeviceInfo, ...] = ()  # the devices it hands jobs (empty: one, index 0)

    @property
    def device_ids(self) -> tuple[int, ...]:
        """The indices of its devices (one job holds each at a time)."""
        return tuple(d.index for d in self.devices) or (0,)


def detect(
    device_setting: str,
    *,
    memory_gb: float | None,
    families: tuple[str, ...] | None = None,
    devices: int | None = None,
) -> Capabilities:
    """This machine's worker capabilities: the devices the settings pick (`devices` of them; None: every CUDA
    device, or one on a CPU), the memory of each (the smallest, or `memory_gb`), and the families it runs
    (None: every family whose smallest job fits that memory)."""
    found = tuple(detect_devices(device_setting, devices))
    memory = int(memory_gb * 1024) if memory_gb else min(d.memory_mb for d in found)
    chosen = families_that_fit(memory) if families is None else families
    return Capabilities(
        device=found[0].name[:120], memory_mb=memory, families=chosen, host=socket.gethostname()[:255], devices=found
    )
