"""The toyworld base model: its architecture, its training data, and the reproducible training run
behind `lorastudio toyworld train-base` (the shipped weights came from this function).

Two stages, like SD: a VAE (32x32x3 <-> 16x16x4) trained on reconstructions, then the text encoder
and UNet trained together to predict noise on the VAE's latents, with 10% empty captions for CFG.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from lorastudio.engine.models.base import FAMILY_MARKER
from lorastudio.engine.models.tokenizer import build_clip_tokenizer
from lorastudio.engine.toyworld.render import draw_scene, make_scene
from lorastudio.engine.toyworld.world import (
    ACCESSORIES,
    BACKGROUNDS,
    COLOURS,
    HELD_OUT_STYLE,
    STYLES,
    Character,
    all_words,
    held_out_pairs,
)
from lorastudio.engine.training.parts import to_device

MAX_TOKENS = 40


def build_toyworld_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """Untrained toyworld pipeline: SD1.5's structure at 32x32 (about 5M parameters in all)."""
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(all_words(), max_length=MAX_TOKENS)
    vocab = len(tokenizer)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
            hidden_act="quick_gelu",
            projection_dim=128,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(64, 128),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32,
        sample_size=32,
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=128,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def base_training_characters() -> list[Character]:
    """Every body/head/accessory combination except the held-out colour pairings."""
    held = held_out_pairs()
    return [
        Character(f"{b}-{h}-{a}", b, h, a)
        for b in COLOURS
        for h in COLOURS
        for a in ACCESSORIES
        if b != h and (b, h) not in held
    ]


def base_training_set(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """n renders (uint8, N x 3 x 32 x 32) and captions, without held-out characters or style."""
    rng = random.Random(seed)
    chars = base_training_characters()
    styles = [None] + [s for s in STYLES if s != HELD_OUT_STYLE]
    images, captions = [], []
    for i in range(n):
        count = 1 if rng.random() < 0.6 else 2
        picked = rng.sample(chars, count)
        if count == 2 and picked[0].body == picked[1].body:
            picked = picked[:1]
        scene = make_scene(picked, rng.choice(styles), rng.choice(list(BACKGROUNDS)), rng)
        img = draw_scene(scene, seed * 1_000_003 + i)
        images.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(32, 32, 3))
        captions.append(scene.caption)
    return torch.stack(images).permute(0, 3, 1, 2).contiguous(), captions


def train_toyworld_base(
    out_dir: Path,
    *,
    vae_steps: int = 3000,
    unet_steps: int = 30_000,
    minutes: float | None = None,
    renders: int = 40_000,
    batch: int = 128,
    device: str = "cpu",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Train the toyworld base for fixed step counts (optionally capped by `minutes`, the UNet stage
    getting what the VAE stage left) and save it in fp16 as a diffusers folder with a training log."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    lines: list[str] = []

    def note(text: str) -> None:
        lines.append(text)
        log(text)

    torch.manual_seed(seed)
    pipe = build_toyworld_pipeline(seed)
    images, captions = base_training_set(renders, seed)
    pixels = images.to(dev).float() / 127.5 - 1
    note(
        f"train_toyworld_base(vae_steps={vae_steps}, unet_steps={unet_steps}, minutes={minutes}, "
        f"renders={renders}, batch={batch}, seed={seed}) on {dev}"
    )
    note(f"{renders} renders, {len(base_training_characters())} characters")
    vae, unet, te, tok = pipe.vae.to(dev), pipe.unet.to(dev), pipe.text_encoder.to(dev), pipe.tokenizer
    gen = torch.Generator(device="cpu").manual_seed(seed)
    budget, t0 = (minutes or 1e9) * 60, time.perf_counter()

    # Stage 1: the VAE.
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    step = 0
    while step < vae_steps and time.perf_counter() - t0 < budget * 0.2:
        idx = to_device(torch.randint(0, renders, (batch,), generator=gen), dev)
        x = pixels[idx]
        dist = vae.encode(x).latent_dist
        recon = vae.decode(dist.sample()).sample
        loss = F.mse_loss(recon, x) + 1e-6 * dist.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            note(f"vae step {step} loss {loss.item():.4f}")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        sample = torch.cat(
            [vae.encode(pixels[i : i + 512]).latent_dist.mode() for i in range(0, min(2048, renders), 512)]
        )
        vae.register_to_config(scaling_factor=float(1 / sample.std()))
        latents = torch.cat([vae.encode(pixels[i : i + 512]).latent_dist.mode() for i in range(0, renders, 512)])
        latents = latents * vae.config.scaling_factor
    ids_all = tok(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    ids_all, empty = ids_all.to(dev), empty.to(dev)

    # Stage 2: text encoder + UNet, epsilon prediction, min-SNR-5 weighting.
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    ac = noise_sched.alphas_cumprod.to(dev)
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    step, stage_t0 = 0, time.perf_counter()
    stage_budget = budget - (stage_t0 - t0)
    while step < unet_steps and time.perf_counter() - t0 < budget:
        idx = to_device(torch.randint(0, renders, (batch,), generator=gen), dev)
        lat = latents[idx]
        ids = ids_all[idx]
        drop = to_device(torch.rand(batch, generator=gen), dev) < 0.1
        ids = torch.where(drop[:, None], empty, ids)  # masked assignment would wait for the GPU
        noise = to_device(torch.randn(lat.shape, generator=gen), dev)
        t = to_device(torch.randint(0, 1000, (batch,), generator=gen), dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = unet(noise_sched.add_noise(lat, noise, t), t, te(ids)[0]).sample
        snr = ac[t] / (1 - ac[t])
        w = torch.clamp(snr, max=5.0) / snr
        loss = (F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3)) * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        # Cosine decay over the steps, or over the time left when the time cap will bind first.
        frac = max(step / unet_steps, (time.perf_counter() - stage_t0) / stage_budget)
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item()))
        opt.step()
        step += 1
        if step % 1000 == 0:
            note(f"unet step {step} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
    note(f"trained {step} UNet steps in {time.perf_counter() - t0:.0f}s")
    pipe.to("cpu")
    pipe.unet.half(), pipe.vae.half(), pipe.text_encoder.half()
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / FAMILY_MARKER).write_text("toyworld\n")
    (out_dir / "training_log.txt").write_text("\n".join(lines) + "\n")
    return out_dir
