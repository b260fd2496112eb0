"""Training speed: our trainer vs a plain diffusers-style LoRA loop, same model, data and settings.

The baseline follows diffusers' train_text_to_image_lora(_sdxl).py: every step converts the images,
VAE-encodes them (sampling the latent distribution), runs the text encoder(s) and reads the loss with
`.item()`. Ours caches latents and text embeddings once and reads losses every 0.5 s. Both run in this
process on the same device and precision; prints steady-state steps/s (the first step and the model
load left out), the ratio, peak memory (GPU allocator peak on CUDA, resident-set growth on CPU) and the
seconds per phase of a step for each.

--model tiny-sd15 (default) is the tiny test model; sd15-sized and sdxl-sized are the full SD1.5 and
SDXL architectures from their published configs with random weights (engine/models/sized.py; written
once to --models-dir, about 2 GB and 7 GB).

    python benchmarks/train_speed.py [--model sd15-sized] [--steps 80] [--resolution 256] [--batch 2]
                                     [--precision no|fp16|bf16] [--device auto] [--json]

The transformer families (flux1-sized, flux2-klein-sized, qwen-image-sized, z-image-sized) are measured
differently: their whole pipelines are 16-58 GB on disk, and the text encoders are frozen and cached in
training anyway, so only the denoiser is built (`build_sized_denoiser`, random weights) and given random
latents and text embeddings of the family's shapes. The step is the engine's own: the family's denoiser
adapter, FlowObjective at the family's shift, `quantize_frozen`, the LoRA on `--target` layers, gradient
checkpointing, AdamW. Each variant (plain, gradient checkpointing, 8-bit base, both) runs in its own
process; printed per variant: steady steps/s (the first step left out), the resident set after the build,
the peak growth over the steps (PeakMemory) and the process's peak resident set. `--blocks N` keeps N
blocks of each block list (a machine that cannot hold FLUX.1's 24 GB or Qwen-Image's 41 GB), and says so.

    python benchmarks/train_speed.py --model flux1-sized --blocks 2 --resolution 128 --steps 3
                                     [--text-tokens 512] [--dtype auto|fp32|bf16]
                                     [--variants plain,ckpt,int8,int8+ckpt] [--json]
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
    """Peak memory of a block: the CUDA allocator's peak, or on CPU the growth of the resident set's
    high-water mark (reset through /proc/self/clear_refs; a 5 ms sampling thread where that is refused,
    which itself slowed a training step by about 10%)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb, self._stop, self._thread = device, 0.0, threading.Event(), None

    @staticmethod
    def _status_mb(field: str) -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        self._start = self._status_mb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # the high-water mark restarts from the current resident set
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._status_mb("VmRSS") - self._start)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._start
        elif self._thread is None:
            self.peak_mb = self._status_mb("VmHWM") - self._start
        else:
            self._stop.set()
            self._thread.join()


PHASES = ("data and VAE", "text encoder", "forward", "backward", "all-reduce", "optimizer", "loss read")


