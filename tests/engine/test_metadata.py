"""The metadata of a trained LoRA matches what kohya's train_network.py writes, with truthful values."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pytest
import torch
from safetensors.torch import save

from lorastudio.engine.fileio.tensorfile import read_safetensors
from lorastudio.engine.training.metadata import bucket_info, legacy_model_hash, mean_ar_error, safetensors_hashes
from lorastudio.engine.training.train import train_lora
from tests.conftest import tiny_config

HEX = set("0123456789abcdef")


def kohya_model_hash(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """Independent recomputation: sha256 of the safetensors bytes after the header, ss_* metadata only."""
    data = save(tensors, {k: v for k, v in meta.items() if k.startswith("ss_")})
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()


@pytest.fixture(scope="module")
def sd15_lora(settings, figure_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("meta-sd15")
    cfg = tiny_config(figure_dir, out, steps=3, batch_size=2, gradient_accumulation=2, target="attn")
    return cfg, read_safetensors(train_lora(cfg, settings=settings).lora_path)


def test_kohya_keys_are_present_and_truthful(sd15_lora, settings):
    cfg, (tensors, meta) = sd15_lora
    per_epoch = -(-8 // 2)  # eight pictures, one 64x64 bucket, batches of two
    assert meta["ss_total_batch_size"] == "4"
    assert meta["ss_num_batches_per_epoch"] == str(per_epoch)
    assert meta["ss_epoch"] == meta["ss_num_epochs"] == str(-(-3 * 2 // per_epoch))
    assert meta["ss_mixed_precision"] in {"no", "fp16", "bf16"}
    assert meta["ss_mixed_precision"] == "no"  # CPU run with precision auto
    assert 0 <= int(meta["ss_session_id"]) <= 2**32
    assert meta["ss_num_reg_images"] == "0" and meta["ss_keep_tokens"] == "0"
    assert meta["ss_clip_skip"] == meta["ss_network_dropout"] == meta["ss_max_token_length"] == "None"
    assert meta["ss_full_fp16"] == "False" and meta["ss_enable_bucket"] == "True"
    assert meta["ss_cache_latents"] == str(cfg.cache_latents)
    assert meta["ss_max_grad_norm"] == str(cfg.max_grad_norm)
    assert meta["ss_sd_model_hash"] == legacy_model_hash(settings.models_dir / "tiny-sd15")
    assert len(meta["ss_sd_model_hash"]) == 8 and set(meta["ss_sd_model_hash"]) <= HEX
    assert "ss_network_args" not in meta and meta["lorastudio_target"] == "attn"
    json.loads(meta["ss_bucket_info"])  # "null" until train.py passes buckets=, a JSON object after


def test_hashes_cover_the_files_own_tensors(sd15_lora):
    _, (tensors, meta) = sd15_lora
    assert meta["sshs_model_hash"] == kohya_model_hash(tensors, meta)
    legacy = meta["sshs_legacy_hash"]
    assert len(legacy) == 8 and set(legacy) <= HEX
    changed = dict(tensors)
    first = sorted(changed)[0]
    changed[first] = changed[first] + 1
    assert kohya_model_hash(changed, meta) != meta["sshs_model_hash"]


def test_modelspec(sd15_lora):
    _, (_, meta) = sd15_lora
    assert meta["modelspec.sai_model_spec"] == "1.0.1"
    assert meta["modelspec.resolution"] == "64x64"
    started = float(meta["ss_training_started_at"])
    assert datetime.fromisoformat(meta["modelspec.date"]) == datetime.fromtimestamp(int(started))
    assert meta["modelspec.prediction_type"] == "epsilon"
    assert meta["modelspec.implementation"] == "diffusers"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.implementation_version"].startswith("lorastudio/")


def test_sdxl_with_conv_layers_and_buckets(settings, figure_dir, tmp_path):
    cfg = tiny_config(figure_dir, tmp_path, base="tiny-sdxl", steps=3, target="all")
    tensors, meta = read_safetensors(train_lora(cfg, settings=settings).lora_path)
    samples = 8 * (2 if cfg.flip_augment else 1)
    assert json.loads(meta["ss_bucket_info"]) == {
        "buckets": {"0": {"resolution": [64, 64], "count": samples}},
        "mean_img_ar_error": 0.0,
    }
    assert meta["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "4", "conv_alpha": str(cfg.network_alpha)}
    assert meta["sshs_model_hash"] == kohya_model_hash(tensors, meta)


def test_safetensors_hashes_match_kohyas_recipe():
    small = {"b": torch.ones(3, dtype=torch.float16), "a": torch.arange(4.0)}
    meta = {"ss_x": "1", "other": "y"}
    model, legacy = safetensors_hashes(small, meta)
    assert model == kohya_model_hash(small, meta)
    assert legacy == hashlib.sha256(b"").hexdigest()[:8]  # under 1 MiB: kohya reads nothing past the end
    assert safetensors_hashes(small, {**meta, "other": "z", "sshs_model_hash": "x"}) == (model, legacy)
    big = {"w": torch.arange(400_000, dtype=torch.float32)}  # 1.6 MB: the legacy window holds data
    data = save(big, {})
    assert safetensors_hashes(big, {})[1] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert safetensors_hashes({"w": big["w"] + 1}, {})[0] != safetensors_hashes(big, {})[0]


def test_bucket_info_is_kohyas_shape():
    assert bucket_info(None) == "null"
    info = json.loads(bucket_info([(64, 128), (128, 64), (64, 128)], 0.25))
    assert info == {
        "buckets": {"0": {"resolution": [64, 128], "count": 2}, "1": {"resolution": [128, 64], "count": 1}},
        "mean_img_ar_error": 0.25,
    }
    assert mean_ar_error([(128, 128), (64, 64)], 64, 64) == 0.0
    assert mean_ar_error([(100, 64)], 64, 64) == pytest.approx(100 / 64 - 1)  # 100x64 crops to 64x64
    assert mean_ar_error([], 64, 64) == 0.0


def test_legacy_model_hash_reads_a1111s_window(tmp_path):
    blob = bytes(range(256)) * 5000  # 1.28 MB
    (tmp_path / "model.safetensors").write_bytes(blob)
    expected = hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]
    assert legacy_model_hash(tmp_path / "model.safetensors") == expected
    (tmp_path / "folder" / "unet").mkdir(parents=True)
    (tmp_path / "folder" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(blob)
    assert legacy_model_hash(tmp_path / "folder") == expected
    assert legacy_model_hash("hf:org/model") == "unknown"
