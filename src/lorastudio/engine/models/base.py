"""Load a base model (built-in, diffusers folder, single .safetensors, or explicit hub id) and name its
family (the families themselves are one table in models/families.py)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch
from diffusers import DiffusionPipeline

from lorastudio.config import Settings
from lorastudio.engine.fileio.tensorfile import PICKLE_SUFFIXES, read_safetensors_keys
from lorastudio.engine.models.families import FAMILIES, Family, family_label, full_size_families
from lorastudio.engine.models.loading import loads_alone
from lorastudio.engine.models.tiny import FAMILY_MARKER, TINY_NAMES, ensure_tiny_model
from lorastudio.errors import Invalid, LoraStudioError, NotFound, Unsupported

TOYWORLD = "toyworld"
TOYWORLD_DIR = Path(__file__).parents[1] / "toyworld" / "weights"
BUILT_IN = (TOYWORLD, *TINY_NAMES)
_LABELS = [f.label for f in full_size_families()]
SUPPORTED = ", ".join(_LABELS[:-1]) + " or " + _LABELS[-1]  # "SD1.5, SDXL, ... or Z-Image", from the table
# A transformer pipeline class -> the family whose folders it loads (the real rows of the family table).
PIPELINE_FAMILIES = {f.pipeline: f.name for f in FAMILIES.values() if f.released_widths}


def family_from_unet_config(config: dict) -> str:
    """Name the family of a UNet from its config; SD2.x and unknown shapes are refused."""
    cross = config.get("cross_attention_dim")
    sdxl = config.get("addition_embed_type") == "text_time"
    if sdxl:
        return "sdxl" if cross == 2048 else "tiny-sdxl"
    if cross == 768:
        return "sd15"
    if cross == 1024:
        raise Unsupported("SD2.x base models are not supported yet; use an SD1.5- or SDXL-family model")
    return "tiny-sd15"


def family_from_transformer_config(pipeline: str, config: dict) -> str:
    """Name the family of a transformer pipeline from its class name and its denoiser's config: the real
    family at the released width, its tiny test model at any other."""
    name = PIPELINE_FAMILIES.get(pipeline) if isinstance(pipeline, str) else None
    if name is None:
        what = str(pipeline)[:60] if pipeline else "this pipeline"
        raise Unsupported(
            f"{what} models are not supported; give an {SUPPORTED} model "
            "(FLUX.2 [dev], edit and control variants are not supported yet)"
        )
    family = FAMILIES[name]
    if config.get("_class_name", family.denoiser) != family.denoiser:
        raise Unsupported(
            f"a {pipeline} folder whose transformer is {config.get('_class_name')}, not {family.denoiser}"
        )
    numbers = [config.get(k, 0) for k in ("dim", "num_attention_heads", "attention_head_dim")]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        raise Invalid(f"this {family.label} folder's transformer config has widths that are not whole numbers")
    width = numbers[0] if "dim" in config else numbers[1] * numbers[2]
    return name if width in family.released_widths else f"tiny-{name}"


def _lora_as_base() -> Invalid:
    return Invalid(
        f"this file is a LoRA, not a base model: it belongs in $loras; for $base give an {SUPPORTED} model",
        setting="loras",
    )


def family_from_checkpoint_keys(keys: list[str]) -> str:
    """Name the family of a single-file checkpoint from its tensor names: SD's original (LDM) layout, or
    FLUX.1 in BFL's keys, bare or under ComfyUI's `model.diffusion_model.` (as diffusers' and ComfyUI's
    detectors tell them: double blocks with QK-norm, and neither FLUX.2's shared modulations nor Chroma's
    distilled guidance layer)."""
    if any(k.startswith(("lora_unet_", "lora_te", "lora_transformer_")) or LORA_KEY.search(k) for k in keys):
        raise _lora_as_base()
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise Unsupported("this is an SD2.x checkpoint; SD2.x base models are not supported yet")
    bare = {k.removeprefix(COMFY_PREFIX) for k in keys}
    if "double_blocks.0.img_attn.norm.key_norm.scale" in bare:
        if "single_stream_modulation.lin.weight" in bare:
            raise Unsupported("single-file FLUX.2 checkpoints are not supported yet; use a diffusers folder")
        if "distilled_guidance_layer.in_proj.bias" in bare:
            raise Unsupported(f"Chroma checkpoints are not supported yet; give an {SUPPORTED} model")
        return "flux1"
    if "layers.0.adaLN_modulation.0.weight" in bare or "transformer_blocks.0.img_mod.1.weight" in bare:
        raise Unsupported(
            "single-file Z-Image and Qwen-Image checkpoints are not supported yet; use a diffusers folder"
        )
    raise Unsupported(
        "not a base-model checkpoint we recognise (no SD1.5, SDXL or FLUX.1 keys); "
        f"use a diffusers folder of {SUPPORTED}, or an SD1.5, SDXL or FLUX.1 .safetensors"
    )


COMFY_PREFIX = "model.diffusion_model."
LORA_KEY = re.compile(r"\.(lora_[AB]|lora_down|lora_up|lora\.(down|up))\.")


@dataclass
class LoadedBase:
    """A loaded base model: the pipeline (for its components) plus what we know about it."""

    name: str
    family: str
    source: Path | str
    pipe: DiffusionPipeline
    _hash: str | None = field(default=None, repr=False)

    @property
    def row(self) -> Family:
        """The family table's row for this model."""
        return FAMILIES[self.family]

    @property
    def denoiser(self) -> torch.nn.Module:
        """What predicts the noise (or the flow): the SD families' UNet, the others' transformer."""
        unet = getattr(self.pipe, "unet", None)
        return unet if unet is not None else self.pipe.transformer

    @property
    def unet(self) -> torch.nn.Module:
        """The denoising UNet of an SD-family model (transformer families have none: use `denoiser`)."""
        unet = getattr(self.pipe, "unet", None)
        if unet is None:
            raise AttributeError(f"a {family_label(self.family)} model has no UNet; use .denoiser")
        return unet

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        """The pipeline's text encoders in its order (text_encoder, text_encoder_2, ...)."""
        return _numbered(self.pipe, "text_encoder")

    @property
    def tokenizers(self) -> list:
        """Tokenizers matching text_encoders."""
        return _numbered(self.pipe, "tokenizer")

    @property
    def model_hash(self) -> str:
        """sha256 of the weights file (or of the denoiser's weights in a folder); A1111 shows its first 10 hex."""
        if self._hash is None:
            self._hash = weights_hash(self.source)
        return self._hash


