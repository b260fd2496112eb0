"""Pure ML layer: torch, diffusers, peft, safetensors. Knows nothing of databases or the web.

This package is the engine's public surface: the studio, the web and the CLI import what they use from
`lorastudio.engine` and never from a module below it (tests/test_layers.py holds them to it). The names load
lazily (PEP 562): importing `lorastudio.engine` costs nothing, and a name pulls in its own module (and torch,
where that module needs it) only when it is first read, so a command that needs no model (`lorastudio --help`)
starts without torch. Each read looks the name up in its module again, so a test that patches the module is seen.
"""

# ruff: noqa: F401 - the imports under TYPE_CHECKING are for type checkers; __all__ is made from _MODULES

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one list of what the faces may use, by the module that defines it (below `lorastudio.engine.`); add a name
# here (and to the imports for type checkers at the end) rather than reaching into a module.
_MODULES: dict[str, tuple[str, ...]] = {
    # kinds: what a character, fighting style, pose or visual style LoRA means
    "kinds": (
        "Kind",
        "KINDS",
        "KindName",
        "CHARACTER",
        "FIGHTING_STYLE",
        "POSE",
        "VISUAL_STYLE",
        "DEFAULT_KIND",
        "check_kind",
        "kind_label",
        "kind_list",
        "acts_as_character",
        "recommended_strength",
    ),
    # model families, base models, devices
    "models.families": ("Family", "FAMILIES", "get_family", "family_label", "full_size_families"),
    "models.base": ("LoadedBase", "BUILT_IN", "TOYWORLD", "base_family", "list_base_models", "load_base_model"),
    "models.device": (
        "resolve_device",
        "threads_per_process",
        "is_out_of_memory",
        "DeviceInfo",
        "detect_devices",
        "DATA_PARALLEL_EFFICIENCY",
    ),
    "models.tiny": ("TINY_NAMES",),
    "models.memory": ("training_need_gb",),
    # seeds, LoRA selections, prompts, progress
    "seeds": ("SEED_LIMIT", "check_seed", "pick_seed"),
    "selection": ("LoraSelection", "STRENGTH_LIMIT", "parse_region", "parse_strength"),
    "prompts": ("LORA_TAG", "add_missing_triggers", "check_trigger", "has_word", "parse_lora_tags", "prompt_warnings"),
    "progress": ("ProgressEvent", "OnProgress", "ShouldStop"),
    # training
    "training.config": ("TrainConfig", "TrainResult"),
    "training.presets": ("Preset", "PRESETS", "get_preset"),
    "training.train": ("train_lora",),
    "training.family_checks": ("check_family_settings",),
    "training.checkpoint": ("list_checkpoints",),
    "training.evaluate": ("budget_in_steps", "expected_evaluations", "evaluation_of"),
    # checkpoint evaluation: scores, the choice, scorer models
    "evaluation.results": ("CheckpointScore", "Choice", "Evaluation"),
    "evaluation.evalset": ("EvalPrompt", "eval_prompts"),
    "evaluation.scorers": ("Scorers", "load_scorers", "build_tiny_scorers"),
    "evaluation.scoring": ("References", "references", "score_renders", "identity_similarity"),
    "evaluation.choose": ("IDENTITY_FIELDS", "ADHERENCE_FIELDS", "choose_checkpoint", "scores_table"),
    "evaluation.score_file": ("score_lora",),
    # generation
    "generation.generate": ("GenerateRequest", "GenerateResult", "generate", "save_result"),
    "generation.pipecache": ("PipelineCache", "resolve_lora"),
    "generation.pngmeta": ("a1111_parameters", "read_png_parameters", "save_png"),
    "generation.reproduce": ("request_from_params", "request_from_png"),
    "generation.samplers": ("SAMPLERS", "DEFAULT_SAMPLER", "FLOW_SAMPLER", "flow_sampler"),
    "generation.grid": ("strength_grid", "diagnose", "diagnosis_to_dict"),
    # LoRA files
    "lora.file": ("check_lora_path", "describe_lora", "inspect_lora", "read_lora", "save_lora"),
    "lora.info": ("LoraInfo", "check_description", "read_info"),
    "lora.fit": ("check_lora_fits",),
    # training data
    "data.dataset": ("make_caption", "scan_dataset"),
    "data.images": ("IMAGE_SUFFIXES", "ImageRejected", "open_image"),
    # the toy world: its model, prebuilt styles and detectors (the demo and the CLI's toyworld commands)
    "toyworld.world": ("HELD_OUT_CHARACTERS", "STYLES"),
    "toyworld.prebuilt": ("prebuilt_lora_path", "train_prebuilt_styles"),
    "toyworld.basetrain": ("train_toyworld_base",),
    "toyworld.consistency": ("character_references", "style_references"),
    "toyworld.detect": ("detect_style", "find_character", "find_figures"),
    # captions written for you: the toy world's exact captioner, BLIP / Florence-2, the leave-out rule
    "captioning.captions": (
        "LEAVE_OUT_REASON",
        "Captioner",
        "CaptionReport",
        "caption_folder",
        "caption_images",
        "finish_caption",
        "identity_of",
        "leave_out_words",
    ),
    "captioning.choose": (
        "CAPTIONERS",
        "CAPTIONER_LABELS",
        "MODEL_CAPTIONER",
        "TOY_CAPTIONER",
        "captioner_for",
        "captioner_problem",
        "default_captioner",
    ),
    "captioning.toy": ("ToyCaptioner",),
    "captioning.models": ("TransformersCaptioner", "build_tiny_blip"),
}
# name -> the module path that defines it
_PUBLIC: dict[str, str] = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:
    from lorastudio.engine.captioning.captions import (
        LEAVE_OUT_REASON,
        Captioner,
        CaptionReport,
        caption_folder,
        caption_images,
        finish_caption,
        identity_of,
        leave_out_words,
    )
    from lorastudio.engine.captioning.choose import (
        CAPTIONER_LABELS,
        CAPTIONERS,
        MODEL_CAPTIONER,
        TOY_CAPTIONER,
        captioner_for,
        captioner_problem,
        default_captioner,
    )
    from lorastudio.engine.captioning.models import TransformersCaptioner, build_tiny_blip
    from lorastudio.engine.captioning.toy import ToyCaptioner
    from lorastudio.engine.data.dataset import make_caption, scan_dataset
    from lorastudio.engine.data.images import IMAGE_SUFFIXES, ImageRejected, open_image
    from lorastudio.engine.evaluation.choose import ADHERENCE_FIELDS, IDENTITY_FIELDS, choose_checkpoint, scores_table
    from lorastudio.engine.evaluation.evalset import EvalPrompt, eval_prompts
    from lorastudio.engine.evaluation.results import CheckpointScore, Choice, Evaluation
    from lorastudio.engine.evaluation.score_file import score_lora
    from lorastudio.engine.evaluation.scorers import Scorers, build_tiny_scorers, load_scorers
    from lorastudio.engine.evaluation.scoring import References, identity_similarity, references, score_renders
    from lorastudio.engine.generation.generate import GenerateRequest, GenerateResult, generate, save_result
    from lorastudio.engine.generation.grid import diagnose, diagnosis_to_dict, strength_grid
    from lorastudio.engine.generation.pipecache import PipelineCache, resolve_lora
    from lorastudio.engine.generation.pngmeta import a1111_parameters, read_png_parameters, save_png
    from lorastudio.engine.generation.reproduce import request_from_params, request_from_png
    from lorastudio.engine.generation.samplers import DEFAULT_SAMPLER, FLOW_SAMPLER, SAMPLERS, flow_sampler
    from lorastudio.engine.kinds import (
        CHARACTER,
        DEFAULT_KIND,
        FIGHTING_STYLE,
        KINDS,
        POSE,
        VISUAL_STYLE,
        Kind,
        KindName,
        acts_as_character,
        check_kind,
        kind_label,
        kind_list,
        recommended_strength,
    )
    from lorastudio.engine.lora.file import check_lora_path, describe_lora, inspect_lora, read_lora, save_lora
    from lorastudio.engine.lora.fit import check_lora_fits
    from lorastudio.engine.lora.info import LoraInfo, check_description, read_info
    from lorastudio.engine.models.base import (
        BUILT_IN,
        TOYWORLD,
        LoadedBase,
        base_family,
        list_base_models,
        load_base_model,
    )
    from lorastudio.engine.models.device import (
        DATA_PARALLEL_EFFICIENCY,
        DeviceInfo,
        detect_devices,
        is_out_of_memory,
        resolve_device,
        threads_per_process,
    )
    from lorastudio.engine.models.families import FAMILIES, Family, family_label, full_size_families, get_family
    from lorastudio.engine.models.memory import training_need_gb
    from lorastudio.engine.models.tiny import TINY_NAMES
    from lorastudio.engine.progress import OnProgress, ProgressEvent, ShouldStop
    from lorastudio.engine.prompts import (
        LORA_TAG,
        add_missing_triggers,
        check_trigger,
        has_word,
        parse_lora_tags,
        prompt_warnings,
    )
    from lorastudio.engine.seeds import SEED_LIMIT, check_seed, pick_seed
    from lorastudio.engine.selection import STRENGTH_LIMIT, LoraSelection, parse_region, parse_strength
    from lorastudio.engine.toyworld.basetrain import train_toyworld_base
    from lorastudio.engine.toyworld.consistency import character_references, style_references
    from lorastudio.engine.toyworld.detect import detect_style, find_character, find_figures
    from lorastudio.engine.toyworld.prebuilt import prebuilt_lora_path, train_prebuilt_styles
    from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS, STYLES
    from lorastudio.engine.training.checkpoint import list_checkpoints
    from lorastudio.engine.training.config import TrainConfig, TrainResult
    from lorastudio.engine.training.evaluate import budget_in_steps, evaluation_of, expected_evaluations
    from lorastudio.engine.training.family_checks import check_family_settings
    from lorastudio.engine.training.presets import PRESETS, Preset, get_preset
    from lorastudio.engine.training.train import train_lora
