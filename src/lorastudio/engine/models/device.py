"""Pick the torch device and precision; never assume CPU or CUDA."""

from __future__ import annotations

from typing import Literal

import torch

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
        raise Invalid("device 'cuda' was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise Invalid("device 'mps' was asked for but Apple MPS is not available; use --device auto or cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """Check a mixed-precision request against the device; 'auto' means bf16/fp16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    if precision not in ("no", "fp16", "bf16"):
        raise Invalid(f"mixed precision must be auto, no, fp16 or bf16, not {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise Invalid("fp16 training needs a GPU; on CPU use --precision no (or bf16 on recent CPUs)")
    return precision  # type: ignore[return-value]


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