def _numbered(pipe, stem: str) -> list:
    parts = [getattr(pipe, stem if n == 1 else f"{stem}_{n}", None) for n in (1, 2, 3)]
    return [p for p in parts if p is not None]


def weights_hash(source: Path | str) -> str:
    """sha256 of a single-file checkpoint, or of a diffusers folder's denoiser weights (unet/ or transformer/,
    its shards in name order)."""
    path = Path(source)
    files = [path] if path.is_file() else []
    if path.is_dir():
        for part in ("unet", "transformer"):
            files = sorted((path / part).glob("*.safetensors"))
            if files:
                break
    if not files:
        return "unknown"
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def is_model_name(spec: str) -> bool:
    """A plain name (no folder part, not hidden): what a model in the models folder is called."""
    return (
        bool(spec) and "\x00" not in spec and Path(spec).name == spec and not spec.startswith(".") and "\\" not in spec
    )


def resolve_base_spec(spec: str, models_dir: Path) -> Path | str:
    """Turn a --base value into a local path (building a tiny model on demand) or an 'hf:' id. A plain name
    is a model in the models folder first (as `models list` names it), then a path."""
    if spec == TOYWORLD:
        return TOYWORLD_DIR
    if spec in TINY_NAMES:
        return ensure_tiny_model(spec, models_dir)
    if spec.startswith("hf:"):
        return spec
    if is_model_name(spec) and (models_dir / spec).exists():
        return models_dir / spec
    path = Path(spec).expanduser()
    if not path.exists():
        raise NotFound(
            f"base model {spec!r} not found: give a diffusers folder, a .safetensors file, "
            f"a built-in name ({', '.join(BUILT_IN)}), or 'hf:<org>/<repo>' to download"
        )
    return path


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise Unsupported(
            f"{path.name} is a pickle checkpoint, which can run arbitrary code when opened, so LoRA Studio "
            "never loads it. Convert it once to .safetensors in a tool you trust (for example kohya_ss "
            "'Convert model', or diffusers' convert scripts) and use that file."
        )


def detect_family(source: Path | str) -> str:
    """Family of a diffusers folder or single-file checkpoint, without loading weights."""
    path = Path(source)
    if path.is_dir():
        if (path / FAMILY_MARKER).is_file():
            marked = (path / FAMILY_MARKER).read_text(errors="replace").strip()
            if marked not in FAMILIES:
                raise Invalid(f"{path / FAMILY_MARKER} names an unknown family {marked[:40]!r}; delete the file")
            return marked
        if (path / "unet" / "config.json").exists():
            return family_from_unet_config(_read_json(path / "unet" / "config.json"))
        if (path / "transformer" / "config.json").exists():
            index = _read_json(path / "model_index.json") if (path / "model_index.json").exists() else {}
            return family_from_transformer_config(
                index.get("_class_name", ""), _read_json(path / "transformer" / "config.json")
            )
        raise Invalid(f"{path} is a folder but not a diffusers model (no unet/config.json or transformer/config.json)")
    _refuse_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise Unsupported(f"{path.name}: base models must be a diffusers folder or a .safetensors file")
    return family_from_checkpoint_keys(read_safetensors_keys(path))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise Invalid(f"{path.name} is not readable JSON ({exc}); re-download or re-save the model") from exc
    if not isinstance(data, dict):
        raise Invalid(f"{path.name} is not a model config (a JSON object); re-download or re-save the model")
    return data


