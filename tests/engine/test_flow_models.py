"""The transformer families' base models: the tiny ones generate with their own pipelines, every family's
folder is detected (tiny and real told apart), and FLUX.1 single files in BFL's and ComfyUI's keys load."""

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from lorastudio.cli.common import FLAGS
from lorastudio.engine.models.base import (
    detect_family,
    family_from_checkpoint_keys,
    list_base_models,
    load_base_model,
)
from lorastudio.engine.models.families import FAMILIES
from lorastudio.engine.models.tiny import FAMILY_MARKER, ensure_tiny_model
from lorastudio.errors import Invalid, Unsupported, words

FLOW = ("tiny-flux1", "tiny-flux2-klein", "tiny-qwen-image", "tiny-z-image")


def _generate(pipe, seed: int):
    # QwenImagePipeline runs its true CFG only with a negative prompt; the others use their defaults.
    extra = {"negative_prompt": " "} if type(pipe).__name__ == "QwenImagePipeline" else {}
    return pipe(
        prompt="johnhero, a red fighter",
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **extra,
    ).images[0]


@pytest.mark.parametrize("name", FLOW)
def test_each_tiny_model_generates_with_its_own_pipeline_reproducibly(settings, name):
    base = load_base_model(name, settings)
    row = FAMILIES[name]
    assert base.family == name and detect_family(settings.models_dir / name) == name
    assert type(base.pipe).__name__ == row.pipeline and type(base.denoiser).__name__ == row.denoiser
    assert len(base.text_encoders) == len(row.text_encoders) == len(base.tokenizers)
    with pytest.raises(AttributeError, match="has no UNet"):
        _ = base.unet
    transformer_file = settings.models_dir / name / "transformer" / "diffusion_pytorch_model.safetensors"
    assert base.model_hash == hashlib.sha256(transformer_file.read_bytes()).hexdigest()
    first, again, other = _generate(base.pipe, 1), _generate(base.pipe, 1), _generate(base.pipe, 2)
    assert first.shape == (64, 64, 3) and first.std() > 0.01
    assert (first == again).all() and not (first == other).all()


def test_qwen_image_template_prefix_is_what_the_pipeline_drops(settings):
    pipe = load_base_model("tiny-qwen-image", settings).pipe
    template, drop = pipe.prompt_template_encode, pipe.prompt_template_encode_start_idx
    tok = pipe.tokenizer
    prefix = tok(template.split("{}")[0]).input_ids
    assert len(prefix) == drop == 34
    prompt = "johnhero, a red fighter"
    full = tok(template.format(prompt)).input_ids
    assert full[:drop] == prefix and tok.decode(full[drop:]).startswith(prompt)
    embeds, _ = pipe.encode_prompt(prompt, device="cpu")
    assert embeds.shape[1] == len(full) - drop


def test_qwen3_chat_template_matches_what_the_pipelines_ask(settings):
    tok = load_base_model("tiny-z-image", settings).pipe.tokenizer
    msg = [{"role": "user", "content": "hi"}]
    no_think = tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    think = tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert no_think == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert think == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(no_think).input_ids
    assert tok.convert_tokens_to_ids("<|im_start|>") in ids and tok.convert_tokens_to_ids("<think>") in ids


# The released transformers' widths (their transformer/config.json) and pipelines (model_index.json).
RELEASED = {
    "flux1": (
        "FluxPipeline",
        {"_class_name": "FluxTransformer2DModel", "num_attention_heads": 24, "attention_head_dim": 128},
    ),
    "flux2-klein": (
        "Flux2KleinPipeline",
        {"_class_name": "Flux2Transformer2DModel", "num_attention_heads": 24, "attention_head_dim": 128},
    ),
    "qwen-image": (
        "QwenImagePipeline",
        {"_class_name": "QwenImageTransformer2DModel", "num_attention_heads": 24, "attention_head_dim": 128},
    ),
    "z-image": ("ZImagePipeline", {"_class_name": "ZImageTransformer2DModel", "dim": 3840, "n_heads": 30}),
}


