"""Captioning models in transformers' own classes: BLIP (BlipForConditionalGeneration + BlipProcessor) and
Florence-2 (Florence2ForConditionalGeneration + AutoProcessor), from a local folder, or from the hub as
'hf:<org>/<repo>' only where downloads are allowed. No weights ship with the package.

Messages name the captioner by its folder's or repository's name, never by a path."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import torch
from PIL import Image

from lorastudio.config import Settings
from lorastudio.engine.models.device import resolve_device
from lorastudio.engine.models.loading import loads_alone
from lorastudio.errors import Invalid

SETTING = "captioner"  # the setting every error here names (LORASTUDIO_CAPTIONER)
FAMILIES = {"blip": "BLIP", "florence2": "Florence-2"}
FLORENCE_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
MAX_NEW_TOKENS = 40  # a caption is a line; a model that rambles is cut here
HOW_TO = (
    "set LORASTUDIO_CAPTIONER to a local BLIP or Florence-2 folder (saved with save_pretrained), or to "
    "hf:<org>/<repo> with LORASTUDIO_ALLOW_DOWNLOADS=1"
)
_LOADED: dict[tuple[str, str], tuple] = {}  # (spec, device) -> (model, processor, family): a worker loads once
_LOCK = threading.Lock()


def _label(spec: str) -> str:
    """How a captioner is named to a user: the repository id, or the folder's own name."""
    return spec[3:] if spec.startswith("hf:") else Path(spec).name or "captioner"


class TransformersCaptioner:
    """A BLIP or Florence-2 captioner. Checked when made (the folder is such a model, or downloads are
    allowed); the weights load on the first caption, on the settings' device."""

    def __init__(self, spec: str, settings: Settings, *, task: str = "<CAPTION>", max_new_tokens: int = MAX_NEW_TOKENS):
        spec = (spec or "").strip()
        if not spec:
            raise Invalid(f"no captioning model is configured; {HOW_TO}", setting=SETTING)
        if task not in FLORENCE_TASKS:
            raise Invalid(f"Florence-2 task {task[:40]!r} is not one of: {', '.join(FLORENCE_TASKS)}", setting=SETTING)
        self.spec, self.settings, self.task, self.max_new_tokens = spec, settings, task, max_new_tokens
        label = _label(spec)
        if spec.startswith("hf:"):
            if not settings.allow_downloads:
                raise Invalid(
                    f"the captioner {label} would be downloaded from the Hugging Face hub; set "
                    "LORASTUDIO_ALLOW_DOWNLOADS=1 to allow it, or download it and set LORASTUDIO_CAPTIONER to its "
                    "folder",
                    setting=SETTING,
                )
            self.family = None  # read from the downloaded config when it loads
        else:
            self.family = _family_of(Path(spec), label)
        self.name = f"{FAMILIES.get(self.family or '', 'model')} {label}" if self.family else label

    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image (the model's own words, trimmed)."""
        if not images:
            return []
        model, processor, family = self._load()
        device = next(model.parameters()).device
        rgb = [image.convert("RGB") for image in images]
        if family == "florence2":
            inputs = processor(text=[self.task] * len(rgb), images=rgb, return_tensors="pt")
        else:
            inputs = processor(images=rgb, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in inputs.items() if hasattr(v, "to")}
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False)
        texts = processor.batch_decode(out, skip_special_tokens=True)
        return [" ".join(str(t).split()).strip(" .") for t in texts]

    def _load(self) -> tuple:
        device = resolve_device(self.settings.device)
        key = (self.spec, str(device))
        with _LOCK:
            if key not in _LOADED:
                _LOADED[key] = _load(self.spec, device)
        model, processor, family = _LOADED[key]
        self.family = family
        return model, processor, family


def _family_of(folder: Path, label: str) -> str:
    """'blip' or 'florence2' from a local folder's config, or Invalid naming the setting."""
    config = folder / "config.json"
    if not folder.is_dir() or not config.is_file():
        raise Invalid(
            f"the captioner {label} is not a transformers model folder (no config.json); {HOW_TO}", setting=SETTING
        )
    try:
        model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    except (OSError, ValueError, AttributeError) as exc:
        raise Invalid(f"the captioner {label}'s config.json cannot be read; {HOW_TO}", setting=SETTING) from exc
    if model_type not in FAMILIES:
        raise Invalid(
            f"the captioner {label} is a {model_type[:40] or 'unknown'} model; a captioner is BLIP or Florence-2",
            setting=SETTING,
        )
    return model_type


@loads_alone
def _load(spec: str, device: torch.device) -> tuple:
    from transformers import AutoConfig, AutoProcessor, BlipForConditionalGeneration, BlipProcessor

    local = not spec.startswith("hf:")
    source = spec if local else spec[3:]
    label = _label(spec)
    try:
        family = AutoConfig.from_pretrained(source, local_files_only=local).model_type
        if family == "blip":
            # safetensors only: a pickled checkpoint (pytorch_model.bin) can run code when it is opened
            model = BlipForConditionalGeneration.from_pretrained(source, local_files_only=local, use_safetensors=True)
            processor = BlipProcessor.from_pretrained(source, local_files_only=local)
        elif family == "florence2":
            from transformers import Florence2ForConditionalGeneration

            model = Florence2ForConditionalGeneration.from_pretrained(
                source, local_files_only=local, use_safetensors=True
            )
            processor = AutoProcessor.from_pretrained(source, local_files_only=local)
        else:
            raise Invalid(
                f"the captioner {label} is a {family} model; a captioner is BLIP or Florence-2", setting=SETTING
            )
    except (OSError, ValueError, KeyError) as exc:
        why = f"the captioner {label} could not be loaded ({type(exc).__name__}); {HOW_TO}"
        raise Invalid(why, setting=SETTING) from exc
    model.to(device).eval()
    return model, processor, family


def build_tiny_blip(folder: Path, seed: int = 0) -> Path:
    """A random tiny BLIP captioner with its processor, saved with save_pretrained into `folder` (made
    locally: a BERT word-piece vocabulary of the toy world's words, no download), for tests."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    from lorastudio.engine.toyworld.world import all_words

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = [*special, *all_words(), "[DEC]"]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True, bos_token="[DEC]")
    size = 32
    config = BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "encoder_hidden_size": 32,
            "intermediate_size": 64,
            "projection_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "bos_token_id": vocab.index("[DEC]"),
            "eos_token_id": vocab.index("[SEP]"),
            "sep_token_id": vocab.index("[SEP]"),
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "projection_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": size,
            "patch_size": 8,
            "initializer_range": 0.02,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    model.save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": size, "width": size})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
