"""Load a base model (built-in, diffusers folder, single .safetensors, or explicit hub id) and name its
family (the families themselves are one table in models/families.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

from lorastudio.config import Settings
from lorastudio.engine.fileio.tensorfile import PICKLE_SUFFIXES, read_safetensors_keys
from lorastudio.engine.models.families import FAMILIES, family_label, is_sdxl_like
from lorastudio.engine.models.tiny import TINY_NAMES, ensure_tiny_model
from lorastudio.errors import Invalid, LoraStudioError, NotFound, Unsupported

TOYWORLD = "toyworld"
TOYWORLD_DIR = Path(__file__).parents[1] / "toyworld" / "weights"
BUILT_IN = (TOYWORLD, *TINY_NAMES)
FAMILY_MARKER = "lorastudio_family.txt"  # a diffusers folder may name its family (our built-in models do)


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


def family_from_checkpoint_keys(keys: list[str]) -> str:
    """Name the family of a single-file (original/LDM layout) checkpoint from its tensor names."""
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise Unsupported("this is an SD2.x checkpoint; SD2.x base models are not supported yet")
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_A." in k for k in keys):
        raise Invalid(
            "this file is a LoRA, not a base model: it belongs in $loras; for $base give an SD1.5 or SDXL model",
            setting="loras",
        )
    raise Unsupported(
        "not a Stable Diffusion checkpoint we recognise (no SD1.5 or SDXL text-encoder keys); "
        "use an SD1.5- or SDXL-family .safetensors or a diffusers folder"
    )


@dataclass
class LoadedBase:
    """A loaded base model: the pipeline (for its components) plus what we know about it."""

    name: str
    family: str
    source: Path | str
    pipe: DiffusionPipeline
    _hash: str | None = field(default=None, repr=False)

    @property
    def unet(self) -> torch.nn.Module:
        """The denoising UNet."""
        return self.pipe.unet

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        """One text encoder for SD1.5-like, two for SDXL-like."""
        encoders = [self.pipe.text_encoder]
        if getattr(self.pipe, "text_encoder_2", None) is not None:
            encoders.append(self.pipe.text_encoder_2)
        return encoders

    @property
    def tokenizers(self) -> list:
        """Tokenizers matching text_encoders."""
        toks = [self.pipe.tokenizer]
        if getattr(self.pipe, "tokenizer_2", None) is not None:
            toks.append(self.pipe.tokenizer_2)
        return toks

    @property
    def model_hash(self) -> str:
        """sha256 of the weights file (or of the UNet weights of a folder); A1111 shows its first 10 hex."""
        if self._hash is None:
            self._hash = weights_hash(self.source)
        return self._hash


def weights_hash(source: Path | str) -> str:
    """sha256 of a single-file checkpoint, or of a diffusers folder's UNet weights."""
    path = Path(source)
    if path.is_dir():
        candidates = sorted((path / "unet").glob("*.safetensors"))
        if not candidates:
            return "unknown"
        path = candidates[0]
    if not path.is_file():
        return "unknown"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
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
        config_path = path / "unet" / "config.json"
        if not config_path.exists():
            raise Invalid(f"{path} is a folder but not a diffusers model (no unet/config.json)")
        return family_from_unet_config(json.loads(config_path.read_text()))
    _refuse_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise Unsupported(f"{path.name}: base models must be a diffusers folder or a .safetensors file")
    return family_from_checkpoint_keys(read_safetensors_keys(path))


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


def load_base_model(spec: str, settings: Settings, *, dtype: torch.dtype = torch.float32) -> LoadedBase:
    """Load a base model on CPU in `dtype` (where to look and what may be downloaded come from settings);
    the caller moves parts to its device."""
    source = resolve_base_spec(spec, settings.models_dir)
    single_file_config = settings.single_file_config
    if isinstance(source, str):  # explicit hub id
        if not settings.allow_downloads:
            raise Invalid(
                f"{spec} would be downloaded from the Hugging Face hub; set LORASTUDIO_ALLOW_DOWNLOADS=1 "
                "to allow it, or download it yourself and pass the local folder"
            )
        pipe = DiffusionPipeline.from_pretrained(source[3:], dtype=dtype)
        family = family_from_unet_config(dict(pipe.unet.config))
    elif source.is_dir():
        family = detect_family(source)
        cls = StableDiffusionXLPipeline if is_sdxl_like(family) else StableDiffusionPipeline
        kwargs = {} if is_sdxl_like(family) else {"safety_checker": None, "requires_safety_checker": False}
        pipe = cls.from_pretrained(source, dtype=dtype, local_files_only=True, **kwargs)
    else:
        family = detect_family(source)
        pipe = _load_single_file(source, family, dtype, single_file_config)
    pipe.set_progress_bar_config(disable=True)
    name = spec if spec in BUILT_IN else Path(str(source)).name
    return LoadedBase(name=name, family=family, source=source, pipe=pipe)


def _load_single_file(path: Path, family: str, dtype: torch.dtype, config: Path | None) -> DiffusionPipeline:
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    kwargs: dict = {"dtype": dtype, "local_files_only": True}
    if config is not None:
        kwargs["config"] = str(config)
    if family == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return cls.from_single_file(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise NotFound(
            f"{path.name} looks like an {family_label(family)} checkpoint, but loading it offline needs that "
            "family's diffusers configs and tokenizer. Set LORASTUDIO_SINGLE_FILE_CONFIG to a diffusers "
            f"folder of the same family (any {family_label(family)} model saved by diffusers). Detail: {exc}"
        ) from exc