def baseline_loop(model_dir: Path, images: list, caption: str, args, device: torch.device, profile: bool) -> dict:
    """A plain loop in the style of diffusers' LoRA scripts; returns step times and phase seconds."""
    from diffusers import DDPMScheduler, DiffusionPipeline
    from peft import LoraConfig

    from lorastudio.engine.data.buckets import fit_to_bucket
    from lorastudio.engine.lora.keys import unet_targets
    from lorastudio.engine.models.device import weight_dtype
    from lorastudio.engine.models.textenc import encode_text, sdxl_time_ids
    from lorastudio.engine.training.parts import to_pixels
    from lorastudio.engine.training.steplog import PhaseTimer

    wdtype = weight_dtype(args.precision)
    pipe = DiffusionPipeline.from_pretrained(model_dir, dtype=wdtype, local_files_only=True)
    unet, vae = pipe.unet, pipe.vae
    encoders = [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None]
    tokenizers = [t for t in (pipe.tokenizer, getattr(pipe, "tokenizer_2", None)) if t is not None]
    for m in (unet, vae, *encoders):
        m.requires_grad_(False)
        m.to(device)
    vae.to(dtype=torch.float32)  # as the SDXL script does: its VAE overflows in fp16
    torch.manual_seed(args.seed)
    unet.add_adapter(LoraConfig(r=args.dim, lora_alpha=args.dim, target_modules=unet_targets(unet, "attn")))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # diffusers' cast_training_params: LoRA weights train in fp32
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(args.seed)
    sdxl = len(encoders) == 2
    phases, stamps = PhaseTimer(device, profile), []
    autocast = torch.autocast(device.type, dtype=wdtype, enabled=args.precision != "no")
    for _ in range(args.steps):
        idx = torch.randint(0, len(images), (args.batch,), generator=gen).tolist()
        fitted = [fit_to_bucket(images[i], args.resolution) for i in idx]
        pixels = torch.stack([to_pixels(f) for f in fitted]).to(device)
        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
        phases.mark("data and VAE")
        with autocast:
            cond = encode_text(tokenizers, encoders, [caption] * args.batch)
            phases.mark("text encoder")
            extra = {}
            if sdxl:
                ids = torch.stack([sdxl_time_ids(f.original_size, f.crop_top_left, f.bucket[::-1]) for f in fitted])
                extra = {"added_cond_kwargs": {"text_embeds": cond.pooled, "time_ids": ids.to(device)}}
            noisy = sched.add_noise(latents, noise, t).to(wdtype)
            pred = unet(noisy, t, cond.hidden.to(wdtype), **extra).sample
        loss = F.mse_loss(pred.float(), noise.float())
        phases.mark("forward")
        loss.backward()
        phases.mark("backward")
        opt.step()
        opt.zero_grad()
        phases.mark("optimizer")
        loss.item()  # the script's train_loss += avg_loss.item(): a host sync every step
        phases.mark("loss read")
        stamps.append(time.perf_counter())
    return {"stamps": stamps, "phases": phases.result()}


def ours(folder: Path, out: Path, model_dir: Path, args, settings: Settings, profile: bool, devices: int = 1) -> dict:
    """Our trainer with the same settings (min-SNR and warm-up off to match the baseline's work)."""
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.train import train_lora

    cfg = TrainConfig.from_preset(
        kind="character",
        images=folder,
        trigger="johnhero",
        base=str(model_dir),
        output=out / "b.safetensors",
        run_dir=out / "run",
        steps=args.steps,
        resolution=args.resolution,
        network_dim=args.dim,
        network_alpha=args.dim,
        learning_rate=1e-4,
        batch_size=args.batch,
        checkpoint_every=0,
        min_snr_gamma=None,
        warmup_steps=0,
        min_images=4,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        profile=profile,
        devices=devices,
    )
    stamps: dict[int, float] = {}

    def on_progress(event) -> None:
        if event.phase == "train":
            stamps[event.step] = time.perf_counter()  # losses arrive in batches: the read time of each

    result = train_lora(cfg, settings=settings, on_progress=on_progress)
    return {"stamps": stamps, "phases": result.phase_seconds}


def steady_steps_per_s(stamps) -> float:
    """Steps/s after the first step (which holds one-off work: allocations, kernel choice)."""
    if isinstance(stamps, dict):  # ours: the time each step's loss was read, in read batches
        steps = sorted(stamps)
        first = next((s for s in steps if stamps[s] > stamps[steps[0]]), steps[-1])
        return (steps[-1] - first) / max(stamps[steps[-1]] - stamps[first], 1e-9) if steps[-1] > first else 0.0
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


FLOW_MODELS = {  # sized name -> (family row, scheduler config, block-count keys of its config)
    "flux1-sized": ("flux1", "FLUX1_SCHEDULER", ("num_layers", "num_single_layers")),
    "flux2-klein-sized": ("flux2-klein", "FLUX2_SCHEDULER", ("num_layers", "num_single_layers")),
    "qwen-image-sized": ("qwen-image", "QWEN_IMAGE_SCHEDULER", ("num_layers",)),
    "z-image-sized": ("z-image", "Z_IMAGE_SCHEDULER", ("n_layers",)),  # its 2 + 2 refiners stay
}
FLOW_VARIANTS = ("plain", "ckpt", "int8", "int8+ckpt")


def flow_dtype(asked: str) -> torch.dtype:
    """fp32 on a CPU without bf16 instructions (a bf16 matmul ran at 0.4 GFLOPS against fp32's 85 on this
    AVX2 CPU), bf16 where the device computes it, as the engine's `auto` precision picks."""
    from lorastudio.engine.models.device import cpu_has_bf16

    if asked == "auto":
        asked = "bf16" if torch.cuda.is_available() or cpu_has_bf16() else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[asked]


