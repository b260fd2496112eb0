"""Reading and writing .safetensors files, with one translation of their errors into what to do.

Every file the engine reads or writes as tensors (LoRAs, checkpoints, base-model headers) goes through
here, so a damaged file is always named and explained the same way, and no raw SafetensorError escapes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lorastudio.errors import Invalid, NotFound
from lorastudio.fileio import write_atomic

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


def _damaged(path: Path, exc: BaseException, hint: str) -> Invalid:
    return Invalid(f"{path.name} is not a readable .safetensors file ({exc}); {hint}")


def read_safetensors(
    path: Path, *, hint: str = "it may be incomplete or damaged - fetch or export it again"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the string metadata of a file; Invalid (with `hint`) when it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not iterable
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _damaged(path, exc, hint) from exc
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def read_safetensors_keys(path: Path, *, hint: str = "re-download or re-export it") -> list[str]:
    """Tensor names of a file without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return list(fh.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _damaged(Path(path), exc, hint) from exc


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors atomically (temp file, then rename over the target); metadata values become strings."""
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in metadata.items()}
    return write_atomic(Path(path), lambda tmp: save_file(plain, tmp, metadata=meta))
