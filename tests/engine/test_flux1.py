"""FLUX.1 end to end on the tiny FLUX.1-shaped model: train a LoRA, write it in sd-scripts' layout, generate with it
(stacked, in regions), reproduce an image from its PNG, and learn a picture well enough to draw it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lorastudio.cli.common import FLAGS
from lorastudio.engine.data.synthetic import write_reference_set
from lorastudio.engine.fileio.tensorfile import read_safetensors
from lorastudio.engine.generation import generate as generate_module
from lorastudio.engine.generation.flow import to_images
from lorastudio.engine.generation.generate import GenerateRequest, generate, save_result
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.generation.reproduce import request_from_png
from lorastudio.engine.lora.file import read_lora, save_lora
from lorastudio.engine.models.denoisers import denoiser_for
from lorastudio.engine.models.families import FAMILIES
from lorastudio.engine.models.memory import check_training_fits, training_need_gb
from lorastudio.engine.models.tiny import ensure_tiny_model
from lorastudio.engine.selection import LoraSelection
from lorastudio.engine.training import train as train_module
from lorastudio.engine.training.train import train_lora
from lorastudio.errors import FamilyMismatch, Invalid, OutOfMemory, words
from tests.conftest import tiny_config

BASE = "tiny-flux1"


@pytest.fixture(scope="module")
def flux_settings(settings):
    ensure_tiny_model(BASE, settings.models_dir)
    return settings


@pytest.fixture(scope="module")
def flux_lora(flux_settings, figure_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("flux-lora")
    cfg = tiny_config(
        figure_dir, folder, base=BASE, steps=6, learning_rate=2e-2, output=folder / "johnhero.safetensors"
    )
    return train_lora(cfg, settings=flux_settings).lora_path


@pytest.fixture(scope="module")
def flux_cache(flux_settings):
    return PipelineCache(flux_settings)


def _request(**kw) -> GenerateRequest:
    return GenerateRequest(**{"prompt": "johnhero, a person", "base": BASE, "seed": 7, "steps": 4} | kw)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_the_file_is_in_sd_scripts_flux_layout_with_the_family_named(flux_lora):
    tensors, metadata = read_safetensors(flux_lora)
    assert all(k.startswith("lora_unet_") for k in tensors)
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in tensors  # BFL names, q/k/v fused
    assert "lora_unet_double_blocks_0_txt_attn_qkv.alpha" in tensors
    assert any(k.startswith("lora_unet_single_blocks_0_linear1.") for k in tensors)
    assert metadata["ss_base_model_version"] == "flux1"
    assert metadata["modelspec.architecture"].endswith("/lora")
    assert read_lora(flux_lora).info.family == BASE


def test_generation_with_the_lora_draws_other_pixels_and_its_png_reproduces_it(flux_cache, flux_lora, tmp_path):
    plain = generate(flux_cache, _request()).images[0]
    result = generate(flux_cache, _request(loras=[LoraSelection(lora=str(flux_lora), strength=1.0)]))
    assert np.abs(_pixels(result.images[0]) - _pixels(plain)).max() > 10
    assert result.params[0]["family"] == BASE and result.params[0]["sampler"] == "Euler"
    assert result.params[0]["cfg_scale"] == 3.5  # FLUX.1 [dev]'s distilled guidance, the family's default
    [png] = save_result(result, tmp_path)
    again, _ = request_from_png(png, base=None, default_base=BASE)
    assert np.array_equal(_pixels(generate(flux_cache, again).images[0]), _pixels(result.images[0]))


def test_an_sd_sampler_is_refused_on_flux_with_what_to_use(flux_cache):
    with pytest.raises(Invalid, match="Euler") as caught:
        generate(flux_cache, _request(sampler="DDIM"))
    assert caught.value.setting == "sampler"


def test_two_loras_stack_and_split_into_regions(flux_cache, flux_lora, tmp_path):
    other = read_lora(flux_lora)
    for key in [k for k in other.tensors if k.endswith(".lora_up.weight")]:
        other.tensors[key] = -other.tensors[key]  # a second, different LoRA of the same family
    second = save_lora(tmp_path / "kanehero.safetensors", other)
    one = LoraSelection(lora=str(flux_lora), strength=0.8)
    two = LoraSelection(lora=str(second), strength=0.8)
    stacked = generate(flux_cache, _request(loras=[one, two])).images[0]
    regional = generate(
        flux_cache,
        _request(loras=[one.model_copy(update={"region": "left"}), two.model_copy(update={"region": "right"})]),
    )
    assert np.abs(_pixels(regional.images[0]) - _pixels(stacked)).max() > 10
    [png] = save_result(regional, tmp_path / "out")
    again, _ = request_from_png(png, base=None, default_base=BASE)
    assert np.array_equal(_pixels(generate(flux_cache, again).images[0]), _pixels(regional.images[0]))


def test_a_lora_confined_to_the_left_half_changes_only_the_left_half(flux_cache, flux_lora, monkeypatch):
    """The region masks work on the transformer's image tokens: right of the seam the denoised latents are the
    plain picture's, bit for bit. The pixels there move only through the VAE decoder's own attention, which
    spreads any change a little over the whole picture (FLUX's VAE has it too)."""
    decoded = []
    monkeypatch.setattr(generate_module, "to_images", lambda model, x: decoded.append(x) or to_images(model, x))
    size = dict(width=128, height=128)
    plain = _pixels(generate(flux_cache, _request(**size)).images[0])
    left = LoraSelection(lora=str(flux_lora), strength=1.0, region="left")
    confined = _pixels(generate(flux_cache, _request(loras=[left], **size)).images[0])
    before, after = decoded
    half = before.shape[-1] // 2  # 16 latent columns: 8 image tokens of 2x2 patches
    assert torch.equal(after[..., half:], before[..., half:])
    assert (after[..., :half] - before[..., :half]).abs().mean() > 1e-3
    change = np.abs(confined - plain).mean(axis=2)
    assert change[:, :64].mean() > 2 * change[:, 64:].mean()


def test_a_flux1_lora_on_an_sd_base_is_refused_naming_both(flux_settings, flux_lora):
    cache = PipelineCache(flux_settings)
    with pytest.raises(FamilyMismatch, match="FLUX.1") as caught:
        generate(cache, _request(base="tiny-sd15", loras=[LoraSelection(lora=str(flux_lora))]))
    assert "SD1.5" in str(caught.value)


def test_a_lora_trained_on_one_picture_draws_it_closer_as_steps_grow(flux_settings, flux_cache, tmp_path, monkeypatch):
    """Not only the loss: what the sampler draws moves toward the one training picture as training goes on. Measured
    on the latents the transformer denoises, against the picture's own: the tiny model's VAE has random weights,
    so its decoder turns any latent into pixels through a fixed but arbitrary map."""
    folder = tmp_path / "one"
    write_reference_set(folder, 1, seed=5, size=64, caption="johnhero, a person")
    drawn = []
    monkeypatch.setattr(generate_module, "to_images", lambda model, x: drawn.append(x) or to_images(model, x))
    request = _request(width=64, height=64, steps=16, cfg_scale=1.0)  # the guidance it trains with
    picture = None
    errors = []
    for steps in (0, 30, 120):
        loras = []
        if steps:
            cfg = tiny_config(
                folder,
                tmp_path / f"run{steps}",
                base=BASE,
                steps=steps,
                learning_rate=3e-3,
                network_dim=32,
                network_alpha=32,
                target="all",
                min_images=1,
                output=tmp_path / f"one{steps}.safetensors",
            )
            loras = [LoraSelection(lora=str(train_lora(cfg, settings=flux_settings).lora_path))]
        generate(flux_cache, request.model_copy(update={"loras": loras}))
        if picture is None:
            model = denoiser_for(flux_cache.base)
            image = next(p for p in folder.iterdir() if p.suffix == ".png")
            pixels = torch.from_numpy(_pixels(Image.open(image).convert("RGB")).astype(np.float32))
            picture = model.to_latents(pixels.permute(2, 0, 1)[None] / 127.5 - 1)
        errors.append(float(((drawn[-1] - picture) ** 2).mean()))
    assert errors[0] > errors[1] > errors[2], errors


def test_an_8bit_base_with_swapped_blocks_trains_a_lora_that_loads(flux_settings, figure_dir, tmp_path):
    """--quantize-base int8 and --blocks-to-swap on FLUX.1: the LoRA trains on the 8-bit frozen base and loads."""
    cfg = tiny_config(
        figure_dir,
        tmp_path,
        base=BASE,
        steps=3,
        quantize_base="int8",
        blocks_to_swap=1,
        gradient_checkpointing=True,
        output=tmp_path / "q.safetensors",
    )
    result = train_lora(cfg, settings=flux_settings)
    assert all(math.isfinite(loss) for _, loss in result.loss_history)
    lora = read_lora(result.lora_path)
    assert any(float(lora.tensors[f"{s}.lora_up.weight"].abs().max()) > 0 for s in lora.stems)


def test_sd_only_and_flux_only_settings_are_refused_before_loading(flux_settings, figure_dir, tmp_path):
    with pytest.raises(Invalid, match="transformer only") as caught:
        train_lora(tiny_config(figure_dir, tmp_path, base=BASE, train_text_encoder=True), settings=flux_settings)
    assert caught.value.setting == "train_text_encoder"
    with pytest.raises(Invalid, match="fits without it") as caught:
        train_lora(tiny_config(figure_dir, tmp_path, quantize_base="int8"), settings=flux_settings)
    assert caught.value.setting == "quantize_base"


def test_a_training_that_cannot_fit_the_card_says_what_to_turn_on():
    flux = FAMILIES["flux1"]
    plain = dict(resolution=1024, batch_size=1)
    assert training_need_gb(flux, **plain) > 24  # FLUX.1 in bf16 does not fit a 24 GB card
    fitted = dict(plain, gradient_checkpointing=True, quantize_base="int8")
    assert training_need_gb(flux, **fitted) < 24 < training_need_gb(flux, **plain)
    assert training_need_gb(flux, **fitted, blocks_to_swap=20) < training_need_gb(flux, **fitted)
    with pytest.raises(OutOfMemory) as caught:
        check_training_fits(flux, 24.0, "an RTX 4090", **plain)
    message = words(caught.value, FLAGS)
    assert "--gradient-checkpointing" in message and "--quantize-base int8" in message
    assert "--blocks-to-swap" in message and "RTX 4090" in message
    check_training_fits(flux, 24.0, "an RTX 4090", **fitted)  # fits: no error
    assert training_need_gb(FAMILIES["tiny-flux1"], **plain) is None


def test_previews_sample_from_cached_prompts_with_the_text_encoders_freed(
    flux_settings, figure_dir, tmp_path, monkeypatch
):
    """FLUX's T5 is the biggest part of the model a LoRA run does not train: it goes once the captions and the
    preview prompts are encoded, and the previews still draw (through the sampler generation uses)."""
    cfg = tiny_config(
        figure_dir, tmp_path, base=BASE, steps=2, sample_every=2, sample_prompts=["johnhero, a person"], sample_steps=2
    )
    seen, freed = [], []
    real_release = train_module.release
    monkeypatch.setattr(
        train_module, "release", lambda modules, device: freed.extend(modules) or real_release(modules, device)
    )
    result = train_lora(cfg, settings=flux_settings, on_progress=seen.append)
    assert {type(m).__name__ for m in freed} == {"CLIPTextModel", "T5EncoderModel"}  # the VAE stays to draw
    [preview] = result.samples
    assert Image.open(preview).size == (64, 64)
    assert [e.phase for e in seen].count("sample") == 1
