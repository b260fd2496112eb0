"""LoRA files: save in kohya format, read and check any file, inspect.

In memory a LoRA is kohya-keyed tensors (`<stem>.lora_down.weight`, `.lora_up.weight`, `.alpha`)
plus string metadata, because that is what every SD tool reads. What the metadata *means* (kind,
triggers, description, ...) is the typed record in lora/info.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lorastudio.engine.fileio.tensorfile import PICKLE_SUFFIXES, read_safetensors, write_safetensors
from lorastudio.engine.lora.convert import diffusers_to_kohya, is_diffusers_layout
from lorastudio.engine.lora.info import LoraInfo, check_description, read_info
from lorastudio.engine.models.families import family_label
from lorastudio.engine.prompts import check_trigger
from lorastudio.errors import Invalid, NotFound, Unsupported


@dataclass
class LoraFile:
    """Kohya-keyed LoRA tensors and their metadata."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    source_format: str = "kohya"

    @property
    def stems(self) -> list[str]:
        """Module stems that carry a LoRA (sorted)."""
        return sorted(k[: -len(".lora_down.weight")] for k in self.tensors if k.endswith(".lora_down.weight"))

    @property
    def info(self) -> LoraInfo:
        """What the file says about itself (bad metadata values dropped, with warnings), plus rank/alpha."""
        ranks = Counter(int(self.tensors[f"{s}.lora_down.weight"].shape[0]) for s in self.stems)
        alphas = Counter(float(self.tensors[f"{s}.alpha"]) for s in self.stems if f"{s}.alpha" in self.tensors)
        rank = ranks.most_common(1)[0][0] if ranks else None
        alpha = alphas.most_common(1)[0][0] if alphas else None
        info = read_info(self.metadata, rank, alpha)
        if info.family is None:
            info.family = infer_family(self.tensors)
        return info


def infer_family(tensors: dict[str, torch.Tensor]) -> str | None:
    """Guess the base family from key names and the width of cross-attention key projections (for
    messages only: whether a LoRA fits is decided from the loaded base model's shapes)."""
    keys = list(tensors)
    sdxl = any(k.startswith(("lora_te1_", "lora_te2_")) or "_input_blocks_" in k for k in keys)
    sdxl = sdxl or any("_output_blocks_" in k or "_middle_block_" in k for k in keys)
    widths = {
        tensors[k].shape[1]
        for k in keys
        if k.endswith(".lora_down.weight") and "attn2_to_k" in k and tensors[k].ndim == 2
    }
    if 2048 in widths:
        return "sdxl"
    if 768 in widths:
        return "sd15"
    if 1024 in widths:
        return "sd2"
    return "sdxl" if sdxl and not widths else None


def check_lora_path(path: Path) -> Path:
    """LoRA files are written as .safetensors only; refuse any other name before work starts."""
    if path.suffix.lower() != ".safetensors":
        raise Invalid(f"LoRA files are saved as .safetensors; use a name like {path.stem[:40]}.safetensors")
    return path


def save_lora(path: Path, lora: LoraFile) -> Path:
    """Check and write a LoRA file (.safetensors only), atomically."""
    check_lora_path(path)
    _check_tensors(lora.tensors, path.name)
    return write_safetensors(path, lora.tensors, lora.metadata)


def describe_lora(path: Path, description: str | None = None, trigger: str | None = None) -> LoraFile:
    """Record a plain-words description (and optionally the trigger word) in a LoRA file's metadata,
    rewriting it atomically in kohya form; the weights are untouched."""
    lora = read_lora(path)
    info = lora.info
    if description is not None:
        info.description = check_description(description)
    if trigger is not None:
        info.trigger_words = [check_trigger(trigger)]
    lora.metadata.update(info.to_metadata())
    save_lora(path, lora)
    return lora


def read_lora(path: Path) -> LoraFile:
    """Read any supported LoRA file into kohya form, refusing pickles, bad headers and NaN/Inf weights."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"LoRA file {path} does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise Unsupported(
            f"{path.name} is a pickle file, which can run arbitrary code when opened, so it is never loaded. "
            "Ask the author for a .safetensors version, or convert it in a tool you trust "
            "(e.g. kohya_ss Utilities -> 'Convert model')."
        )
    tensors, metadata = read_safetensors(path, hint="the download may be incomplete - fetch it again")
    if not tensors:
        raise Invalid(f"{path.name} holds no tensors; it is not a LoRA")
    _check_tensors(tensors, path.name)
    if any(k.startswith(("lora_unet_", "lora_te")) for k in tensors):
        lora = LoraFile(tensors, metadata, "kohya")
    elif is_diffusers_layout(tensors):
        lora = LoraFile(diffusers_to_kohya(tensors, metadata), metadata, "diffusers")
    else:
        raise Invalid(
            f"{path.name} has no LoRA weights (no lora_unet_/lora_te keys and no diffusers/peft LoRA keys); "
            "if it is a base model, pass it as $base",
            setting="base",
        )
    _check_pairs(lora, path.name)
    return lora


def _check_tensors(tensors: dict[str, torch.Tensor], name: str) -> None:
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise Invalid(
            f"{name} has NaN/Inf values in {len(bad)} tensor(s) (first: {bad[0][:80]}); the training that made it "
            "diverged - retrain with a lower learning rate or use an earlier checkpoint"
        )


def _check_pairs(lora: LoraFile, name: str) -> None:
    for stem in lora.stems:
        if f"{stem}.lora_up.weight" not in lora.tensors:
            raise Invalid(f"{name} is incomplete: {stem[:80]} has a lora_down but no lora_up weight")
        down, up = lora.tensors[f"{stem}.lora_down.weight"], lora.tensors[f"{stem}.lora_up.weight"]
        if down.ndim < 2 or up.ndim < 2 or down.shape[0] != up.shape[1]:
            raise Invalid(f"{name} is damaged: {stem[:80]} has lora_down/lora_up weights of mismatched rank")
    if not lora.stems:
        raise Invalid(f"{name} has no lora_down/lora_up pairs")


def inspect_lora(path: Path) -> dict:
    """What a LoRA file holds: format, family, rank, alpha, modules per part, what it says about itself."""
    lora = read_lora(path)
    info = lora.info
    ranks = Counter(int(lora.tensors[f"{s}.lora_down.weight"].shape[0]) for s in lora.stems)
    parts = Counter(s.split("_")[1] for s in lora.stems)  # unet, te, te1, te2
    return {
        "file": str(path),
        "format": lora.source_format,
        "family": info.family,
        "family_label": family_label(info.family) if info.family else "unknown",
        "rank": info.rank,
        "ranks": dict(ranks),
        "alpha": info.alpha,
        "modules": len(lora.stems),
        "modules_by_part": dict(parts),
        "kind": info.kind,
        "trigger_words": info.trigger_words,
        "description": info.description,
        "recommended_strength": info.recommended_strength,
        "top_tags": info.tags,
        "training": info.to_dict()["training"],
        "warnings": info.warnings,
        "metadata": lora.metadata,
        "example_modules": lora.stems[:5],
    }
