"""LoRA files: save in kohya format with ss_* metadata, read and check any file, import diffusers/peft.

In memory a LoRA is kohya-keyed tensors (`<stem>.lora_down.weight`, `.lora_up.weight`, `.alpha`)
plus string metadata, because that is what every SD tool reads.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lorastudio.engine.fileio.atomic import write_atomic
from lorastudio.engine.lora.keys import te_kohya_name, te_kohya_prefix, unet_kohya_name
from lorastudio.engine.models.basemodel import PICKLE_SUFFIXES, family_label
from lorastudio.engine.training.presets import check_trigger
from lorastudio.errors import FamilyMismatch, Invalid, NotFound, Unsupported

OURS = "lorastudio_"  # prefix of our own metadata keys beside kohya's ss_*
SS_BASE_VERSION = {
    "toyworld": "sd_v1",
    "sd15": "sd_v1",
    "sdxl": "sdxl_base_v1-0",
    "tiny-sd15": "sd_v1",
    "tiny-sdxl": "sdxl_base_v1-0",
}


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
    def family(self) -> str | None:
        """Base family from our metadata, kohya's metadata or the tensor shapes; None if unknown."""
        if self.metadata.get(OURS + "base_family"):
            return self.metadata[OURS + "base_family"]
        return infer_family(self.tensors)

    @property
    def trigger_words(self) -> list[str]:
        """Trigger words recorded in metadata (ours or kohya's tag frequency fallback)."""
        raw = self.metadata.get(OURS + "trigger_words")
        if raw:
            return json.loads(raw)
        return []

    @property
    def description(self) -> str:
        """What the subject looks like in plain words (ours, or the SAI model spec's), "" if not recorded."""
        return (self.metadata.get(OURS + "description") or self.metadata.get("modelspec.description") or "").strip()


def infer_family(tensors: dict[str, torch.Tensor]) -> str | None:
    """Guess the base family from key names and the width of cross-attention key projections."""
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
    if widths:
        return "tiny-sdxl" if sdxl else "tiny-sd15"
    return "sdxl" if sdxl else None


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors atomically (temp file, then rename over the target)."""
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return write_atomic(path, lambda tmp: save_file(plain, tmp, metadata=metadata))


def check_lora_path(path: Path) -> Path:
    """LoRA files are written as .safetensors only; refuse any other name before work starts."""
    if path.suffix.lower() != ".safetensors":
        raise Invalid(f"LoRA files are saved as .safetensors; use a name like {path.stem}.safetensors")
    return path


_ADAPTER_SEGMENT = re.compile(r"\.lora_([AB])\.[^.]+\.weight$")


def lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights of a peft-injected module as `<path>.lora_A.weight` / `.lora_B.weight` (adapter name dropped)."""
    return {
        _ADAPTER_SEGMENT.sub(r".lora_\1.weight", name): p.detach()
        for name, p in module.named_parameters()
        if _ADAPTER_SEGMENT.search(name)
    }