def base_family(spec: str, settings: Settings) -> str | None:
    """The family a --base value names, read from its files without loading weights; None for hub ids."""
    source = resolve_base_spec(spec, settings.models_dir)
    return None if isinstance(source, str) else detect_family(source)


def list_base_models(settings: Settings) -> list[dict]:
    """The `models list` rows: built-in models, then the diffusers folders and .safetensors files found
    in the models folder (ones that are not models are left out)."""
    rows = []
    for name in BUILT_IN:
        ready = name == TOYWORLD or (settings.models_dir / name / "model_index.json").exists()
        rows.append(_model_row(name, name, built_in=True, ready=ready, settings=settings))
    if settings.models_dir.is_dir():
        for path in sorted(settings.models_dir.iterdir()):
            if path.name in TINY_NAMES or path.name.startswith("."):
                continue
            try:
                family = detect_family(path)
            except LoraStudioError:
                continue
            rows.append(_model_row(path.name, family, built_in=False, ready=True, settings=settings, path=path))
    return rows


def _model_row(
    name: str, family: str, *, built_in: bool, ready: bool, settings: Settings, path: Path | None = None
) -> dict:
    # The name is what --base and the studio take; the path is for the CLI's own user only (never shown by the
    # studio, whose users may not see the server's folders).
    if path is None and ready:
        path = TOYWORLD_DIR if name == TOYWORLD else settings.models_dir / name
    default = settings.default_base_model
    return {
        "name": name,
        "family": family,
        "label": family_label(family),
        "built_in": built_in,
        "ready": ready,
        "default": name == default or (path is not None and str(path) == default),
        "path": str(path) if path is not None else None,
    }


@loads_alone
def load_base_model(spec: str, settings: Settings, *, dtype: torch.dtype = torch.float32) -> LoadedBase:
    """Load a base model on CPU in `dtype` with its family's pipeline (where to look and what may be downloaded
    come from settings); the caller moves parts to its device."""
    source = resolve_base_spec(spec, settings.models_dir)
    if isinstance(source, str):  # explicit hub id
        if not settings.allow_downloads:
            raise Invalid(
                f"{spec} would be downloaded from the Hugging Face hub; set LORASTUDIO_ALLOW_DOWNLOADS=1 "
                "to allow it, or download it yourself and pass the local folder"
            )
        pipe = DiffusionPipeline.from_pretrained(source[3:], dtype=dtype)
        family = _family_of_pipe(pipe)
    elif source.is_dir():
        family = detect_family(source)
        row = FAMILIES[family]
        cls = getattr(diffusers, row.pipeline)
        pipe = cls.from_pretrained(source, dtype=dtype, local_files_only=True, **_pipeline_kwargs(row))
    else:
        family = detect_family(source)
        pipe = _load_single_file(source, FAMILIES[family], dtype, settings.single_file_config)
    pipe.set_progress_bar_config(disable=True)
    name = spec if spec in BUILT_IN else Path(str(source)).name
    return LoadedBase(name=name, family=family, source=source, pipe=pipe)


def _family_of_pipe(pipe: DiffusionPipeline) -> str:
    if getattr(pipe, "unet", None) is not None:
        return family_from_unet_config(dict(pipe.unet.config))
    return family_from_transformer_config(type(pipe).__name__, dict(pipe.transformer.config))


def _pipeline_kwargs(row: Family) -> dict:
    # SD1.5 folders name a safety checker we never load (generation is the user's own business).
    return (
        {"safety_checker": None, "requires_safety_checker": False} if row.pipeline == "StableDiffusionPipeline" else {}
    )


