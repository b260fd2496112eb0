"""The embedding models that score checkpoints: DINOv2 (identity/style similarity) and CLIP (CLIP-I similarity,
CLIP-T prompt adherence), in transformers' own classes. No weights ship with the package: each comes from a local
folder, or from the hub when downloads are allowed. Face-recognition models are deliberately absent (see
docs/evaluation.md)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from lorastudio.config import Settings
from lorastudio.engine.models.device import resolve_device
from lorastudio.engine.models.loading import loads_alone
from lorastudio.errors import Invalid

HUB = "hf:"
BATCH = 16  # images per forward pass: bounded memory on any device, few enough calls for the eval set's size

# setting -> (its label in words, its environment variable, the transformers model_type it must be)
_SETTINGS = {
    "scorer_dino": ("DINO", "LORASTUDIO_SCORER_DINO", "dinov2"),
    "scorer_clip": ("CLIP", "LORASTUDIO_SCORER_CLIP", "clip"),
}
NO_SCORER_NOTE = (
    "nothing scores identity with an embedding model: no scorer is configured. Set LORASTUDIO_SCORER_DINO "
    "(a DINOv2 model) or LORASTUDIO_SCORER_CLIP (a CLIP model) to a local transformers folder, or to "
    "hf:<org>/<repo> with LORASTUDIO_ALLOW_DOWNLOADS=1"
)


@dataclass
class _Model:
    """One loaded scorer: the model in eval mode on its device and its processor."""

    name: str
    model: Any
    processor: Any
    device: torch.device


@dataclass
class Scorers:
    """The configured embedding models (either may be None), by name, and a note when neither is configured."""

    dino: _Model | None = None
    clip: _Model | None = None
    names: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def any(self) -> bool:
        """True when at least one embedding model is configured."""
        return self.dino is not None or self.clip is not None

    def dino_embed(self, images: list[Image.Image]) -> torch.Tensor | None:
        """L2-normalised DINOv2 CLS embeddings (pooler output: the layer-normed CLS token), one row per image."""
        if self.dino is None:
            return None
        return _batched(images, lambda batch: _dino_forward(self.dino, batch))

    def clip_embed(self, images: list[Image.Image]) -> torch.Tensor | None:
        """L2-normalised CLIP image embeddings, one row per image."""
        if self.clip is None:
            return None
        return _batched(images, lambda batch: _clip_image_forward(self.clip, batch))

    def clip_text(self, texts: list[str]) -> torch.Tensor | None:
        """L2-normalised CLIP text embeddings, one row per text (longer texts cut at the model's length)."""
        if self.clip is None:
            return None
        return _batched(texts, lambda batch: _clip_text_forward(self.clip, batch))


def _batched(items: list, forward) -> torch.Tensor:
    rows = []
    with torch.no_grad():
        for i in range(0, len(items), BATCH):
            rows.append(torch.nn.functional.normalize(forward(items[i : i + BATCH]).float(), dim=-1).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, 0)


def _pooled(out: Any) -> torch.Tensor:
    # transformers 5 returns an output whose pooler_output is the projected embedding; 4.x returned the tensor
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _dino_forward(m: _Model, images: list[Image.Image]) -> torch.Tensor:
    pixels = m.processor(images=[i.convert("RGB") for i in images], return_tensors="pt")["pixel_values"]
    return m.model(pixel_values=pixels.to(m.device)).pooler_output


def _clip_image_forward(m: _Model, images: list[Image.Image]) -> torch.Tensor:
    pixels = m.processor(images=[i.convert("RGB") for i in images], return_tensors="pt")["pixel_values"]
    return _pooled(m.model.get_image_features(pixel_values=pixels.to(m.device)))


def _clip_text_forward(m: _Model, texts: list[str]) -> torch.Tensor:
    tokens = m.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
    tokens = {k: v.to(m.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
    return _pooled(m.model.get_text_features(**tokens))


# Loaded models by (setting, value, device): a studio worker scores many checkpoints and runs; loading once is
# what keeps the evaluation's share of the run small.
_CACHE: dict[tuple[str, str, str], _Model] = {}
_LOCK = threading.Lock()


def load_scorers(settings: Settings, device: torch.device | str | None = None) -> Scorers:
    """The scorers the settings configure (scorer_dino, scorer_clip), loaded on `device` (default: the settings')."""
    dev = resolve_device(settings.device) if device is None else torch.device(device)
    loaded: dict[str, _Model | None] = {}
    for setting in _SETTINGS:
        value = (getattr(settings, setting) or "").strip()
        loaded[setting] = _load(setting, value, settings.allow_downloads, dev) if value else None
    dino, clip = loaded["scorer_dino"], loaded["scorer_clip"]
    names = [f"dino:{dino.name}"] if dino else []
    names += [f"clip:{clip.name}"] if clip else []
    return Scorers(dino=dino, clip=clip, names=names, note=None if names else NO_SCORER_NOTE)


def _load(setting: str, value: str, allow_downloads: bool, device: torch.device) -> _Model:
    key = (setting, value, str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load_model(setting, value, allow_downloads, device)
        return _CACHE[key]


def _load_model(setting: str, value: str, allow_downloads: bool, device: torch.device) -> _Model:
    label, env, model_type = _SETTINGS[setting]
    if value.startswith(HUB):
        repo = value[len(HUB) :].strip()
        if not allow_downloads:
            raise Invalid(
                f"the {label} scorer {value[:120]!r} is on the Hugging Face hub and downloads are off; set {env} "
                "to a local transformers folder, or allow downloads (LORASTUDIO_ALLOW_DOWNLOADS=1)",
                setting=setting,
            )
        source, name, local = repo, repo.rstrip("/").rsplit("/", 1)[-1], False
    else:
        folder = Path(value).expanduser()
        # only the folder's last name is ever said: the message may reach a studio user
        name = folder.name or "the folder"
        if not folder.is_dir():
            raise Invalid(
                f"the {label} scorer folder {name!r} ({env}) does not exist or is not a folder; point {env} at a "
                f"transformers {label} model folder (config.json, model.safetensors, processor files)",
                setting=setting,
            )
        source, local = str(folder), True
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, local_files_only=local)
        if config.model_type != model_type:
            raise Invalid(f"it holds a {config.model_type!r} model, not a {label} ({model_type}) one")
        model, processor = _from_pretrained(model_type, source, local)
    except Exception as exc:  # noqa: BLE001 - a folder from anywhere fails in any library's way; say it once, here
        reason = str(exc) if isinstance(exc, Invalid) else "it is not a complete transformers model in safetensors"
        raise Invalid(
            f"the {label} scorer {name!r} ({env}) cannot be loaded: {reason}; point {env} at a transformers "
            f"{label} model folder (config.json, model.safetensors, processor files)",
            setting=setting,
        ) from exc
    model.to(device).eval()
    return _Model(name=name, model=model, processor=processor, device=device)


@loads_alone
def _from_pretrained(model_type: str, source: str, local: bool) -> tuple[Any, Any]:
    # safetensors only: a pickled checkpoint can run code when opened
    opts = dict(local_files_only=local, use_safetensors=True)
    if model_type == "dinov2":
        from transformers import AutoImageProcessor, Dinov2Model

        return Dinov2Model.from_pretrained(source, **opts), AutoImageProcessor.from_pretrained(
            source, local_files_only=local
        )
    from transformers import CLIPModel, CLIPProcessor

    return CLIPModel.from_pretrained(source, **opts), CLIPProcessor.from_pretrained(source, local_files_only=local)


def build_tiny_scorers(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(clip_dir, dino_dir): a random tiny CLIP and DINOv2 saved with their processors, which load_scorers reads
    (for tests and benchmarks: their numbers are plumbing, not judgement)."""
    from transformers import (
        BitImageProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        Dinov2Config,
        Dinov2Model,
    )

    from lorastudio.engine.kinds import KINDS
    from lorastudio.engine.models.tiny_parts import TINY_WORDS, clip_text_config
    from lorastudio.engine.models.tokenizer import build_clip_tokenizer
    from lorastudio.engine.toyworld.world import all_words

    folder = Path(folder)
    clip_dir, dino_dir = folder / "tiny-clip", folder / "tiny-dinov2"
    torch.manual_seed(seed)
    scene_words = " ".join(s for kind in KINDS.values() for s in kind.eval_scenes).replace("{trigger}", " ")
    words = {*all_words(), *TINY_WORDS, *scene_words.replace(",", " ").split()}
    tokenizer = build_clip_tokenizer(words)
    text = clip_text_config(len(tokenizer), hidden=32, projection=32).to_dict()
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
    clip.save_pretrained(clip_dir)
    crop = {"height": 32, "width": 32}
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=crop)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(clip_dir)
    dino = Dinov2Model(
        Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=32, patch_size=8
        )
    )
    dino.save_pretrained(dino_dir)
    BitImageProcessor(
        size={"shortest_edge": 32},
        crop_size=crop,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(dino_dir)
    return clip_dir, dino_dir