def peft_to_kohya(
    state: dict[str, torch.Tensor],
    stem_of,
    alpha: float,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """peft state (`<path>.lora_A.weight`/`lora_B`) -> kohya tensors, naming each module by stem_of(path)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if ".lora_A." in key:
            path, part = key.split(".lora_A.")[0], "lora_down"
        elif ".lora_B." in key:
            path, part = key.split(".lora_B.")[0], "lora_up"
        else:
            continue
        stem = stem_of(path)
        out[f"{stem}.{part}.weight"] = tensor.detach().to(dtype)
        out[f"{stem}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def save_lora(path: Path, lora: LoraFile) -> Path:
    """Check and write a LoRA file (.safetensors only)."""
    check_lora_path(path)
    _check_tensors(lora.tensors, path.name)
    return write_safetensors(path, lora.tensors, {k: str(v) for k, v in lora.metadata.items()})


def describe_lora(path: Path, description: str | None = None, trigger: str | None = None) -> LoraFile:
    """Record a plain-words description (and optionally the trigger word) in a LoRA file's metadata,
    rewriting it atomically in kohya form; the weights are untouched."""
    lora = read_lora(path)
    if description is not None:
        if len(description) > 300:
            raise Invalid(f"a description is at most 300 characters (got {len(description)}); keep it to the look")
        lora.metadata[OURS + "description"] = lora.metadata["modelspec.description"] = description.strip()
    if trigger is not None:
        lora.metadata[OURS + "trigger_words"] = json.dumps([check_trigger(trigger)])
        lora.metadata["modelspec.trigger_phrase"] = trigger
    save_lora(path, lora)
    return lora


def read_lora(path: Path) -> LoraFile:
    """Read any supported LoRA file into kohya form, refusing pickles, bad headers and NaN/Inf weights."""
    if not path.exists():
        raise NotFound(f"LoRA file {path} does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise Unsupported(
            f"{path.name} is a pickle file, which can run arbitrary code when opened, so it is never loaded. "
            "Ask the author for a .safetensors version, or convert it in a tool you trust "
            "(e.g. kohya_ss Utilities -> 'Convert model')."
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not iterable
    except (SafetensorError, OSError, ValueError) as exc:
        raise Invalid(
            f"{path.name} is not a valid .safetensors file (header unreadable: {exc}); "
            "the download may be incomplete - fetch it again"
        ) from exc
    if not tensors:
        raise Invalid(f"{path.name} holds no tensors; it is not a LoRA")
    _check_tensors(tensors, path.name)
    if any(k.startswith(("lora_unet_", "lora_te")) for k in tensors):
        lora = LoraFile(tensors, metadata, "kohya")
    elif any(".lora_A." in k or ".lora.down." in k for k in tensors):
        lora = LoraFile(diffusers_to_kohya(tensors, metadata), metadata, "diffusers")
    else:
        raise Invalid(
            f"{path.name} has no LoRA weights (no lora_unet_/lora_te keys and no lora_A/lora_B keys); "
            "if it is a base model, pass it with --base"
        )
    _check_pairs(lora, path.name)
    return lora


def _check_tensors(tensors: dict[str, torch.Tensor], name: str) -> None:
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise Invalid(
            f"{name} has NaN/Inf values in {len(bad)} tensor(s) (first: {bad[0]}); the training that made it "
            "diverged - retrain with a lower learning rate or use an earlier checkpoint"
        )


def _check_pairs(lora: LoraFile, name: str) -> None:
    for stem in lora.stems:
        if f"{stem}.lora_up.weight" not in lora.tensors:
            raise Invalid(f"{name} is incomplete: {stem} has a lora_down but no lora_up weight")
    if not lora.stems:
        raise Invalid(f"{name} has no lora_down/lora_up pairs")


def diffusers_to_kohya(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """Convert a diffusers/peft-format LoRA (unet./text_encoder. prefixes, lora_A/B) to kohya keys."""
    if any(".lora.down." in k or "_lora.down." in k for k in tensors):
        raise Unsupported(
            "this LoRA uses the old diffusers attention-processor format; load and re-save it with a "
            "current diffusers (pipe.load_lora_weights, then save_lora_weights) to convert it"
        )
    alphas = _peft_alphas(metadata)
    sdxl = any(k.startswith("text_encoder_2.") for k in tensors) or "add_embedding" in " ".join(tensors)
    layers_per_block = int(metadata.get(OURS + "layers_per_block", 2))
    up_attn = {i: True for i in range(8)}  # real SDXL: every up block with an upsampler has attentions
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        component, _, rest = key.partition(".")
        if component not in ("unet", "text_encoder", "text_encoder_2"):
            component, rest = "unet", key
        grouped.setdefault(component, {})[rest.replace(".default.", ".")] = tensor
    out: dict[str, torch.Tensor] = {}
    for component, state in grouped.items():
        if component == "unet":
            sdxl = sdxl or any(w.shape[-1] == 2048 for k, w in state.items() if "attn2.to_k.lora_A" in k)

            def stem_of(p: str, _sdxl: bool = sdxl) -> str:
                return unet_kohya_name(p, _sdxl, layers_per_block, up_attn)
        else:
            prefix = te_kohya_prefix(1 if component == "text_encoder_2" else 0, sdxl)

            def stem_of(p: str, _prefix: str = prefix) -> str:
                return te_kohya_name(_prefix, p)

        rank = next((t.shape[0] for k, t in state.items() if ".lora_A." in k), 1)
        alpha = alphas.get(component, rank)
        out.update(peft_to_kohya(state, stem_of, alpha, next(iter(state.values())).dtype))
    return out


def _peft_alphas(metadata: dict[str, str]) -> dict[str, float]:
    """lora_alpha per component from diffusers' `lora_adapter_metadata`, when the file has it."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    out = {}
    for key, value in data.items():
        if key.endswith(".lora_alpha"):  # flat form: "unet.lora_alpha", "text_encoder.lora_alpha"
            out[key.rsplit(".", 1)[0]] = float(value)
        elif isinstance(value, dict) and "lora_alpha" in value:  # nested form, one dict per component
            out[key.split("_lora_adapter_metadata")[0]] = float(value["lora_alpha"])
    return out


def inspect_lora(path: Path) -> dict:
    """What a LoRA file holds: format, family, rank, alpha, modules per part, triggers, metadata."""
    lora = read_lora(path)
    ranks = Counter(int(lora.tensors[f"{s}.lora_down.weight"].shape[0]) for s in lora.stems)
    alphas = Counter(float(lora.tensors[f"{s}.alpha"]) for s in lora.stems if f"{s}.alpha" in lora.tensors)
    parts = Counter(s.split("_")[1] for s in lora.stems)  # unet, te, te1, te2
    family = lora.family
    tag_freq = _top_tags(lora.metadata.get("ss_tag_frequency"))
    return {
        "file": str(path),
        "format": lora.source_format,
        "family": family,
        "family_label": family_label(family) if family else "unknown",
        "rank": ranks.most_common(1)[0][0],
        "ranks": dict(ranks),
        "alpha": alphas.most_common(1)[0][0] if alphas else None,
        "modules": len(lora.stems),
        "modules_by_part": dict(parts),
        "kind": lora.metadata.get(OURS + "kind"),
        "trigger_words": lora.trigger_words,
        "description": lora.description,
        "recommended_strength": _float_or_none(lora.metadata.get(OURS + "recommended_strength")),
        "top_tags": tag_freq,
        "metadata": lora.metadata,
        "example_modules": lora.stems[:5],
    }


def _top_tags(raw: str | None, n: int = 10) -> list[tuple[str, int]]:
    if not raw:
        return []
    try:
        counts: Counter[str] = Counter()
        for tags in json.loads(raw).values():
            counts.update({k: int(v) for k, v in tags.items()})
        return counts.most_common(n)
    except (ValueError, AttributeError, TypeError):
        return []


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def check_compatible(lora: LoraFile, base_family: str, unet_table: dict[str, torch.nn.Module]) -> None:
    """Refuse a LoRA whose family or tensor shapes do not fit the base model; never partially apply."""
    family = lora.family
    unet_stems = [s for s in lora.stems if s.startswith("lora_unet_")]
    misfits = []
    for stem in unet_stems:
        module = unet_table.get(stem)
        down = lora.tensors[f"{stem}.lora_down.weight"]
        up = lora.tensors[f"{stem}.lora_up.weight"]
        if module is None:
            misfits.append(stem)
            continue
        w = module.weight
        if down.shape[1] != w.shape[1] or up.shape[0] != w.shape[0]:
            misfits.append(stem)
    if (family and family != base_family) or misfits:
        lora_label = family_label(family) if family else "another model family"
        detail = f" ({len(misfits)} of {len(unet_stems)} UNet modules do not fit)" if misfits else ""
        raise FamilyMismatch(
            f"this LoRA was trained for {lora_label}, but the base model is {family_label(base_family)}"
            f"{detail}; use a base model of the LoRA's family or a LoRA trained for this one"
        )