def _load_single_file(path: Path, row: Family, dtype: torch.dtype, config: Path | None) -> DiffusionPipeline:
    needs_config = NotFound(
        f"{path.name} looks like an {row.label} checkpoint, but loading it offline needs that "
        "family's diffusers configs and tokenizer. Set LORASTUDIO_SINGLE_FILE_CONFIG to a diffusers "
        f"folder of the same family (any {row.label} model saved by diffusers)."
    )
    if row.name == "flux1":
        if config is None:
            raise needs_config
        return _load_flux1_single_file(path, Path(config), dtype)
    cls = getattr(diffusers, row.pipeline)
    kwargs: dict = {"dtype": dtype, "local_files_only": True, **_pipeline_kwargs(row)}
    if config is not None:
        kwargs["config"] = str(config)
    try:
        return cls.from_single_file(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise NotFound(f"{needs_config} Detail: {exc}") from exc


def _load_flux1_single_file(path: Path, config: Path, dtype: torch.dtype) -> DiffusionPipeline:
    """A FLUX.1 transformer from a BFL- or ComfyUI-keyed file, with the rest of the pipeline (VAE, CLIP-L,
    T5, tokenizers, scheduler) from a diffusers folder of the family."""
    from accelerate import init_empty_weights
    from safetensors import safe_open

    if not config.is_dir() or detect_family(config) not in ("flux1", "tiny-flux1"):
        raise Invalid(f"LORASTUDIO_SINGLE_FILE_CONFIG ({config}) must be a FLUX.1 diffusers folder to load {path.name}")
    with safe_open(str(path), framework="pt") as fh:
        keys = list(fh.keys())
        # A ComfyUI file may carry its VAE and text encoders too; only the diffusion model is read from it.
        if any(k.startswith(COMFY_PREFIX) for k in keys):
            keys = [k for k in keys if k.startswith(COMFY_PREFIX)]
        tensors = {k.removeprefix(COMFY_PREFIX): fh.get_tensor(k).to(dtype) for k in keys}
    with init_empty_weights():
        transformer = diffusers.FluxTransformer2DModel.from_config(
            diffusers.FluxTransformer2DModel.load_config(config / "transformer")
        )
    try:
        transformer.load_state_dict(flux1_bfl_to_diffusers(tensors), strict=True, assign=True)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise Invalid(
            f"{path.name} does not fit the FLUX.1 transformer of {config} (a different size or variant); "
            f"point LORASTUDIO_SINGLE_FILE_CONFIG at a folder of the same model. Detail: {str(exc)[:300]}"
        ) from exc
    return diffusers.FluxPipeline.from_pretrained(
        config, transformer=transformer.to(dtype).eval(), dtype=dtype, local_files_only=True
    )


# BFL's FLUX.1 module names -> diffusers' (the inverse of diffusers' FluxTransformer2DModel converter); qkv,
# linear1 and the final modulation are split or reordered in flux1_bfl_to_diffusers.
FLUX1_RENAMES = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
FLUX1_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm": "attn.norm_q",
    "img_attn.norm.key_norm": "attn.norm_k",
    "txt_attn.norm.query_norm": "attn.norm_added_q",
    "txt_attn.norm.key_norm": "attn.norm_added_k",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
FLUX1_SINGLE = {
    "modulation.lin": "norm.linear",
    "norm.query_norm": "attn.norm_q",
    "norm.key_norm": "attn.norm_k",
    "linear2": "proj_out",
}
FLUX1_QKV = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}


def flux1_bfl_to_diffusers(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FLUX.1 transformer's weights in BFL's names -> FluxTransformer2DModel's, at whatever width the tensors
    have (diffusers' own converter assumes the released 3072)."""
    inner = tensors["img_in.weight"].shape[0]
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        module, _, param = key.rpartition(".")
        param = "weight" if param == "scale" else param  # BFL's RMSNorm calls its weight "scale"
        block = re.match(r"(double_blocks|single_blocks)\.(\d+)\.(.+)$", module)
        if block is None:
            if module == "final_layer.adaLN_modulation.1":  # BFL orders (shift, scale), diffusers (scale, shift)
                shift, scale = value.chunk(2, dim=0)
                out[f"norm_out.linear.{param}"] = torch.cat([scale, shift], dim=0)
            elif module in FLUX1_RENAMES:
                out[f"{FLUX1_RENAMES[module]}.{param}"] = value
            else:
                raise KeyError(f"unexpected tensor {key}")
            continue
        kind, index, name = block.groups()
        if kind == "double_blocks":
            prefix = f"transformer_blocks.{index}"
            if name in FLUX1_QKV:
                for part, chunk in zip(FLUX1_QKV[name], value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}.{part}.{param}"] = chunk
            else:
                out[f"{prefix}.{FLUX1_DOUBLE[name]}.{param}"] = value
        else:
            prefix = f"single_transformer_blocks.{index}"
            if name == "linear1":  # q, k, v and the MLP's input, stacked
                q, k, v, mlp = value.split((inner, inner, inner, value.shape[0] - 3 * inner), dim=0)
                for part, chunk in zip(
                    ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), (q, k, v, mlp), strict=True
                ):
                    out[f"{prefix}.{part}.{param}"] = chunk
            else:
                out[f"{prefix}.{FLUX1_SINGLE[name]}.{param}"] = value
    return out
