"""Import LoRAs written by other tools (diffusers, peft) into kohya form, and name peft modules kohya's way.

Keys are `<component>.<module path>.<part>`, component unet / text_encoder / text_encoder_2 (peft's
`base_model.model.` or no component at all: the module path says UNet or CLIP). Parts accepted, in any mix,
as diffusers' own loader accepts them:
- diffusers: `.lora.down.weight` / `.lora.up.weight` (UNet), `.lora_linear_layer.down.weight` (text encoders)
- peft: `.lora_A.weight` / `.lora_B.weight`, with or without the adapter name (`.lora_A.default.weight`)
- diffusers' old attention processors: `<attn>.processor.to_q_lora.down.weight` (to_out_lora: the UNet's
  to_out.0, CLIP's out_proj)
- `<module path>.alpha`, kohya's alpha for that module
Refused, with what to do: DoRA, LoRA biases, weights that are no LoRA pair, models that are not SD1.5/SDXL.
The transformer families' dotted keys are read by lora/layouts/foreign.py.
"""

from __future__ import annotations

import json
import math
import re

import torch

from lorastudio.engine.lora.info import KEYS
from lorastudio.engine.lora.keys import te_kohya_name, te_kohya_prefix, unet_kohya_name
from lorastudio.errors import Invalid, Unsupported

