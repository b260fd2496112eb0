"""Training speed: our trainer vs a plain diffusers-style LoRA loop, same model, data and settings.

The baseline follows diffusers' train_text_to_image_lora.py: every step converts the images,
VAE-encodes them (sampling the latent distribution) and runs the text encoder. Ours caches latents
and text embeddings once. Both run in this process on the same device; prints steps/s, the ratio
and peak memory (GPU allocator peak on CUDA, resident-set growth on CPU).

    python benchmarks/train_speed.py [--steps 80] [--resolution 256] [--device auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lorastudio.config import Settings
from lorastudio.quiet import quiet_libraries


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or resident-set growth sampled every 5 ms on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb, self._stop = device, 0.0, threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self._start = self._rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._start)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._start
        else:
            self._stop.set()
            self._thread.join()


def baseline_loop(model_dir: Path, images: list, caption: str, args, device: torch.device) -> float:
    """A plain loop in the style of diffusers' train_text_to_image_lora.py; returns seconds."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from peft import LoraConfig

    from lorastudio.engine.data.buckets import fit_to_bucket
    from lorastudio.engine.lora.keys import unet_targets
    from lorastudio.engine.training.parts import to_pixels

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    unet, vae, te, tok = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for m in (unet, vae, te):
        m.requires_grad_(False)
        m.to(device)
    torch.manual_seed(args.seed)
    unet.add_adapter(LoraConfig(r=args.dim, lora_alpha=args.dim, target_modules=unet_targets(unet, "attn")))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        idx = torch.randint(0, len(images), (args.batch,), generator=gen).tolist()
        pixels = torch.stack([to_pixels(fit_to_bucket(images[i], args.resolution)) for i in idx]).to(device)
        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        ids = tok([caption] * args.batch, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids.to(device)  # fmt: skip
        hidden = te(ids)[0]
        noise = torch.randn(latents.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
        pred = unet(sched.add_noise(latents, noise, t), t, hidden).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        opt.step()
        opt.zero_grad()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def ours(folder: Path, out: Path, args, settings: Settings) -> float:
    """Our trainer with the same settings (min-SNR and warm-up off to match the baseline's work)."""
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.train import train_lora

    cfg = TrainConfig.from_preset(
        kind="character", images=folder, trigger="johnhero", base="tiny-sd15", output=out / "b.safetensors",
        run_dir=out / "run", steps=args.steps, resolution=args.resolution, network_dim=args.dim,
        network_alpha=args.dim, learning_rate=1e-4, batch_size=args.batch, checkpoint_every=0,
        min_snr_gamma=None, warmup_steps=0, min_images=4, seed=args.seed, device=args.device, precision="no",
    )  # fmt: skip
    t0 = time.perf_counter()
    train_lora(cfg, settings=settings)
    if torch.cuda.is_available() and args.device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    """Run both loops and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=768)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    from PIL import Image

    from lorastudio.engine.data.synthetic import write_reference_set
    from lorastudio.engine.models.device import resolve_device
    from lorastudio.engine.models.tiny import ensure_tiny_model

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(home=tmp / "home", device=args.device)
        model_dir = ensure_tiny_model("tiny-sd15", settings.models_dir)
        paths = write_reference_set(tmp / "imgs", args.images, size=args.image_size, caption="johnhero, a person")
        images = [Image.open(p).convert("RGB") for p in paths]
        ours(tmp / "imgs", tmp / "warm", argparse.Namespace(**{**vars(args), "steps": 2}), settings)  # warm-up
        with PeakMemory(device) as base_mem:
            base_s = baseline_loop(model_dir, images, "johnhero, a person", args, device)
        with PeakMemory(device) as our_mem:
            our_s = ours(tmp / "imgs", tmp / "ours", args, settings)
    result = {
        "device": str(device),
        "steps": args.steps,
        "resolution": args.resolution,
        "batch": args.batch,
        "ours_steps_per_s": round(args.steps / our_s, 3),
        "baseline_steps_per_s": round(args.steps / base_s, 3),
        "ratio": round(base_s / our_s, 3),
        "ours_peak_mb": round(our_mem.peak_mb, 1),
        "baseline_peak_mb": round(base_mem.peak_mb, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"device {result['device']}, {args.steps} steps, {args.resolution}px, batch {args.batch}")
    print(f"ours     {result['ours_steps_per_s']:8.3f} steps/s   peak {result['ours_peak_mb']:8.1f} MB")
    print(f"baseline {result['baseline_steps_per_s']:8.3f} steps/s   peak {result['baseline_peak_mb']:8.1f} MB")
    print(f"ratio    {result['ratio']:.2f}x (target >= 2x, peak memory not above the baseline's)")


if __name__ == "__main__":
    main()