def _folder(root, pipeline: str, config: dict):
    (root / "transformer").mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    (root / "transformer" / "config.json").write_text(json.dumps(config))
    return root


@pytest.mark.parametrize("family", RELEASED)
def test_folders_of_every_family_are_detected_and_tiny_told_from_real_by_width(settings, tmp_path, family):
    pipeline, config = RELEASED[family]
    assert detect_family(_folder(tmp_path / "real", pipeline, config)) == family
    # Our tiny model without its marker file: the width alone says it is the test model.
    tiny = tmp_path / "tiny"
    shutil.copytree(ensure_tiny_model(f"tiny-{family}", settings.models_dir), tiny)
    (tiny / FAMILY_MARKER).unlink()
    assert detect_family(tiny) == f"tiny-{family}"


def test_unsupported_transformer_pipelines_are_named(tmp_path):
    config = {"_class_name": "Flux2Transformer2DModel", "num_attention_heads": 48, "attention_head_dim": 128}
    with pytest.raises(Unsupported, match="Flux2Pipeline models are not supported"):
        detect_family(_folder(tmp_path / "dev", "Flux2Pipeline", config))


def test_models_list_finds_folders_of_the_new_families(settings, tmp_path):
    home = settings.model_copy(update={"home": tmp_path})
    home.models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ensure_tiny_model("tiny-z-image", settings.models_dir), home.models_dir / "my-z")
    _folder(home.models_dir / "real-flux", *RELEASED["flux1"])
    rows = {row["name"]: row for row in list_base_models(home)}
    assert rows["my-z"]["family"] == "tiny-z-image" and rows["real-flux"]["family"] == "flux1"
    assert {"tiny-flux1", "tiny-flux2-klein", "tiny-qwen-image", "tiny-z-image"} <= rows.keys()