def full_blocks(name: str) -> dict[str, int]:
    """The released model's block counts, read from its config on the meta device (nothing allocated)."""
    from accelerate import init_empty_weights

    from lorastudio.engine.models.sized import build_sized_denoiser

    with init_empty_weights():
        config = build_sized_denoiser(name).config
    return {key: config[key] for key in FLOW_MODELS[name][2]}


def flow_step_child(spec: dict) -> dict:
    """One variant in this process: build the sized denoiser, quantize, add the LoRA, time the steps."""
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler
    from peft import LoraConfig

    from lorastudio.engine.models import tiny_flow
    from lorastudio.engine.models.denoisers import ADAPTERS
    from lorastudio.engine.models.denoisers.common import lora_targets
    from lorastudio.engine.models.families import FAMILIES
    from lorastudio.engine.models.quantize import quantize_frozen
    from lorastudio.engine.models.sized import build_sized_denoiser
    from lorastudio.engine.training.objectives import FlowObjective
    from lorastudio.engine.training.parts import make_optimizer, step_noise

    name, variant = spec["model"], spec["variant"]
    row, scheduler, _ = FLOW_MODELS[name]
    family, dtype = FAMILIES[row], flow_dtype(spec["dtype"])
    device = torch.device(spec.get("device", "cpu"))
    t0 = time.perf_counter()
    denoiser = build_sized_denoiser(name, dtype=dtype, **spec["blocks"]).requires_grad_(False)
    build_s = time.perf_counter() - t0
    # The adapter needs of the pipeline only its scheduler config (the training shift) and the VAE's
    # factor (8 in every one of these families); the text encoders and VAE are cached away in training.
    pipe = SimpleNamespace(
        scheduler=FlowMatchEulerDiscreteScheduler(**getattr(tiny_flow, scheduler)), vae_scale_factor=8
    )
    model = ADAPTERS[family.denoiser](SimpleNamespace(pipe=pipe, denoiser=denoiser, family=row), family)
    if "int8" in variant:
        quantize_frozen(denoiser, "int8")  # before the LoRA, as train_lora does
    torch.manual_seed(spec["seed"])
    denoiser.add_adapter(
        LoraConfig(
            r=spec["dim"],
            lora_alpha=spec["dim"],
            target_modules=lora_targets(denoiser, family, spec["target"]),
            init_lora_weights="gaussian",
        )
    )
    lora = [p for p in denoiser.parameters() if p.requires_grad]
    for p in lora:
        p.data = p.data.float()  # LoRA weights train in fp32 whatever the base precision, as train_lora
    if "ckpt" in variant:
        denoiser.enable_gradient_checkpointing()
    denoiser.to(device)
    denoiser.train()
    loaded_mb = PeakMemory._status_mb("VmRSS")
    build_peak_mb = PeakMemory._status_mb("VmHWM")
    optimizer = make_optimizer("adamw", [{"params": lora, "lr": 1e-4}], device, 1e-2)
    objective = FlowObjective(model.flow_shift(spec["resolution"], spec["resolution"]))
    gen = torch.Generator().manual_seed(spec["seed"])
    shape = (spec["batch"], *model.latent_shape(spec["resolution"], spec["resolution"]))
    latents = torch.randn(shape, generator=gen).to(device)  # the cached latents' shape; values do not change the cost
    config = denoiser.config
    width = config.get("joint_attention_dim") or config.get("cap_feat_dim")
    conds = []
    for _ in range(spec["batch"]):  # cached text embeddings of the family's width and length
        cond = {"hidden": torch.randn(1, spec["text_tokens"], width, generator=gen).to(device, dtype)}
        if config.get("pooled_projection_dim"):
            cond["pooled"] = torch.randn(1, config["pooled_projection_dim"], generator=gen).to(device, dtype)
        conds.append(cond)

    def step(k: int) -> None:
        noise, t = step_noise(latents.shape, spec["seed"], k, 0.0, objective)
        noise, t = noise.to(device), t.to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = model.predict(objective.noisy(latents, noise, t).to(dtype), t, conds)
        loss = F.mse_loss(pred.float(), objective.target(latents, noise, t).float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    flops = step_flops(lambda: step(0)) if spec.get("mfu") else None
    seconds = []
    with PeakMemory(device) as peak:
        for k in range(spec["steps"]):
            start = time.perf_counter()
            step(k)
            seconds.append(time.perf_counter() - start)
    params = sum(p.numel() for p in denoiser.parameters() if not p.requires_grad)
    steady = seconds[1:] or seconds
    return {
        "variant": variant,
        "dtype": str(dtype).removeprefix("torch."),
        "base_params_b": round(params / 1e9, 3),
        "lora_params_m": round(sum(p.numel() for p in lora) / 1e6, 2),
        "build_s": round(build_s, 1),
        "first_step_s": round(seconds[0], 2),
        "steps_per_s": round(len(steady) / sum(steady), 4),
        "loaded_mb": round(loaded_mb),
        "build_peak_mb": round(build_peak_mb),
        "step_peak_growth_mb": round(peak.peak_mb),
        "peak_rss_mb": round(max(build_peak_mb, loaded_mb + peak.peak_mb)),
    } | utilisation(flops, len(steady) / sum(steady), device)


# Dense bf16 peak of each chip, in TFLOP/s, from its maker's data sheet (without sparsity): the denominator of
# model FLOP utilisation (MFU). A chip not listed gets no MFU, only its achieved TFLOP/s.
PEAK_BF16_TFLOPS = {
    "H100 80GB HBM3": 989.0,  # SXM
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 6000 Ada": 364.0,
}


def step_flops(run_step) -> int:
    """The FLOPs of one training step (forward, loss, backward), counted once by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run_step()
    return counter.get_total_flops()


def unet_step_flops(model_dir: Path, args, device: torch.device) -> int:
    """FLOPs of one of our steps on an SD UNet: the LoRA'd UNet's forward, the loss and the backward at the
    run's batch, resolution and precision (the cached latents and text make the rest of a step negligible)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from lorastudio.engine.models.denoisers.common import lora_targets
    from lorastudio.engine.models.families import FAMILIES

    dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=dtype).requires_grad_(False)
    family = FAMILIES["sdxl" if unet.config.addition_embed_type == "text_time" else "sd15"]
    unet.add_adapter(LoraConfig(r=args.dim, lora_alpha=args.dim, target_modules=lora_targets(unet, family, "attn")))
    unet.to(device).train()
    b, side = args.batch, args.resolution // 8
    latents = torch.randn(b, unet.config.in_channels, side, side, device=device)
    text = torch.randn(b, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    extra = None
    if unet.config.addition_embed_type == "text_time":
        extra = {"text_embeds": torch.randn(b, 1280, device=device), "time_ids": torch.randn(b, 6, device=device)}
    t = torch.randint(0, 1000, (b,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = unet(latents.to(dtype), t, text, added_cond_kwargs=extra).sample
        F.mse_loss(pred.float(), latents).backward()

    return step_flops(step)


def utilisation(flops: int | None, steps_per_s: float, device: torch.device) -> dict:
    """Achieved TFLOP/s and, on a chip with a known peak, model FLOP utilisation; nothing without a count."""
    if flops is None:
        return {}
    achieved = flops * steps_per_s / 1e12
    out = {"step_tflop": round(flops / 1e12, 3), "achieved_tflops": round(achieved, 2)}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            out |= {"peak_bf16_tflops": peak, "mfu": round(achieved / peak, 3)}
    return out


def flow_main(args) -> None:
    """Each variant in its own process (a clean resident set), then the table."""
    import subprocess
    import sys

    from lorastudio.engine.models.device import resolve_device

    row = FLOW_MODELS[args.model][0]
    full = full_blocks(args.model)
    blocks = {k: min(args.blocks, n) for k, n in full.items()} if args.blocks else {}
    from lorastudio.engine.models.families import FAMILIES

    padded = args.model in ("flux1-sized", "flux2-klein-sized")  # their pipelines pad the prompt to 512
    text_tokens = args.text_tokens or (FAMILIES[row].text_tokens if padded else 64)
    spec = {
        "model": args.model,
        "dtype": args.dtype,
        "blocks": blocks,
        "resolution": args.resolution,
        "text_tokens": text_tokens,
        "steps": args.steps,
        "batch": args.batch,
        "dim": args.dim,
        "target": args.target,
        "seed": args.seed,
        "device": str(resolve_device(args.device)),
        "mfu": args.mfu,
    }
    cut = ", ".join(f"{k} {blocks.get(k, n)} of {n}" for k, n in full.items())
    head = (
        f"cpu ({os.cpu_count()} cores), {args.model} ({'CUT: ' if blocks else 'whole: '}{cut}), "
        f"{args.resolution}px, {text_tokens} text tokens, batch {args.batch}, rank {args.dim} {args.target} LoRA, "
        f"{args.steps} steps"
    )
    if not args.json:
        print(head, flush=True)
    rows = []
    for variant in args.variants.split(","):
        if variant not in FLOW_VARIANTS:
            raise SystemExit(f"--variants: {variant!r} is not one of {', '.join(FLOW_VARIANTS)}")
        cmd = [sys.executable, __file__, "--flow-child", json.dumps(spec | {"variant": variant})]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if done.returncode != 0:
            print(f"{variant} failed (exit {done.returncode}):\n{done.stderr[-2000:]}", flush=True)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if not args.json:
            r = rows[-1]
            print(
                f"{variant:10s} {r['dtype']}: {r['steps_per_s']:.4f} steps/s ({1 / r['steps_per_s']:.1f} s/step, "
                f"first {r['first_step_s']} s), after build {r['loaded_mb']} MB, step peak +{r['step_peak_growth_mb']}"
                f" MB, peak RSS {r['peak_rss_mb']} MB; base {r['base_params_b']}B, LoRA {r['lora_params_m']}M, "
                f"build {r['build_s']} s",
                flush=True,
            )
    if args.json:
        print(json.dumps({"setup": head, "spec": spec, "full_blocks": full, "rows": rows}))


def main() -> None:
    """Run both loops and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd15", choices=("tiny-sd15", "sd15-sized", "sdxl-sized", *FLOW_MODELS))
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "lorastudio-bench")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=768)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--devices", type=int, default=1, help="N > 1: our trainer on N processes against 1")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mfu", action="store_true", help="count one step's FLOPs: achieved TFLOP/s and MFU")
    flow = parser.add_argument_group("transformer families")
    flow.add_argument("--blocks", type=int, default=0, help="keep N blocks of each block list (0: all)")
    flow.add_argument("--text-tokens", type=int, default=0, help="default: 512 on FLUX (padded), 64 otherwise")
    flow.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"), help="the base's weights")
    flow.add_argument("--variants", default=",".join(FLOW_VARIANTS))
    flow.add_argument("--target", default="attn", choices=("attn", "attn-ff", "all"))
    flow.add_argument("--timeout", type=int, default=900, help="seconds per variant")
    flow.add_argument("--flow-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet_libraries()
    if args.flow_child:
        import warnings

        warnings.filterwarnings("ignore")
        print(json.dumps(flow_step_child(json.loads(args.flow_child))))
        return
    if args.model in FLOW_MODELS:
        flow_main(args)
        return
    if args.devices > 1:
        devices_main(args)
        return
    from PIL import Image

    from lorastudio.engine.data.synthetic import write_reference_set
    from lorastudio.engine.models.device import resolve_device

    device = resolve_device(args.device)
    profile = device.type != "cuda"  # phase marks wait for the GPU: time those in a separate run there
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(home=tmp / "home", device=args.device)
        model_dir = sd_model(args, settings)
        paths = write_reference_set(tmp / "imgs", args.images, size=args.image_size, caption="johnhero, a person")
        images = [Image.open(p).convert("RGB") for p in paths]
        short = argparse.Namespace(**{**vars(args), "steps": min(args.steps, 5)})
        ours(tmp / "imgs", tmp / "warm", model_dir, argparse.Namespace(**{**vars(args), "steps": 2}), settings, False)
        with PeakMemory(device) as base_mem:
            base = baseline_loop(model_dir, images, "johnhero, a person", args, device, profile)
        with PeakMemory(device) as our_mem:
            mine = ours(tmp / "imgs", tmp / "ours", model_dir, args, settings, profile)
        if not profile:
            base["phases"] = baseline_loop(model_dir, images, "johnhero, a person", short, device, True)["phases"]
            mine["phases"] = ours(tmp / "imgs", tmp / "prof", model_dir, short, settings, True)["phases"]
        flops = unet_step_flops(model_dir, args, device) if args.mfu else None
    ours_sps, base_sps = steady_steps_per_s(mine["stamps"]), steady_steps_per_s(base["stamps"])
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "model": args.model,
        "precision": args.precision,
        "steps": args.steps,
        "resolution": args.resolution,
        "batch": args.batch,
        "ours_steps_per_s": round(ours_sps, 3),
        "baseline_steps_per_s": round(base_sps, 3),
        "ratio": round(ours_sps / base_sps, 3),
        "ours_images_per_s": round(ours_sps * args.batch, 3),
        "ours_peak_mb": round(our_mem.peak_mb, 1),
        "baseline_peak_mb": round(base_mem.peak_mb, 1),
        "ours_phases": _share(mine["phases"]),
        "baseline_phases": _share(base["phases"]),
    } | utilisation(flops, ours_sps, device)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['device']}, {args.model}, {args.precision}, {args.steps} steps, {args.resolution}px, "
        f"batch {args.batch}"
    )
    print(f"ours     {result['ours_steps_per_s']:8.3f} steps/s   peak {result['ours_peak_mb']:8.1f} MB")
    print(f"baseline {result['baseline_steps_per_s']:8.3f} steps/s   peak {result['baseline_peak_mb']:8.1f} MB")
    print(f"ratio    {result['ratio']:.2f}x (target >= 2x at 768 px on SD1.5, peak memory not above the baseline's)")
    for who in ("ours", "baseline"):
        print(f"{who:8s} phases: " + ", ".join(f"{k} {v}" for k, v in result[f"{who}_phases"].items()))


def sd_model(args, settings: Settings) -> Path:
    """The SD model folder --model names: the tiny test model, or a sized one written once to --models-dir."""
    from lorastudio.engine.models.sized import ensure_sized_model
    from lorastudio.engine.models.tiny import ensure_tiny_model

    if args.model == "tiny-sd15":
        return ensure_tiny_model("tiny-sd15", settings.models_dir)
    return ensure_sized_model(args.model, args.models_dir)


def devices_main(args) -> None:
    """Our trainer on N data-parallel processes (torchrun) against one process, on the same device kind and
    cores, each process at --batch: images/s of each, and rank 0's share of a step spent in the all-reduce
    (its communication, plus any wait for a slower rank)."""
    from lorastudio.engine.data.synthetic import write_reference_set

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(home=tmp / "home", device=args.device)
        model_dir = sd_model(args, settings)
        write_reference_set(tmp / "imgs", args.images, size=args.image_size, caption="johnhero, a person")
        warm = argparse.Namespace(**{**vars(args), "steps": 2})
        ours(tmp / "imgs", tmp / "warm", model_dir, warm, settings, False)
        runs = {}
        for n in (1, args.devices):
            t0 = time.perf_counter()
            got = ours(tmp / "imgs", tmp / f"n{n}", model_dir, args, settings, True, devices=n)
            images_per_s = steady_steps_per_s(got["stamps"]) * args.batch * n
            phases = got["phases"] or {}
            runs[n] = {
                "images_per_s": round(images_per_s, 3),
                "wall_s": round(time.perf_counter() - t0, 1),
                "all_reduce_share": round(phases.get("all-reduce", 0.0) / (sum(phases.values()) or 1.0), 3),
                "phases": _share(phases),
            }
    result = {
        "device": f"cpu ({os.cpu_count()} cores)" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "model": args.model,
        "precision": args.precision,
        "steps": args.steps,
        "resolution": args.resolution,
        "batch_per_process": args.batch,
        "devices": args.devices,
        "one": runs[1],
        "many": runs[args.devices],
        "scaling": round(runs[args.devices]["images_per_s"] / max(runs[1]["images_per_s"], 1e-9), 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['device']}, {args.model}, {args.precision}, {args.steps} steps, batch {args.batch} a process")
    for n, r in ((1, runs[1]), (args.devices, runs[args.devices])):
        print(f"{n} process(es): {r['images_per_s']:8.3f} images/s, all-reduce {r['all_reduce_share']:.1%} of a step")
        print("   phases: " + ", ".join(f"{k} {v}" for k, v in r["phases"].items()))
    print(f"scaling {result['scaling']:.2f}x images/s on {args.devices} processes against 1 (linear: {args.devices}x)")


def _share(phases: dict[str, float] | None) -> dict[str, str]:
    """Phase seconds of the whole profiled run as 'seconds (share)', in the fixed phase order."""
    if not phases:
        return {}
    total = sum(phases.values()) or 1.0
    return {k: f"{phases[k]:.3f}s ({phases[k] / total:.0%})" for k in PHASES if k in phases}


if __name__ == "__main__":
    main()
