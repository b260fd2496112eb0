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
from lorastudio.engine.generation.slots import Layout, fits_slot, layout, slot_layers, swap_in
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.lora.fit import check_fits, module_table, spellings, stem_paths
from lorastudio.engine.lora.layouts import alpha_folded, to_diffusers_state
from lorastudio.engine.models.base import LoadedBase, base_family, load_base_model, weights_hash
from lorastudio.engine.models.device import resolve_device
from lorastudio.engine.models.families import get_family
from lorastudio.engine.models.loading import LOADING
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


class PipelineCache:
    """One warm base model plus an LRU of LoRA adapters loaded into it."""

    def __init__(self, settings: Settings, *, max_loras: int = 8, max_lora_mb: float = 4096):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.max_loras, self.max_lora_mb = max_loras, max_lora_mb
        self.base: LoadedBase | None = None
        self.base_spec: str | None = None
        self.loras: OrderedDict[str, LoadedLora] = OrderedDict()
        self._hashes: dict[tuple[str, float, int], str] = {}
        self._layouts: dict[str, Layout] = {}  # adapter -> the layers and ranks it was first loaded with
        self._slots = 0
        self._fused: tuple[tuple[str, float], ...] | None = None  # the set folded into the weights (fuse())
        self._pristine: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.base_loads = 0  # how often a base model was loaded (the benchmark and tests read it)
        self.swaps = 0  # how often a LoRA was copied into an evicted adapter's layers (slots.py)

    def get_base(self, spec: str) -> LoadedBase:
        """The loaded base model for spec, loading it (and dropping the previous one) if needed."""
        if self.base is not None and spec == self.base_spec:
            return self.base
        self.base, self.base_spec, self.loras, self._layouts = None, None, OrderedDict(), {}
        self._fused, self._pristine = None, []
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.device.type == "cuda":
            # FLUX, Qwen-Image and Z-Image are published and run in bf16; their text encoders (T5, Qwen) overflow
            # in fp16. SD keeps fp16, which every card runs.
            family = get_family(base_family(spec, self.settings))
            flow = family is not None and family.is_flow and torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if flow else torch.float16
        base = load_base_model(spec, self.settings, dtype=self.dtype)
        base.pipe.to(self.device)
        # kohya stem tables of this base, kept: peft wrappers keep the paths and the base layers
        self._paths = stem_paths(base)
        self._table = module_table(base)  # every stem, fused ones too
        self._aliases = spellings(base)
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
        for adapter, resident in self.loras.items():
            if resident.sha256 == digest:
                self.loras.move_to_end(adapter)
                return resident
        lora = read_lora(path)
        check_fits(lora, base, self._table, self._aliases)  # refuse before anything is applied: no partial loads
        megabytes = sum(t.numel() * t.element_size() for t in lora.tensors.values()) / 2**20
        self.unfuse()  # adapters are about to change (and a fused one may be the one replaced)
        incoming = layout(lora, self._table, self._aliases)
        # The hot swap copies kohya-keyed weights (alpha folded) into an adapter's layers; a fresh load hands the
        # pipeline what it loads as it is (lora/layouts: peft keys for the transformer families).
        swapped = self._swap(incoming, alpha_folded(lora), megabytes, keep) if incoming else None
        if swapped:
            adapter, megabytes = swapped  # a swapped-in file keeps the slot's size
        else:
            self._evict(megabytes, keep)
            self._slots += 1
            adapter = f"slot{self._slots}"
            with LOADING:  # peft patches torch for the whole process while it builds the adapter
                base.pipe.load_lora_weights(to_diffusers_state(lora, base), adapter_name=adapter)
            if incoming:
                self._layouts[adapter] = incoming[0]
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

    def _over(self, incoming_mb: float) -> bool:
        total = sum(x.megabytes for x in self.loras.values()) + incoming_mb
        return len(self.loras) + 1 > self.max_loras or total > self.max_lora_mb

    def _evict(self, incoming_mb: float, keep: set[str]) -> None:
        for adapter in list(self.loras):
            if not self._over(incoming_mb):
                break
            if adapter in keep:
                continue
            self.base.pipe.delete_adapters(adapter)
            del self.loras[adapter]
            self._layouts.pop(adapter, None)

    def _swap(
        self,
        incoming: tuple[Layout, dict[str, str]],
        tensors: dict[str, torch.Tensor],
        megabytes: float,
        keep: set[str],
    ) -> tuple[str, float] | None:
        """When an adapter must be evicted for this file, copy the file into the layers of one it fits
        (least recently used first, one with exactly its layers before that); its name and size."""
        if not self._over(megabytes):  # with room left a new adapter keeps the rest resident
            return None
        shape, names = incoming
        order = {adapter: i for i, adapter in enumerate(self.loras)}
        candidates = [
            a for a in self.loras if a not in keep and a in self._layouts and fits_slot(shape, self._layouts[a])
        ]
        for adapter in sorted(candidates, key=lambda a: (self._layouts[a] != shape, order[a])):
            slot = self._layouts[adapter]
            wrappers = {stem: self._paths[stem][0].get_submodule(self._paths[stem][1]) for stem in slot}
            layers = slot_layers(adapter, slot, wrappers)
            if layers is None:
                continue
            try:
                swap_in(adapter, tensors, names, layers)
            except ValueError:
                continue
            self.swaps += 1
            return adapter, max(megabytes, self.loras.pop(adapter).megabytes)
        return None

    def activate(self, weights: dict[str, float]) -> None:
        """Apply exactly these adapters at these strengths; zero strengths are left out entirely,
        and names are sorted, so strength 0 is the plain model and stacking order cannot matter."""
        self.unfuse()
        pipe = self.base.pipe
        active = sorted((a, w) for a, w in weights.items() if w != 0)
        if not active:
            if self.loras:
                pipe.disable_lora()
            return
        pipe.enable_lora()
        pipe.set_adapters([a for a, _ in active], adapter_weights=[w for _, w in active])

    def fuse(self, weights: dict[str, float]) -> None:
        """Like activate(), with the adapters folded into the base weights, where they stay until another
        set is asked for: the same set again (a storyboard's hero scene after scene) costs nothing, and
        each image runs at the plain model's speed."""
        wanted = tuple(sorted((a, w) for a, w in weights.items() if w != 0))
        if wanted == self._fused:
            return
        self.activate(dict(wanted))
        if not wanted:
            return
        names = {a for a, _ in wanted}
        self._pristine = _weights_under(self.base, names, offload=self.device.type == "cuda")
        self.base.pipe.fuse_lora(adapter_names=sorted(names))
        self._fused = wanted

    @property
    def fused_set(self) -> tuple[tuple[str, float], ...] | None:
        """(adapter, strength) pairs folded into the weights now, or None."""
        return self._fused

    def unfuse(self) -> None:
        """Put the base weights back exactly as loaded, if a set is fused."""
        if self._fused is None:
            return
        self.base.pipe.unfuse_lora()
        with torch.no_grad():  # subtracting the delta again is not exact in floating point: restore
            for param, original in self._pristine:
                param.copy_(original)
        self._pristine, self._fused = [], None


def _weights_under(base: LoadedBase, adapters: set[str], offload: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, copy) of every layer wrapped by one of these adapters: fusing them changes only these.
    On a GPU the copies are kept in host memory, which is cheaper than the device's."""
    out = []
    for part in (base.denoiser, *base.text_encoders):
        for module in part.modules():
            base, lora_a = getattr(module, "base_layer", None), getattr(module, "lora_A", None)
            if base is None or lora_a is None or getattr(base, "weight", None) is None:
                continue
            if any(a in lora_a for a in adapters):
                copy = base.weight.detach().to("cpu", copy=True) if offload else base.weight.detach().clone()
                out.append((base.weight, copy))
    return out
