import pytest
import torch
from safetensors.torch import save_file

from lorastudio.engine.basemodel import detect_family, family_from_checkpoint_keys, load_base_model
from lorastudio.errors import Invalid, NotFound, Unsupported


def test_family_of_single_file_checkpoints_from_their_keys():
    assert (
        family_from_checkpoint_keys(["cond_stage_model.transformer.text_model.x", "model.diffusion_model.a"]) == "sd15"
    )
    assert family_from_checkpoint_keys(["conditioner.embedders.1.model.ln_final.weight"]) == "sdxl"
    with pytest.raises(Unsupported, match="SD2"):
        family_from_checkpoint_keys(["cond_stage_model.model.transformer.x"])
    with pytest.raises(Invalid, match="is a LoRA"):
        family_from_checkpoint_keys(["lora_unet_down_blocks_0.lora_down.weight"])
    with pytest.raises(Unsupported, match="not a Stable Diffusion checkpoint"):
        family_from_checkpoint_keys(["encoder.weight"])


def test_built_in_models_load_with_their_family(settings):
    for name in ("tiny-sd15", "tiny-sdxl"):
        base = load_base_model(name, models_dir=settings.models_dir)
        assert base.family == name and len(base.text_encoders) == (2 if name == "tiny-sdxl" else 1)
        assert detect_family(settings.models_dir / name) == name
        assert len(base.model_hash) == 64


def test_bad_base_models_are_refused_with_a_reason(settings, tmp_path):
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(Unsupported, match="Convert it once to .safetensors"):
        load_base_model(str(pickle), models_dir=settings.models_dir)
    with pytest.raises(NotFound, match="not found"):
        load_base_model(str(tmp_path / "nope"), models_dir=settings.models_dir)
    with pytest.raises(Invalid, match="LORASTUDIO_ALLOW_DOWNLOADS"):
        load_base_model("hf:some/model", models_dir=settings.models_dir)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(Invalid, match="not a readable .safetensors"):
        load_base_model(str(garbage), models_dir=settings.models_dir)
    lora_as_base = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, lora_as_base)
    with pytest.raises(Invalid, match="pass it with --lora"):
        load_base_model(str(lora_as_base), models_dir=settings.models_dir)
    (tmp_path / "folder").mkdir()
    with pytest.raises(Invalid, match="not a diffusers model"):
        load_base_model(str(tmp_path / "folder"), models_dir=settings.models_dir)


def test_single_file_without_configs_says_how_to_load_it(settings, tmp_path):
    ckpt = tmp_path / "my_sd15.safetensors"
    save_file({"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(2, 2),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, ckpt)  # fmt: skip
    with pytest.raises(NotFound, match="LORASTUDIO_SINGLE_FILE_CONFIG"):
        load_base_model(str(ckpt), models_dir=settings.models_dir)