# ---- FLUX.1 single files ---------------------------------------------------------------------------------
# diffusers -> BFL names, written here from BFL's module layout (flux/model.py, flux/modules/layers.py): the
# inverse of what a loader must do. Checked against diffusers' own BFL converter at the released width below.
def to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    embed = {
        "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
        "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
        "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
        "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
        "context_embedder": "txt_in",
        "x_embedder": "img_in",
        "proj_out": "final_layer.linear",
    }
    for module, bfl in embed.items():
        for p in ("weight", "bias"):
            if f"{module}.{p}" in sd:
                out[f"{bfl}.{p}"] = sd[f"{module}.{p}"]
    for p in ("weight", "bias"):
        scale, shift = sd[f"norm_out.linear.{p}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{p}"] = torch.cat([shift, scale])
    doubles = {int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")}
    for i in doubles:
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for p in ("weight", "bias"):
            for ours, bfl in {
                "norm1.linear": "img_mod.lin",
                "norm1_context.linear": "txt_mod.lin",
                "attn.to_out.0": "img_attn.proj",
                "attn.to_add_out": "txt_attn.proj",
                "ff.net.0.proj": "img_mlp.0",
                "ff.net.2": "img_mlp.2",
                "ff_context.net.0.proj": "txt_mlp.0",
                "ff_context.net.2": "txt_mlp.2",
            }.items():
                out[f"{b}{bfl}.{p}"] = sd[f"{d}{ours}.{p}"]
            out[f"{b}img_attn.qkv.{p}"] = torch.cat([sd[f"{d}attn.to_{x}.{p}"] for x in "qkv"])
            out[f"{b}txt_attn.qkv.{p}"] = torch.cat([sd[f"{d}attn.add_{x}_proj.{p}"] for x in "qkv"])
        for ours, bfl in {
            "norm_q": "img_attn.norm.query_norm",
            "norm_k": "img_attn.norm.key_norm",
            "norm_added_q": "txt_attn.norm.query_norm",
            "norm_added_k": "txt_attn.norm.key_norm",
        }.items():
            out[f"{b}{bfl}.scale"] = sd[f"{d}attn.{ours}.weight"]
    singles = {int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks.")}
    for i in singles:
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{b}modulation.lin.{p}"] = sd[f"{d}norm.linear.{p}"]
            out[f"{b}linear1.{p}"] = torch.cat([sd[f"{d}attn.to_{x}.{p}"] for x in "qkv"] + [sd[f"{d}proj_mlp.{p}"]])
            out[f"{b}linear2.{p}"] = sd[f"{d}proj_out.{p}"]
        out[f"{b}norm.query_norm.scale"] = sd[f"{d}attn.norm_q.weight"]
        out[f"{b}norm.key_norm.scale"] = sd[f"{d}attn.norm_k.weight"]
    assert sum(v.numel() for v in out.values()) == sum(v.numel() for v in sd.values())
    return out


def test_our_bfl_names_are_the_ones_diffusers_reads_at_the_released_width():
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    with init_empty_weights():  # FLUX.1 [dev]'s width, two blocks: shapes only, nothing allocated
        model = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)
    sd = model.state_dict()
    back = convert_flux_transformer_checkpoint_to_diffusers(to_bfl(sd))
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in sd.items()}


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_flux1_single_files_are_detected_and_load_the_same_weights(settings, tmp_path, prefix):
    folder = load_base_model("tiny-flux1", settings)
    want = folder.pipe.transformer.state_dict()
    bfl = {prefix + k: v.contiguous() for k, v in to_bfl(want).items()}
    if prefix:  # a ComfyUI all-in-one file also carries the VAE; the loader takes the diffusion model only
        bfl["vae.decoder.conv_in.weight"] = torch.zeros(2, 2)
    ckpt = tmp_path / "flux-dev-mine.safetensors"
    save_file(bfl, ckpt)
    assert detect_family(ckpt) == "flux1"
    single = load_base_model(
        str(ckpt), settings.model_copy(update={"single_file_config": settings.models_dir / "tiny-flux1"})
    )
    assert single.family == "flux1" and type(single.pipe).__name__ == "FluxPipeline"
    got = single.pipe.transformer.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert (_generate(single.pipe, 3) == _generate(folder.pipe, 3)).all()


def test_flux1_single_file_needs_a_flux_config_folder(settings, tmp_path):
    ckpt = tmp_path / "flux.safetensors"
    save_file(
        {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2), "img_in.weight": torch.zeros(2, 2)}, ckpt
    )
    with pytest.raises(Exception, match="LORASTUDIO_SINGLE_FILE_CONFIG"):
        load_base_model(str(ckpt), settings)
    sd15 = settings.model_copy(update={"single_file_config": settings.models_dir / "tiny-sd15"})
    with pytest.raises(Invalid, match="must be a FLUX.1 diffusers folder"):
        load_base_model(str(ckpt), sd15)


@pytest.mark.parametrize(
    "key",
    [
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight",  # diffusers
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",  # sd-scripts
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight",  # ai-toolkit / ComfyUI
    ],
)
def test_a_flux_lora_given_as_base_is_refused(settings, tmp_path, key):
    lora = tmp_path / "lora.safetensors"
    save_file({key: torch.zeros(1, 1)}, lora)
    with pytest.raises(Invalid, match="it belongs in the LoRA selection") as raised:
        load_base_model(str(lora), settings)
    assert "it belongs in --lora; for --base give" in words(raised.value, FLAGS)


def test_other_transformer_single_files_say_to_use_a_folder():
    with pytest.raises(Unsupported, match="FLUX.2 checkpoints are not supported"):
        family_from_checkpoint_keys(
            ["double_blocks.0.img_attn.norm.key_norm.scale", "single_stream_modulation.lin.weight"]
        )
    with pytest.raises(Unsupported, match="use a diffusers folder"):
        family_from_checkpoint_keys(["model.diffusion_model.layers.0.adaLN_modulation.0.weight"])