_ADAPTER_SEGMENT = re.compile(r"\.lora_([AB])\.[^.]+\.weight$")
# One key of a LoRA pair: module path, then its down/up part in any spelling diffusers' loaders accept.
_PAIR_KEY = re.compile(
    r"^(?P<path>.+?)\."
    r"(?:(?P<proc>to_q|to_k|to_v|to_out)_lora\.(?P<proc_part>down|up)"
    r"|(?:lora|lora_linear_layer)\.(?P<part>down|up)"
    r"|lora_(?P<ab>[AB])(?:\.[^.]+)?)\.weight$"
)
_PEFT_MODEL = "base_model.model."  # what get_peft_model_state_dict of a PeftModel puts before module paths
_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_CONFIG_COMPONENTS = (*_COMPONENTS, "transformer")  # whose LoraConfig lora_adapter_metadata may hold
_UNET_ROOTS = ("down_blocks", "up_blocks", "mid_block", "conv_in", "conv_out", "time_embedding", "add_embedding")
_CLIP_ROOTS = ("text_model", "encoder", "embeddings", "final_layer_norm", "text_projection")
# The old attention processors named their LoRAs after the attention's projection, not the layer.
_PROCESSOR_LAYER = {
    "unet": {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"},
    "clip": {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"},
}
# Every SDXL-shaped UNet's upsampling up blocks also attend, so the SGM upsampler slot is 2 (keys.py).
_UP_BLOCKS_ATTEND = {i: True for i in range(8)}
_SDXL_DEPTH = re.compile(r"\.transformer_blocks\.[1-9]")  # SDXL stacks 2-10 per attention, SD1.5/2.x one


def lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights of a peft-injected module as `<path>.lora_A.weight` / `.lora_B.weight` (adapter name dropped)."""
    return {
        _ADAPTER_SEGMENT.sub(r".lora_\1.weight", name): p.detach()
        for name, p in module.named_parameters()
        if _ADAPTER_SEGMENT.search(name)
    }


def is_diffusers_layout(tensors: dict[str, torch.Tensor]) -> bool:
    """True for LoRA keys in a diffusers or peft layout (as opposed to kohya's lora_unet_/lora_te_)."""
    return any(_PAIR_KEY.match(k) for k in tensors)


def diffusers_to_kohya(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """Convert a diffusers/peft-layout LoRA (any layout in the module docstring) to kohya keys."""
    modules: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        component, path, part = _split(key)
        parts = modules.setdefault((component, path), {})
        if part in parts:
            raise Invalid(f"this LoRA holds two {part} weights for {component} module {path[:80]}; it is damaged")
        if part != "alpha" and tensor.ndim < 2:
            raise Invalid(f"this LoRA is damaged: the {part} weight of {component} module {path[:80]} is no matrix")
        parts[part] = tensor
    sdxl = _sdxl_like(modules)
    layers_per_block = _int(metadata.get(KEYS["layers_per_block"]), 2)
    configs = _peft_configs(metadata)
    out: dict[str, torch.Tensor] = {}
    for (component, path), parts in modules.items():
        if "down" not in parts and "up" not in parts:
            continue  # an alpha with no weights changes nothing
        if "down" not in parts:
            raise Invalid(f"this LoRA is incomplete: {component} module {path[:80]} has a lora_up but no lora_down")
        stem = _stem(component, path, sdxl, layers_per_block)
        if f"{stem}.lora_down.weight" in out:
            raise Invalid(f"this LoRA holds two weights for {stem[:80]} (spelled two ways); it is damaged")
        rank = int(parts["down"].shape[0])
        if "alpha" in parts:
            if parts["alpha"].numel() != 1:
                raise Invalid(f"this LoRA is damaged: the alpha of {component} module {path[:80]} is not one number")
            alpha = float(parts["alpha"].reshape(()))
        else:
            alpha = _alpha(configs.get(component, configs.get("", {})), path, rank)
        out[f"{stem}.lora_down.weight"] = parts["down"]
        if "up" in parts:  # a missing up weight is reported by read_lora's pair check
            out[f"{stem}.lora_up.weight"] = parts["up"]
        out[f"{stem}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    return out


def _split(key: str) -> tuple[str, str, str]:
    """(component, module path, down/up/alpha) of one key; Unsupported for what a kohya LoRA cannot hold."""
    name = key.removeprefix(_PEFT_MODEL)
    component, _, rest = name.partition(".")
    if component not in _COMPONENTS:
        component, rest = _component_of(name, key), name
    if "lora_magnitude_vector" in rest or "dora_scale" in rest:
        raise Unsupported(
            f"this is a DoRA (weight-decomposed LoRA, e.g. {key[:80]}); a kohya LoRA cannot hold its magnitudes, "
            "so loading it as a LoRA would give wrong images - merge it into the base model (peft's "
            "merge_and_unload) or use it in a tool that supports DoRA"
        )
    match = _PAIR_KEY.match(rest)
    if match:
        # diffusers drops `.processor` wherever it appears (KEYS_TO_ALWAYS_REPLACE); so do we.
        path = re.sub(r"\.processor(?=\.|$)", "", match["path"])
        if match["proc"]:
            layers = _PROCESSOR_LAYER["unet" if component == "unet" else "clip"]
            return component, f"{path}.{layers[match['proc']]}", match["proc_part"]
        return component, path, match["part"] or {"A": "down", "B": "up"}[match["ab"]]
    if rest.endswith(".alpha"):
        return component, rest.removesuffix(".alpha"), "alpha"
    if re.search(r"\.(lora_B|lora\.up|lora_linear_layer\.up)(\.[^.]+)?\.bias$", rest):
        raise Unsupported(
            f"this LoRA has bias weights ({key[:80]}, peft's lora_bias=True), which a kohya LoRA cannot hold - "
            "merge it into the base model in peft (merge_and_unload), or retrain without lora_bias"
        )
    raise Unsupported(
        f"this LoRA holds weights that are no LoRA down/up pair or alpha (e.g. {key[:80]}); applying only the "
        "rest would silently change what it does - convert it to a plain LoRA in the tool that made it"
    )


def _component_of(name: str, key: str) -> str:
    """The part a key without a component prefix belongs to, from its module path."""
    root = name.split(".", 1)[0]
    if root in _UNET_ROOTS:
        return "unet"
    if root in _CLIP_ROOTS:
        return "text_encoder"  # without a prefix nothing tells SDXL's two encoders apart: the first
    raise Unsupported(
        f"this LoRA is not for an SD1.5- or SDXL-family model: {key[:80]} names no part of their UNet or "
        f"CLIP text encoders ({root[:40]!r} is e.g. Flux's or SD3's transformer); use it with the model it was "
        "made for, or a LoRA trained for an SD1.5/SDXL base"
    )


def _stem(component: str, path: str, sdxl: bool, layers_per_block: int) -> str:
    if component != "unet":
        return te_kohya_name(te_kohya_prefix(1 if component == "text_encoder_2" else 0, sdxl), path)
    try:
        return unet_kohya_name(path, sdxl, layers_per_block, _UP_BLOCKS_ATTEND)
    except (ValueError, KeyError, IndexError) as exc:
        raise Unsupported(
            f"UNet module {path[:80]} has no name in the SGM layout kohya files use for SDXL, so this LoRA cannot "
            "be applied; it may be for another architecture - use a LoRA trained for an SDXL-family base"
        ) from exc


def _sdxl_like(modules: dict[tuple[str, str], dict[str, torch.Tensor]]) -> bool:
    """Whether to use SDXL (SGM) names: read from the file's structure, as diffusers files carry no label."""
    if any(component == "text_encoder_2" for component, _ in modules):
        return True
    unet = {path: parts for (component, path), parts in modules.items() if component == "unet"}
    widths = {int(p["down"].shape[1]) for path, p in unet.items() if path.endswith("attn2.to_k") and "down" in p}
    if widths & {768, 1024}:  # cross-attention on SD1.5's / SD2's text encoder
        return False
    if 2048 in widths or any(path.startswith("add_embedding") for path in unet):
        return True
    if any(path.startswith("down_blocks.0.attentions.") for path in unet):  # SDXL's first block does not attend
        return False
    return any(_SDXL_DEPTH.search(path) for path in unet)


def default_alpha(metadata: dict[str, str]):
    """(module path, rank) -> kohya alpha of a transformer module a file gives no alpha: from diffusers'
    lora_adapter_metadata (the transformer's LoraConfig), else the rank (scale 1, as diffusers loads it)."""
    configs = _peft_configs(metadata)
    config = configs.get("transformer", configs.get("", {}))
    return lambda path, rank: _alpha(config, path, rank)


def _peft_configs(metadata: dict[str, str]) -> dict[str, dict]:
    """LoraConfig fields per component from diffusers' `lora_adapter_metadata`: flat `unet.lora_alpha` keys
    (pipelines), one dict per component, or one model's own unprefixed config (ModelMixin.save_lora_adapter,
    kept under ""). Metadata is untrusted, so anything else is ignored."""
    try:
        data = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, dict] = {}
    for key, value in data.items():
        component, _, field = key.rpartition(".")
        nested = key.removesuffix("_lora_adapter_metadata")
        if component in _CONFIG_COMPONENTS:
            out.setdefault(component, {})[field] = value
        elif nested in _CONFIG_COMPONENTS and isinstance(value, dict):
            out.setdefault(nested, {}).update(value)
        elif not component:
            out.setdefault("", {})[key] = value
    return out


def _alpha(config: dict, path: str, rank: int) -> float:
    """kohya alpha (scale alpha/rank) giving the scale peft would use for this module."""
    alpha = _number(config.get("lora_alpha"))
    patterns = config.get("alpha_pattern")
    for pattern, value in patterns.items() if isinstance(patterns, dict) else ():
        if _pattern_hit(pattern, path) and _number(value) is not None:
            alpha = _number(value)
            break
    if alpha is None:
        return float(rank)  # no alpha anywhere: diffusers loads such files at scale 1
    return alpha * math.sqrt(rank) if config.get("use_rslora") is True else alpha  # rsLoRA scales by alpha/sqrt(r)


def _pattern_hit(pattern: str, path: str) -> bool:
    """peft's alpha_pattern rule, `(.*\\.)?(pattern)$`, for module names only: a regex from an untrusted
    file is not run (a crafted one could hang the loader), so it leaves lora_alpha in force."""
    name = pattern.removeprefix("^")
    paths = {path, path.removeprefix("text_model.")}  # transformers 5 dropped CLIP's text_model level
    if pattern.startswith("^"):
        return name in paths
    return any(p == name or p.endswith("." + name) for p in paths)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # JSON integers have no size limit
        return None
    return number if math.isfinite(number) else None


def _int(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        return default
    return value if 1 <= value <= 16 else default
