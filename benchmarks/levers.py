"""Speed levers of a LoRA training step, each against the plain step in the same process.

The step is the part that stays after caching: UNet forward with LoRA on the attention projections,
MSE loss, backward, AdamW. Each lever changes one thing; the printed ratio is plain / lever time per
step (> 1: the lever is faster). `--model sd15-sized` is the published SD1.5 UNet (random weights,
built in memory, nothing written); `tiny` is the test model's UNet.

    python benchmarks/levers.py [--model sd15-sized|tiny] [--latent 32] [--batch 1] [--steps 4]
                                [--device auto] [--compile] [--only NAMES] [--json]

`--threads` instead times two such processes running at once (a server's worker and another) on CPU:
each with torch's default thread count, then each with half the cores (what `lorastudio serve` gives
its workers); the ratio is how much faster the step is when the cores are split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from lorastudio.quiet import quiet_libraries


def build_unet(model: str) -> torch.nn.Module:
    """The UNet with rank-16 LoRA adapters on its attention projections, base frozen."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from lorastudio.engine.lora.keys import unet_targets
    from lorastudio.engine.models.sized import SD15_UNET
    from lorastudio.engine.models.tiny import build_tiny_sd15

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET) if model == "sd15-sized" else build_tiny_sd15().unet
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=16, lora_alpha=16, target_modules=unet_targets(unet, "attn")))
    return unet


def run(
    unet, device, args, *, dtype=torch.float32, fused=False, foreach=None, channels_last=False, compiled=False
) -> float:
    """Median seconds per step of `args.steps` steps after two warm-up steps."""
    unet.to(device)
    for p in unet.parameters():
        p.data = p.data.to(torch.float32 if p.requires_grad else dtype)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=fused or None, foreach=foreach)
    forward = torch.compile(unet) if compiled else unet
    cross = unet.config.cross_attention_dim
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((args.batch, 4, args.latent, args.latent), generator=gen).to(device)
    if channels_last:
        latents = latents.contiguous(memory_format=torch.channels_last)
    hidden = torch.randn((args.batch, 77, cross), generator=gen).to(device)
    t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
    times = []
    for i in range(args.steps + 2):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = forward(latents.to(dtype), t, hidden.to(dtype)).sample
        loss = F.mse_loss(pred.float(), latents)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    unet.to(memory_format=torch.contiguous_format)
    return statistics.median(times)


def threads_check(args) -> dict:
    """Two plain-step processes at once: default threads each, then the cores split between them."""
    from lorastudio.engine.models.device import available_cores

    cores = available_cores()
    base = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--latent",
        str(args.latent),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--device",
        "cpu",
        "--plain-only",
    ]

    def pair(threads: int | None) -> float:
        extra = ["--num-threads", str(threads)] if threads else []
        procs = [subprocess.Popen(base + extra, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        return statistics.mean(json.loads(p.communicate()[0])["plain_s_per_step"] for p in procs)

    default_s, split_s = pair(None), pair(max(1, cores // 2))
    return {
        "cores": cores,
        "default_threads_s_per_step": round(default_s, 4),
        "split_threads_s_per_step": round(split_s, 4),
        "ratio": round(default_s / split_s, 3),
    }


def main() -> None:
    """Time the plain step, then each lever, and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd15-sized", choices=("sd15-sized", "tiny"))
    parser.add_argument("--latent", type=int, default=32, help="latent side (pixels / 8)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--only", help="comma-separated parts of lever names: time just those (and the plain step)")
    parser.add_argument("--threads", action="store_true", help="time two processes sharing the cores instead")
    parser.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    if args.threads:
        result = threads_check(args)
        print(json.dumps(result) if args.json else "\n".join(f"{k:28s} {v}" for k, v in result.items()))
        return
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    from diffusers.models.attention_processor import AttnProcessor

    from lorastudio.engine.models.device import resolve_device

    device = resolve_device(args.device)
    unet = build_unet(args.model)
    plain = run(unet, device, args)
    if args.plain_only:
        print(json.dumps({"plain_s_per_step": plain}))
        return
    cuda = device.type == "cuda"
    candidates = [  # (name, run's keywords, TF32 on, timed here)
        ("fused AdamW", {"fused": True}, False, True),
        ("foreach AdamW", {"foreach": True}, False, not cuda),  # CUDA's default already
        ("channels-last", {"channels_last": True}, False, True),
        ("bf16 autocast", {"dtype": torch.bfloat16}, False, True),
        ("fp16 autocast", {"dtype": torch.float16}, False, cuda),
        ("TF32", {}, True, cuda),
        # On a GPU the step that would be compiled is the bf16 one: compile once, in that dtype.
        (
            "torch.compile" + (" (bf16 autocast)" if cuda else ""),
            {"compiled": True, "dtype": torch.bfloat16 if cuda else torch.float32},
            False,
            args.compile,
        ),
        ("classic attention (no SDPA)", {"classic": True}, False, True),
        ("bf16 autocast, classic attention", {"classic": True, "dtype": torch.bfloat16}, False, True),
        ("bf16 autocast, channels-last", {"channels_last": True, "dtype": torch.bfloat16}, False, True),
    ]
    wanted = [w for w in (args.only or "").split(",") if w]
    levers = {}
    for name, kw, tf32, enabled in candidates:
        if not enabled or (wanted and not any(w in name for w in wanted)):
            continue
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        if kw.pop("classic", False):
            default_processors = unet.attn_processors
            unet.set_attn_processor(AttnProcessor())  # the pre-SDPA attention: what SDPA saves
            levers[name] = run(unet, device, args, **kw)
            unet.set_attn_processor(default_processors)
        else:
            levers[name] = run(unet, device, args, **kw)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cpu = f"cpu, {torch.get_num_threads()} threads"
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "model": args.model,
        "latent": args.latent,
        "batch": args.batch,
        "plain_s_per_step": round(plain, 4),
        "ratios": {name: round(plain / seconds, 3) for name, seconds in levers.items()},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['device']}, {args.model}, latent {args.latent}x{args.latent}, batch {args.batch}")
    print(f"plain step {plain:.3f} s")
    for name, ratio in result["ratios"].items():
        print(f"{name:28s} {ratio:.3f}x  ({levers[name]:.3f} s)")


if __name__ == "__main__":
    main()
