"""The finished LoRA as a file: its family's standard key layout (lora/layouts/; diffusers' peft keys as an
option) and the metadata kohya, A1111 and Civitai read (ss_*, sshs_* hashes, modelspec.*) beside our own
lorastudio_* record (lora/info.py)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from datetime import datetime
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from lorastudio import __version__
from lorastudio.engine.data.buckets import bucket_for
from lorastudio.engine.kinds import recommended_strength
from lorastudio.engine.lora.file import LoraFile
from lorastudio.engine.lora.info import KEYS, LoraInfo
from lorastudio.engine.lora.layouts import diffusers_tensors, export_tensors, transformer_layout
from lorastudio.engine.models.families import get_family
from lorastudio.engine.training.config import TrainConfig
from lorastudio.engine.training.parts import tag_frequency

# A1111's old 8-hex hash (and kohya's legacy one) reads 64 KiB from 1 MiB into the file.
LEGACY_OFFSET, LEGACY_LENGTH = 0x100000, 0x10000


def safetensors_hashes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as kohya's train_util.precalculate_safetensors_hashes makes them."""
    # kohya hashes the file as it would be written with only the ss_* keys, so sshs_* can be added afterwards.
    data = safetensors_bytes(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + header :]).hexdigest()
    # Past the end this slice is empty, as kohya's seek-then-read is on a small file.
    legacy = hashlib.sha256(data[LEGACY_OFFSET : LEGACY_OFFSET + LEGACY_LENGTH]).hexdigest()[:8]
    return model_hash, legacy


def legacy_model_hash(source: Path | str) -> str:
    """A1111's old model hash (kohya's ss_sd_model_hash) of a checkpoint file, or a folder's UNet weights."""
    path = Path(source)
    if path.is_dir():  # the same file base.weights_hash takes for the full hash
        candidates = sorted((path / "unet").glob("*.safetensors"))
        path = candidates[0] if candidates else path
    if not path.is_file():
        return "unknown"  # a hub id, or a folder without safetensors weights: as weights_hash says
    with path.open("rb") as fh:
        fh.seek(LEGACY_OFFSET)
        return hashlib.sha256(fh.read(LEGACY_LENGTH)).hexdigest()[:8]


def bucket_info(buckets: list[tuple[int, int]] | None, mean_ar_error: float = 0.0) -> str:
    """kohya's ss_bucket_info JSON from each sample's (width, height) bucket; "null" when unknown."""
    if buckets is None:
        return "null"
    counts: dict[tuple[int, int], int] = {}
    for bucket in buckets:
        counts[tuple(bucket)] = counts.get(tuple(bucket), 0) + 1
    # kohya numbers its sorted (width, height) resolutions; with no-upscale bucketing only used ones exist.
    rows = {str(i): {"resolution": list(reso), "count": counts[reso]} for i, reso in enumerate(sorted(counts))}
    return json.dumps({"buckets": rows, "mean_img_ar_error": mean_ar_error})


def mean_ar_error(sizes: list[tuple[int, int]], resolution: int, step: int) -> float:
    """kohya's mean_img_ar_error: mean |bucket aspect - image aspect| over the images' (width, height)."""
    errors = []
    for w, h in sizes:
        bw, bh = bucket_for(w, h, resolution, step)  # the bucket fit_to_bucket crops the image to
        errors.append(abs(bw / bh - w / h))
    return sum(errors) / len(errors) if errors else 0.0


