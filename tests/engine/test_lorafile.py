import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

from lorastudio.engine.lora.convert import lora_state
from lorastudio.engine.lora.file import inspect_lora, read_lora, save_lora
from lorastudio.engine.lora.fit import check_fits
from lorastudio.engine.models.base import load_base_model
from lorastudio.errors import FamilyMismatch, Invalid, NotFound, Unsupported


def render(pipe, seed=1) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    image = pipe(
        "johnhero, a person", num_inference_steps=3, height=64, width=64, generator=gen, output_type="np"
    ).images[0]
    return image


@pytest.mark.parametrize("base", ["tiny-sd15", "tiny-sdxl"])
def test_kohya_export_loads_in_diffusers_and_changes_the_output(settings, trained, base):
    pipe = DiffusionPipeline.from_pretrained(settings.models_dir / base)
    pipe.set_progress_bar_config(disable=True)
    plain = render(pipe)
    pipe.load_lora_weights(str(trained[base]))  # diffusers' own kohya loader (as A1111/ComfyUI read it)
    loaded = sum(len(lora_state(m)) for m in (pipe.unet, pipe.text_encoder))
    ours = load_file(trained[base])
    unet_pairs = sum(1 for k in ours if k.startswith("lora_unet_") and k.endswith("lora_down.weight"))
    assert len(lora_state(pipe.unet)) == 2 * unet_pairs and loaded > 2 * unet_pairs
    with_lora = render(pipe)
    assert np.abs(with_lora - plain).mean() > 1e-3
    pipe.set_adapters(pipe.get_active_adapters(), adapter_weights=0.0)
    assert np.allclose(render(pipe), plain, atol=1e-5)


def test_metadata_carries_kohya_and_our_keys(trained):
    info = inspect_lora(trained["tiny-sd15"])
    meta = info["metadata"]
    for key in (
        "ss_network_dim",
        "ss_network_alpha",
        "ss_learning_rate",
        "ss_max_train_steps",
        "ss_resolution",
        "ss_sd_model_name",
        "ss_new_sd_model_hash",
        "ss_num_train_images",
        "ss_tag_frequency",
        "ss_training_started_at",
        "ss_base_model_version",
    ):
        assert meta[key], key
    assert meta["ss_network_dim"] == "4" and meta["ss_base_model_version"] == "sd_v1"
    assert json.loads(meta["ss_tag_frequency"])["figure0"]["johnhero"] == 8
    assert len(meta["ss_new_sd_model_hash"]) == 64
    assert info["kind"] == "character" and info["trigger_words"] == ["johnhero"]
    assert info["family"] == "tiny-sd15" and info["rank"] == 4 and info["alpha"] == 2.0
    assert info["recommended_strength"] == 0.8 and info["modules_by_part"].keys() == {"unet", "te"}


def test_kohya_round_trip_is_lossless(trained, tmp_path):
    lora = read_lora(trained["tiny-sdxl"])
    save_lora(tmp_path / "copy.safetensors", lora)
    a, b = load_file(trained["tiny-sdxl"]), load_file(tmp_path / "copy.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("base", ["tiny-sd15", "tiny-sdxl"])
def test_diffusers_format_imports_to_the_same_lora(settings, trained, tmp_path, base):
    """Save what diffusers loaded in its own (peft) format, import that, and get our kohya file back."""
    pipe = DiffusionPipeline.from_pretrained(settings.models_dir / base)
    pipe.load_lora_weights(str(trained[base]), adapter_name="x")
    layers = {"unet_lora_layers": lora_state(pipe.unet), "text_encoder_lora_layers": lora_state(pipe.text_encoder)}
    meta = {
        "unet_lora_adapter_metadata": pipe.unet.peft_config["x"].to_dict(),
        "text_encoder_lora_adapter_metadata": pipe.text_encoder.peft_config["x"].to_dict(),
    }
    if base == "tiny-sdxl":
        layers["text_encoder_2_lora_layers"] = lora_state(pipe.text_encoder_2)
        meta["text_encoder_2_lora_adapter_metadata"] = pipe.text_encoder_2.peft_config["x"].to_dict()
    type(pipe).save_lora_weights(tmp_path, **layers, **meta)
    imported = read_lora(tmp_path / "pytorch_lora_weights.safetensors")
    assert imported.source_format == "diffusers"
    original = load_file(trained[base])
    assert set(imported.tensors) == set(original)
    for key, value in original.items():
        assert torch.allclose(imported.tensors[key].float(), value.float(), atol=1e-3), key


def test_refusals_say_what_is_wrong(tmp_path, trained):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04pickle")
    with pytest.raises(Unsupported, match="pickle"):
        read_lora(ckpt)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(Invalid, match="not a readable .safetensors"):
        read_lora(bad)
    with pytest.raises(NotFound):
        read_lora(tmp_path / "missing.safetensors")
    tensors = load_file(trained["tiny-sd15"])
    key = next(k for k in tensors if k.endswith("lora_up.weight"))
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = float("inf")
    save_file(tensors, tmp_path / "inf.safetensors")
    with pytest.raises(Invalid, match="NaN/Inf"):
        read_lora(tmp_path / "inf.safetensors")
    save_file({"weight": torch.zeros(2)}, tmp_path / "nolora.safetensors")
    with pytest.raises(Invalid, match="no LoRA weights"):
        read_lora(tmp_path / "nolora.safetensors")
    half = {k: v for k, v in load_file(trained["tiny-sd15"]).items() if not k.endswith("lora_up.weight")}
    save_file(half, tmp_path / "half.safetensors")
    with pytest.raises(Invalid, match="incomplete"):
        read_lora(tmp_path / "half.safetensors")


def test_family_mismatch_names_both_families(settings, trained):
    sdxl = load_base_model("tiny-sdxl", settings)
    with pytest.raises(FamilyMismatch) as exc:
        check_fits(read_lora(trained["tiny-sd15"]), sdxl)
    assert "tiny SD1.5-shaped" in str(exc.value) and "tiny SDXL-shaped" in str(exc.value)
    check_fits(read_lora(trained["tiny-sdxl"]), sdxl)  # its own family fits


def test_shape_mismatch_without_metadata_is_refused(settings, trained, tmp_path):
    tensors = load_file(trained["tiny-sd15"])
    stem = next(k for k in tensors if "attn2_to_k.lora_down" in k)
    tensors[stem] = torch.zeros(tensors[stem].shape[0], 99)  # as if made for a wider text encoder
    save_file(tensors, tmp_path / "odd.safetensors")
    sd15 = load_base_model("tiny-sd15", settings)
    with pytest.raises(FamilyMismatch, match="do not fit"):
        check_fits(read_lora(tmp_path / "odd.safetensors"), sd15)


def test_save_refuses_other_suffixes(trained, tmp_path):
    with pytest.raises(Invalid, match=".safetensors"):
        save_lora(tmp_path / "x.pt", read_lora(trained["tiny-sd15"]))
