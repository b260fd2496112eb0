import pytest
import torch
from safetensors.torch import save_file

from lorastudio.cli.common import FLAGS
from lorastudio.engine.models.base import detect_family, family_from_checkpoint_keys, load_base_model
from lorastudio.errors import Invalid, NotFound, Unsupported, words


def test_family_of_single_file_checkpoints_from_their_keys():
    assert (
        family_from_checkpoint_keys(["cond_stage_model.transformer.text_model.x", "model.diffusion_model.a"]) == "sd15"
    )
    assert family_from_checkpoint_keys(["conditioner.embedders.1.model.ln_final.weight"]) == "sdxl"
    with pytest.raises(Unsupported, match="SD2"):
        family_from_checkpoint_keys(["cond_stage_model.model.transformer.x"])
    with pytest.raises(Invalid, match="is a LoRA"):
        family_from_checkpoint_keys(["lora_unet_down_blocks_0.lora_down.weight"])
    with pytest.raises(Unsupported, match="not a base-model checkpoint we recognise"):
        family_from_checkpoint_keys(["encoder.weight"])


def test_built_in_models_load_with_their_family(settings):
    for name in ("tiny-sd15", "tiny-sdxl"):
        base = load_base_model(name, settings)
        assert base.family == name and len(base.text_encoders) == (2 if name == "tiny-sdxl" else 1)
        assert detect_family(settings.models_dir / name) == name
        assert len(base.model_hash) == 64


def test_bad_base_models_are_refused_with_a_reason(settings, tmp_path):
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(Unsupported, match="Convert it once to .safetensors"):
        load_base_model(str(pickle), settings)
    with pytest.raises(NotFound, match="not found"):
        load_base_model(str(tmp_path / "nope"), settings)
    with pytest.raises(Invalid, match="LORASTUDIO_ALLOW_DOWNLOADS"):
        load_base_model("hf:some/model", settings)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(Invalid, match="not a readable .safetensors"):
        load_base_model(str(garbage), settings)
    lora_as_base = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, lora_as_base)
    with pytest.raises(Invalid, match="it belongs in the LoRA selection") as raised:
        load_base_model(str(lora_as_base), settings)
    assert "it belongs in --lora; for --base give" in words(raised.value, FLAGS)
    (tmp_path / "folder").mkdir()
    with pytest.raises(Invalid, match="not a diffusers model"):
        load_base_model(str(tmp_path / "folder"), settings)


def test_single_file_without_configs_says_how_to_load_it(settings, tmp_path):
    ckpt = tmp_path / "my_sd15.safetensors"
    save_file(
        {
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(2, 2),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2),
        },
        ckpt,
    )
    with pytest.raises(NotFound, match="LORASTUDIO_SINGLE_FILE_CONFIG"):
        load_base_model(str(ckpt), settings)


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl"])
def test_single_file_checkpoint_loads_generates_and_trains_like_its_folder(settings, figure_dir, tmp_path, name):
    from lorastudio.engine.generation.generate import GenerateRequest, generate
    from lorastudio.engine.generation.pipecache import PipelineCache
    from lorastudio.engine.lora.file import inspect_lora
    from lorastudio.engine.training.train import train_lora
    from tests.conftest import tiny_config
    from tests.ldm_checkpoint import write_single_file

    family = name.removeprefix("tiny-")
    folder = load_base_model(name, settings)
    ckpt = write_single_file(folder.pipe, tmp_path / "my-model.safetensors")  # A1111/Civitai layout
    assert detect_family(ckpt) == family
    configs = settings.models_dir / name
    single = load_base_model(str(ckpt), settings.model_copy(update={"single_file_config": configs}))
    assert single.family == family and single.name == "my-model.safetensors"
    parts = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    for part in parts:
        want, got = getattr(folder.pipe, part).state_dict(), getattr(single.pipe, part).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k].reshape(want[k].shape)) for k in want), part

    with_configs = settings.model_copy(update={"single_file_config": configs})
    req = GenerateRequest.build(prompt="johnhero, a person", base=str(ckpt), steps=3, seed=3, width=64, height=64)
    from_file = generate(PipelineCache(with_configs), req).images[0]
    from_folder = generate(PipelineCache(with_configs), req.model_copy(update={"base": name})).images[0]
    assert from_file.tobytes() == from_folder.tobytes()

    cfg = tiny_config(figure_dir, tmp_path, base=str(ckpt), steps=2)
    lora = train_lora(cfg, settings=with_configs).lora_path
    assert inspect_lora(lora)["family"] == family
