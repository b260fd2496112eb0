"""Keep one base model loaded and LoRA adapters resident between generations (LRU by count and size).

Switching the LoRA set only changes adapter weights; the base model is loaded again only when a
different base is asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from lorastudio.config import Settings
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.lora.fit import check_fits
from lorastudio.engine.models.basemodel import BaseModel, load_base_model, weights_hash
from lorastudio.engine.models.device import resolve_device
from lorastudio.errors import NotFound


@dataclass
class LoadedLora:
    """A LoRA file resident in the pipeline as a named adapter."""

    adapter: str
    name: str
    path: Path
    sha256: str
    kind: str | None
    triggers: tuple[str, ...]
    description: str
    recommended_strength: float | None
    megabytes: float
    warnings: tuple[str, ...] = ()  # what was wrong with the file's metadata (ignored values)


def resolve_lora(name_or_path: str | Path, search_dirs: list[Path]) -> Path:
    """A LoRA given as a path, or as a name looked up as <dir>/<name>.safetensors in search_dirs."""
    text = str(name_or_path)
    try:
        path = Path(text).expanduser()
        if path.is_file():
            return path
        for folder in search_dirs:
            candidate = folder / f"{text}.safetensors"
            if "/" not in text and "\\" not in text and candidate.is_file():
                return candidate
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte
        pass
    known = sorted(p.stem for d in search_dirs if d.is_dir() for p in d.glob("*.safetensors"))
    hint = f" Known LoRAs: {', '.join(known[:20])}" if known else ""
    raise NotFound(f"LoRA {text[:80]!r} not found as a file or in {', '.join(map(str, search_dirs))}.{hint}")


def alpha_folded(lora) -> dict[str, torch.Tensor]:
    """The kohya tensors with each module's alpha/rank folded into its up weight and the alphas dropped.

    diffusers' kohya loader (0.42) misnames the alphas of attention modules, so a file whose modules
    have different alphas would be applied with the most common one everywhere; without alpha keys it
    scales every module by 1, which the folded up weights make right."""
    tensors = dict(lora.tensors)
    for stem in lora.stems:
        alpha = tensors.pop(f"{stem}.alpha", None)
        if alpha is None:
            continue
        up = tensors[f"{stem}.lora_up.weight"]
        rank = tensors[f"{stem}.lora_down.weight"].shape[0]
        tensors[f"{stem}.lora_up.weight"] = (up.float() * (float(alpha) / rank)).to(up.dtype)
    return tensors


class PipelineCache:
    """One warm base model plus an LRU of LoRA adapters loaded into it."""

    def __init__(self, settings: Settings, *, max_loras: int = 8, max_lora_mb: float = 4096):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.max_loras, self.max_lora_mb = max_loras, max_lora_mb
        self.base: BaseModel | None = None
        self.base_spec: str | None = None
        self.loras: OrderedDict[str, LoadedLora] = OrderedDict()
        self._hashes: dict[tuple[str, float, int], str] = {}
        self.base_loads = 0  # how often a base model was loaded (the benchmark and tests read it)

    def get_base(self, spec: str) -> BaseModel:
        """The loaded base model for spec, loading it (and dropping the previous one) if needed."""
        if self.base is not None and spec == self.base_spec:
            return self.base
        self.base, self.base_spec, self.loras = None, None, OrderedDict()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        base = load_base_model(spec, self.settings, dtype=self.dtype)
        base.pipe.to(self.device)
        self.base, self.base_spec = base, spec
        self.base_loads += 1
        return base

    def file_hash(self, path: Path) -> str:
        """sha256 of a LoRA file, remembered by (path, mtime, size)."""
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = weights_hash(path)
        return self._hashes[key]

    def load_lora(self, path: Path, keep: set[str] = frozenset()) -> LoadedLora:
        """Make the LoRA file resident as an adapter (checked against the base first); LRU-evict others."""
        base = self.base
        assert base is not None, "get_base() first"
        digest = self.file_hash(path)
        adapter = f"lora_{digest[:16]}"
        if adapter in self.loras:
            self.loras.move_to_end(adapter)
            return self.loras[adapter]
        lora = read_lora(path)
        check_fits(lora, base)  # refuse before anything is applied: no partial loads
        megabytes = sum(t.numel() * t.element_size() for t in lora.tensors.values()) / 2**20
        self._evict(megabytes, keep)
        base.pipe.load_lora_weights(alpha_folded(lora), adapter_name=adapter)
        info = lora.info
        loaded = LoadedLora(
            adapter=adapter,
            name=path.stem,
            path=path.resolve(),
            sha256=digest,
            kind=info.kind,
            triggers=tuple(info.trigger_words),
            description=info.description,
            recommended_strength=info.recommended_strength,
            megabytes=megabytes,
            warnings=tuple(f"{path.stem}: {w}" for w in info.warnings),
        )
        self.loras[adapter] = loaded
        return loaded

    def _evict(self, incoming_mb: float, keep: set[str]) -> None:
        def over() -> bool:
            total = sum(x.megabytes for x in self.loras.values()) + incoming_mb
            return len(self.loras) + 1 > self.max_loras or total > self.max_lora_mb

        for adapter in list(self.loras):
            if not over():
                break
            if adapter in keep:
                continue
            self.base.pipe.delete_adapters(adapter)
            del self.loras[adapter]

    def activate(self, weights: dict[str, float]) -> None:
        """Apply exactly these adapters at these strengths; zero strengths are left out entirely,
        and names are sorted, so strength 0 is the plain model and stacking order cannot matter."""
        pipe = self.base.pipe
        active = sorted((a, w) for a, w in weights.items() if w != 0)
        if not active:
            if self.loras:
                pipe.disable_lora()
            return
        pipe.enable_lora()
        pipe.set_adapters([a for a, _ in active], adapter_weights=[w for _, w in active])
