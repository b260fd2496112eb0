"""Pick the torch device and precision; never assume CPU or CUDA."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from lorastudio.engine.models.families import full_size_families, get_family
from lorastudio.errors import Invalid

Precision = Literal["no", "fp16", "bf16"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn 'auto'/'cpu'/'cuda'/'mps' into a device that exists on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Invalid(
            "device 'cuda' was asked for but no CUDA GPU is visible; use $device auto or cpu", setting="device"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise Invalid(
            "device 'mps' was asked for but Apple MPS is not available; use $device auto or cpu", setting="device"
        )
    return torch.device(name)


@dataclass(frozen=True)
class DeviceInfo:
    """One device a worker can hand a job: its index, name and memory."""

    index: int
    name: str
    memory_mb: int


# The share of a linear speed-up each added device is assumed to bring to a data-parallel run: LoRA gradients
# are a few MB, so the all-reduce is small beside a step. Assumed, not measured on a multi-GPU machine yet.
DATA_PARALLEL_EFFICIENCY = 0.9


def detect_devices(device_setting: str = "auto", count: int | None = None) -> list[DeviceInfo]:
    """The devices this machine offers: every CUDA device (or the first `count`); on a CPU, `count` (default
    1) CPU "devices" sharing the cores and the RAM, for data-parallel runs that are tested without a GPU."""
    device = resolve_device(device_setting)
    if count is not None and count < 1:
        raise Invalid(f"$device count must be at least 1, not {count}", setting="device")
    if device.type == "cuda":
        found = torch.cuda.device_count()
        if count is not None and count > found:
            raise Invalid(
                f"{count} CUDA devices were asked for but this machine has {found}; ask for {found} or fewer",
                setting="device",
            )
        infos = []
        for i in range(count or found):
            props = torch.cuda.get_device_properties(i)
            infos.append(DeviceInfo(i, f"cuda: {props.name}"[:120], int(props.total_memory / 2**20)))
        return infos
    n = count or 1
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return [DeviceInfo(i, device.type, int(ram / n / 2**20)) for i in range(n)]


def resolve_precision(precision: str, device: torch.device, family: str | None = None) -> Precision:
    """Check a mixed-precision request against the device. 'auto' is bf16 (else fp16) on CUDA; on a CPU
    with bf16 instructions it is bf16 for full-size models (1.9x faster a step on the SD1.5 UNet,
    benchmarks/levers.py) and fp32 for the tiny and toy-world ones (bf16 was 0.64x there); else fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and _full_size(family) and cpu_has_bf16():
            return "bf16"
        return "no"
    if precision not in ("no", "fp16", "bf16"):
        raise Invalid(f"mixed precision must be auto, no, fp16 or bf16, not {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise Invalid(
            "fp16 training needs a GPU; on CPU use $precision no (or bf16 on recent CPUs)", setting="precision"
        )
    return precision  # type: ignore[return-value]


def _full_size(family: str | None) -> bool:
    """A real family's model (the ones with memory figures), not a test or toy-world one."""
    return get_family(family) in full_size_families()


def cpu_has_bf16() -> bool:
    """True when oneDNN can run bf16 kernels natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def weight_dtype(precision: Precision) -> torch.dtype:
    """dtype of the frozen base weights for a precision setting (LoRA weights stay fp32)."""
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak accelerator memory since the last reset, in MB; None on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure on any device: CUDA raises torch.OutOfMemoryError, but the CPU
    and MPS allocators raise a plain RuntimeError that only says so in its message."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def available_cores(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's
    --cpus), which os.cpu_count() and torch's default thread count both ignore."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def threads_per_process(processes: int) -> int:
    """torch threads for each of `processes` CPU-bound processes sharing this machine's cores: more
    threads than cores in all makes every process slower than its share (benchmarks/levers.py --threads).
    An OMP_NUM_THREADS the operator set is a cap (the deploy test's 3 workers on 2 cores use 1 each)."""
    share = max(1, available_cores() // max(1, processes))
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(share, int(asked)) if asked.isdigit() and int(asked) > 0 else share
