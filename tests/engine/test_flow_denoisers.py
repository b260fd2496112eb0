"""The FLUX.2 [klein], Qwen-Image and Z-Image denoiser adapters, proved against the families' own diffusers
pipelines on the tiny models: our sampler draws the pipeline's picture from the same noise, the latents
round-trip through the VAE, and a training step through `predict` reaches a LoRA on the transformer."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from lorastudio.engine.generation.flow import sample_flow
from lorastudio.engine.models.base import load_base_model
from lorastudio.engine.models.denoisers import denoiser_for
from lorastudio.engine.models.denoisers.common import lora_targets, pack
from lorastudio.engine.models.denoisers.flux2 import pack_channels, unpack_channels
from lorastudio.engine.models.families import FAMILIES as ROWS
from lorastudio.engine.models.tiny import ensure_tiny_model
from lorastudio.engine.training.objectives import FlowObjective

FAMILIES = ("tiny-flux2-klein", "tiny-qwen-image", "tiny-z-image")
PROMPT, NEGATIVE = "a red cube on green grass", "blurry"
STEPS, CFG = 4, 3.0


@pytest.fixture(scope="module")
def flow_settings(settings):
    for name in FAMILIES:
        ensure_tiny_model(name, settings.models_dir)
    return settings


def _load(name, settings):
    base = load_base_model(name, settings)
    if name == "tiny-flux2-klein":
        # A fresh autoencoder's batch-norm statistics are 0 and 1, under which a missing normalization
        # would go unseen; the released one's are far from that.
        gen = torch.Generator().manual_seed(1)
        base.pipe.vae.bn.running_mean.copy_(torch.randn(128, generator=gen))
        base.pipe.vae.bn.running_var.copy_(torch.rand(128, generator=gen) + 0.5)
    return base, denoiser_for(base)


def _pipeline_picture(name, pipe, noise):
    """The family's own pipeline from the same noise, handed over in the format its `latents=` takes."""
    tokens = ROWS[name].text_tokens  # the tiny rows' 32, which the adapters encode with
    common = dict(
        prompt=PROMPT, num_inference_steps=STEPS, height=64, width=64, output_type="pt", max_sequence_length=tokens
    )
    if name == "tiny-flux2-klein":  # patchified (B, 128, h/2, w/2); the negative prompt is always ""
        return pipe(latents=pack_channels(noise), guidance_scale=CFG, **common).images
    if name == "tiny-qwen-image":  # packed tokens
        return pipe(latents=pack(noise), negative_prompt=NEGATIVE, true_cfg_scale=CFG, **common).images
    return pipe(latents=noise, negative_prompt=NEGATIVE, guidance_scale=CFG, **common).images


@pytest.mark.parametrize("name", FAMILIES)
def test_our_sampler_draws_the_pipelines_picture(name, flow_settings):
    base, model = _load(name, flow_settings)
    noise = torch.randn(1, *model.latent_shape(64, 64), generator=torch.Generator().manual_seed(0))
    negative = "" if name == "tiny-flux2-klein" else NEGATIVE
    assert model.uses_cfg(CFG)
    passes = [(lambda: None, model.encode([PROMPT]), model.encode([negative]))]
    latents = sample_flow(model, noise, passes, steps=STEPS, cfg_scale=CFG, height=64, width=64)
    ours = (model.to_pixels(latents) + 1) / 2
    theirs = _pipeline_picture(name, base.pipe, noise)
    assert theirs.std() > 0.05  # a picture, not a flat field that anything would match
    # FLUX.2 [klein] also needs flow_schedule to take its mu from model.sample_shift(height, width, steps).
    assert torch.allclose(ours, theirs, atol=1e-4), f"{name}: off by {(ours - theirs).abs().max():.2e}"


