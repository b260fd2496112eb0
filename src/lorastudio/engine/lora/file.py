"""LoRA files: save in kohya format, read and check any file, inspect.

In memory a LoRA is kohya-keyed tensors (`<stem>.lora_down.weight`, `.lora_up.weight`, `.alpha`)
plus string metadata, because that is what ComfyUI, Forge and kohya's trainers read; a transformer
family's stems are its standard layout's (lora/layouts/). What the metadata *means* (kind, triggers,
description, ...) is the typed record in lora/info.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lorastudio.engine.fileio.tensorfile import PICKLE_SUFFIXES, read_safetensors, write_safetensors
from lorastudio.engine.lora.convert import default_alpha, diffusers_to_kohya, is_diffusers_layout
from lorastudio.engine.lora.info import KEYS, LoraInfo, check_description, read_info
from lorastudio.engine.lora.layouts import z_image
from lorastudio.engine.lora.layouts.foreign import is_transformer_file, transformer_to_kohya
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
            info.family = infer_family(self.tensors, self.metadata)
        return info


# modelspec.architecture / ss_base_model_version prefixes other trainers write (sd-scripts' and musubi-tuner's
# sai_model_spec.py, ai-toolkit's base model versions), lowercased -> our family. SD files' claims are not
# read: toyworld and every SD1.5 fine-tune say sd_v1, so only the keys' widths name an SD family.
_CLAIMS = (
    ("flux-1", "flux1"),
    ("flux.1", "flux1"),
    ("flux1", "flux1"),
    ("flux-2-klein", "flux2-klein"),  # FLUX.2 [dev] is another model: only klein's claims name our family
    ("flux.2-klein", "flux2-klein"),
    ("flux_2_klein", "flux2-klein"),
    ("flux2_klein", "flux2-klein"),
    ("flux2-klein", "flux2-klein"),
    ("qwen-image", "qwen-image"),
    ("qwen_image", "qwen-image"),
    ("z-image", "z-image"),
    ("zimage", "z-image"),
    ("z_image", "z-image"),
)


def infer_family(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str | None:
    """Guess the base family from what the file claims, its key names and widths (for messages only:
    whether a LoRA fits is decided from the loaded base model's shapes)."""
    for field_name in ("modelspec.architecture", "ss_base_model_version"):
        claim = (metadata or {}).get(field_name, "").lower()
        for prefix, family in _CLAIMS:
            if claim.startswith(prefix):
                return family
    keys = list(tensors)
    transformer = _transformer_family(tensors)
    if transformer:
        return transformer
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


def _transformer_family(tensors: dict[str, torch.Tensor]) -> str | None:
    """A transformer family from its layout's stems; FLUX.1 and FLUX.2 by their MLPs' widths (FLUX.1: 4x
    the hidden size; FLUX.2's SwiGLU: 2 x 3x, and its single blocks' linear1 9x against FLUX.1's 7x)."""
    stems = {k.split(".", 1)[0] for k in tensors}
    if any(s.startswith("lora_unet_transformer_blocks_") for s in stems):
        return "qwen-image"
    if any(
        s.startswith(("lora_unet_layers_", "lora_unet_noise_refiner_", "lora_unet_context_refiner_")) for s in stems
    ):
        return "z-image"
    if not any(s.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_")) for s in stems):
        return None
    if any(s.endswith(("_mod_lin", "_modulation_lin")) for s in stems):
        return "flux1"
    for stem in stems:
        down, up = tensors.get(f"{stem}.lora_down.weight"), tensors.get(f"{stem}.lora_up.weight")
        if down is None or up is None or down.ndim != 2:
            continue
        ratio = up.shape[0] / down.shape[1]
        if stem.endswith(("_img_mlp_0", "_txt_mlp_0")) or stem.endswith("_linear1"):
            if ratio in (4, 7):
                return "flux1"
            if ratio in (6, 9):
                return "flux2-klein"
    return None


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
    try:
        lora = _to_kohya(tensors, metadata, path.name)
        _check_pairs(lora, path.name)
    except (IndexError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        # Shapes a writer never makes (a 0-d weight, a rank of 0, parts of one layer with other widths): a
        # damaged or hand-made file, said as such rather than as the arithmetic that tripped on it.
        raise Invalid(f"{path.name} is damaged: its LoRA weights have shapes no trainer writes ({exc})") from exc
    return lora


def _to_kohya(tensors: dict[str, torch.Tensor], metadata: dict[str, str], name: str) -> LoraFile:
    if any(k.startswith(("lora_unet_", "lora_te")) for k in tensors):
        lora = LoraFile(z_image.normalize_kohya(tensors), metadata, "kohya")
    elif is_transformer_file(tensors):
        family = metadata.get(KEYS["family"]) or infer_family({}, metadata)
        lora = LoraFile(transformer_to_kohya(tensors, family, default_alpha(metadata)), metadata, "diffusers")
    elif is_diffusers_layout(tensors):
        lora = LoraFile(diffusers_to_kohya(tensors, metadata), metadata, "diffusers")
    else:
        raise Invalid(
            f"{name} has no LoRA weights (no lora_unet_/lora_te keys and no diffusers/peft/ai-toolkit LoRA keys); "
            "if it is a base model, pass it as $base",
            setting="base",
        )
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
        if down.ndim < 2 or up.ndim < 2 or down.shape[0] != up.shape[1] or down.shape[0] == 0:
            raise Invalid(f"{name} is damaged: {stem[:80]} has lora_down/lora_up weights of mismatched rank")
        alpha = lora.tensors.get(f"{stem}.alpha")
        if alpha is not None and alpha.numel() != 1:
            raise Invalid(f"{name} is damaged: the alpha of {stem[:80]} is not one number")
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