def export_lora(
    base,
    cfg: TrainConfig,
    denoiser,
    encoders,
    report,
    captions,
    started_at,
    seconds,
    *,
    loss_history,
    per_epoch,
    buckets: list[tuple[int, int]] | None = None,
    precision: str | None = None,
) -> LoraFile:
    """The trained adapters in the family's standard kohya layout (or diffusers' `transformer.*.lora_A/B`
    with cfg.lora_format "diffusers") and the file's metadata; the adapters are read from the base's own
    denoiser and text encoders (denoiser and encoders are those, as the trainer holds them)."""
    family = get_family(base.family)
    layout = transformer_layout(base.family)
    save_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[cfg.save_precision]
    tensors = export_tensors(base, save_dtype)
    if not cfg.train_text_encoder:  # an encoder adapter left from elsewhere is not this training's
        tensors = {k: v for k, v in tensors.items() if k.startswith("lora_unet_")}
    lora_format = getattr(cfg, "lora_format", "kohya")
    if lora_format == "diffusers":
        tensors = diffusers_tensors(LoraFile(tensors), base)
    # Exactly what write_safetensors writes, so the sshs_* hashes below are those of the file.
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    folder = Path(cfg.images).name if isinstance(cfg.images, Path) else "images"
    n = len(report.valid)
    epochs = math.ceil(cfg.steps * cfg.gradient_accumulation / per_epoch)
    if precision is None:  # unresolved "auto" is no kohya value; without the device, claim full precision
        precision = "no" if cfg.precision == "auto" else cfg.precision
    sizes = [(r.width, r.height) for r in report.valid if r.width and r.height]
    scheduler = getattr(getattr(base.pipe, "scheduler", None), "config", None)
    objective = family.objective if family else "epsilon"
    prediction = getattr(scheduler, "prediction_type", None) or objective
    meta = {
        "ss_session_id": str(random.randint(0, 2**32)),  # kohya's range, both ends included
        # what the family's trainer names its network: sd-scripts' networks.lora / lora_flux, musubi-tuner's
        "ss_network_module": layout.network_module if layout else "networks.lora",
        "ss_network_dim": str(cfg.network_dim),
        "ss_network_alpha": str(cfg.network_alpha),
        "ss_network_dropout": "None",
        "ss_learning_rate": str(cfg.learning_rate),
        "ss_unet_lr": str(cfg.learning_rate),
        "ss_text_encoder_lr": str(cfg.text_encoder_lr or cfg.learning_rate) if cfg.train_text_encoder else "0",
        "ss_max_train_steps": str(cfg.steps),
        "ss_steps": str(cfg.steps),
        "ss_epoch": str(epochs),
        "ss_num_epochs": str(epochs),
        "ss_num_batches_per_epoch": str(per_epoch),
        "ss_resolution": f"({cfg.resolution}, {cfg.resolution})",
        "ss_batch_size_per_device": str(cfg.batch_size),
        "ss_total_batch_size": str(cfg.batch_size * cfg.gradient_accumulation * cfg.devices),
        "ss_num_processes": str(cfg.devices),
        "ss_gradient_accumulation_steps": str(cfg.gradient_accumulation),
        "ss_gradient_checkpointing": str(cfg.gradient_checkpointing),
        "ss_lr_scheduler": cfg.lr_scheduler,
        "ss_lr_warmup_steps": str(cfg.warmup_steps),
        "ss_optimizer": cfg.optimizer,
        "ss_mixed_precision": precision,
        "ss_full_fp16": "False",  # LoRA weights always train in fp32
        "ss_max_grad_norm": str(cfg.max_grad_norm),
        "ss_min_snr_gamma": str(cfg.min_snr_gamma),
        "ss_noise_offset": str(cfg.noise_offset),
        "ss_flip_aug": str(cfg.flip_augment),
        "ss_cache_latents": str(cfg.cache_latents),
        "ss_seed": str(cfg.seed),
        # No clip skip: SD1.5 uses the last layer, SDXL the penultimate as kohya's SDXL default, both "None".
        "ss_clip_skip": "None",
        "ss_max_token_length": "None",  # captions are cut at the tokenizer's 77
        "ss_keep_tokens": "0",
        "ss_sd_model_name": base.name,
        "ss_sd_model_hash": legacy_model_hash(base.source),
        "ss_new_sd_model_hash": base.model_hash,
        "ss_base_model_version": family.ss_base_model_version if family else base.family,
        "ss_v2": "False",
        "ss_num_train_images": str(n),
        "ss_num_reg_images": "0",
        "ss_enable_bucket": "True",
        "ss_bucket_info": bucket_info(buckets, mean_ar_error(sizes, cfg.resolution, cfg.bucket_step)),
        "ss_dataset_dirs": json.dumps({folder: {"n_repeats": 1, "img_count": n}}),
        "ss_tag_frequency": json.dumps({folder: tag_frequency(captions)}),
        "ss_caption_extension": ".txt",
        "ss_output_name": cfg.output.stem,
        "ss_training_started_at": str(started_at),
        "ss_training_finished_at": str(time.time()),
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": (family.architecture if family else "stable-diffusion-v1") + "/lora",
        "modelspec.implementation": family.implementation if family else "diffusers",
        "modelspec.implementation_version": f"lorastudio/{__version__}",
        "modelspec.title": cfg.output.stem,
        "modelspec.resolution": f"{cfg.resolution}x{cfg.resolution}",
        "modelspec.date": datetime.fromtimestamp(int(started_at)).isoformat(),
        "modelspec.trigger_phrase": cfg.trigger,
        "modelspec.description": cfg.description,
    }
    if objective != "flow":  # sd-scripts and musubi-tuner write no prediction type for flow-matching models
        meta["modelspec.prediction_type"] = "v" if prediction == "v_prediction" else "epsilon"
    if cfg.target == "all" and not layout:  # kohya's own network args; like kohya, no key when there are none
        meta["ss_network_args"] = json.dumps({"conv_dim": str(cfg.network_dim), "conv_alpha": str(cfg.network_alpha)})
    info = LoraInfo(
        kind=cfg.kind,
        trigger_words=[cfg.trigger],
        description=cfg.description,
        recommended_strength=recommended_strength(cfg.kind, base.family),
        family=base.family,
    )
    meta.update(info.to_metadata())
    meta.update(
        {
            KEYS["version"]: __version__,
            KEYS["preset"]: cfg.preset,
            KEYS["target"]: cfg.target,
            KEYS["training_seconds"]: f"{seconds:.1f}",
            KEYS["steps_per_second"]: f"{cfg.steps / max(seconds, 1e-9):.4f}",
            KEYS["final_loss"]: f"{loss_history[-1][1]:.6f}" if loss_history else "",
        }
    )
    if not layout:  # the SGM names of an SDXL-shaped UNet depend on it (lora/convert.py)
        meta[KEYS["layers_per_block"]] = str(base.denoiser.config.layers_per_block)
    meta = {k: str(v) for k, v in meta.items()}  # what write_safetensors stores
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = safetensors_hashes(tensors, meta)
    return LoraFile(tensors, meta, "diffusers" if lora_format == "diffusers" else "kohya")