@pytest.mark.parametrize("name", FAMILIES)
def test_latents_round_trip_through_the_vae(name, flow_settings):
    base, model = _load(name, flow_settings)
    pixels = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    latents = model.to_latents(pixels)
    assert latents.shape == (2, *model.latent_shape(32, 64))
    assert latents.shape[2] % model.patch == 0 and latents.shape[3] % model.patch == 0
    back = model.to_pixels(latents)
    assert back.shape == pixels.shape and back.min() >= -1 and back.max() <= 1
    # The normalization is undone exactly: decoding our latents is decoding the VAE's own.
    vae = base.pipe.vae
    with torch.no_grad():
        if name == "tiny-qwen-image":
            raw = vae.decode(vae.encode(pixels[:, :, None]).latent_dist.mode())[0][:, :, 0]
        else:
            raw = vae.decode(vae.encode(pixels).latent_dist.mode())[0]
    assert torch.allclose(back, raw.clamp(-1, 1), atol=1e-4)


def test_klein_latents_are_the_pipelines_normalized_patches(flow_settings):
    base, model = _load("tiny-flux2-klein", flow_settings)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    theirs = base.pipe._encode_vae_image(pixels, generator=None)  # what its image editing conditions on
    assert torch.allclose(pack_channels(model.to_latents(pixels)), theirs, atol=1e-5)
    x = torch.randn(2, 32, 8, 6)
    assert torch.equal(unpack_channels(pack_channels(x)), x)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_training_step_through_predict_reaches_a_lora(name, flow_settings):
    base, model = _load(name, flow_settings)
    module = model.module
    module.requires_grad_(False)
    targets = lora_targets(module, model.family, "all")
    assert targets
    torch.manual_seed(0)
    module.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights="gaussian"))
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    latents = model.to_latents(pixels)
    objective = FlowObjective(model.flow_shift(64, 64))
    gen = torch.Generator().manual_seed(5)
    noise, t = torch.randn(latents.shape, generator=gen), objective.timesteps(2, gen)
    # Two captions of different lengths: the variable-length families batch them padded or as lists.
    conds = model.encode(["a cube", "a red cube on green grass under a blue sky"])
    pred = model.predict(objective.noisy(latents, noise, t), t, conds)
    assert pred.shape == latents.shape
    loss = torch.nn.functional.mse_loss(pred.float(), objective.target(latents, noise, t))
    loss.backward()
    lora = {n: p for n, p in module.named_parameters() if "lora_" in n}
    assert torch.isfinite(loss) and lora
    assert all(torch.isfinite(p.grad).all() for p in lora.values() if p.grad is not None)
    # Every LoRA layer is on the path to the loss but Qwen-Image's last block's text side, whose output the
    # model drops (it has no single-stream blocks after it to read it).
    unreached = {n.split(".lora_")[0] for n, p in lora.items() if p.grad is None}
    last = f"transformer_blocks.{len(module.transformer_blocks) - 1}" if name == "tiny-qwen-image" else None
    assert unreached == (
        {f"{last}.attn.to_add_out", f"{last}.txt_mlp.net.0.proj", f"{last}.txt_mlp.net.2"} if last else set()
    )
    # lora_B starts at zero, so its gradients are what the first step moves.
    assert any(p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)


def test_guidance_switches_follow_each_pipeline(flow_settings):
    _, klein = _load("tiny-flux2-klein", flow_settings)
    _, z_image = _load("tiny-z-image", flow_settings)
    assert not klein.uses_cfg(1.0) and klein.uses_cfg(1.5)
    assert z_image.uses_cfg(0.5) and not z_image.uses_cfg(0.0)  # Z-Image guides at any scale above 0
    u, c = torch.zeros(1, 16, 4, 4), torch.ones(1, 16, 4, 4)
    assert torch.equal(z_image.combine_cfg(u, c, 2.0), torch.full_like(c, 3.0))  # cond + 2 * (cond - uncond)
    klein.pipe.register_to_config(is_distilled=True)  # the step-distilled [klein]s ignore the scale
    assert not klein.uses_cfg(4.0)
