"""Memory levers of a FLUX-shaped LoRA step: the base unquantized (bf16, or fp32 on a CPU without bf16
instructions), quanto qint8, torchao int8 and ours (quantize_frozen), each with gradient checkpointing
off and on.

The model is FLUX.1's FluxTransformer2DModel at its real width (3072, 24 heads of 128, T5 width 4096,
pooled 768, guidance embedding) with fewer blocks (--double/--single, default 2 and 4 of FLUX.1's 19 and
38) and random weights. Each row runs in its own process: build, quantize the block Linears
(engine/models/quantize.py's selection), inject a rank-16 LoRA on the attention layers (FLUX_TARGETS
"attn"), then two training steps (forward, MSE, backward, AdamW). Printed per row: the weights' bytes
(quantized tensors counted by their int8 data and scales), the resident set (CPU) or allocated memory
(GPU) after loading, the peak growth over the two steps, seconds of the second step, and the output's
error against the unquantized base on the same inputs (relative L2).

    python benchmarks/flow_memory.py [--device auto] [--double 2] [--single 4] [--tokens 64]
                                     [--text-tokens 16] [--variants full,quanto-int8,torchao-int8,ours-int8]
                                     [--checkpointing off,on] [--json]

On a GPU: `--double 19 --single 38 --tokens 1024 --text-tokens 512` is the whole FLUX.1 [dev] at 512 px.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lorastudio.quiet import quiet_libraries

VARIANTS = ("full", "quanto-int8", "torchao-int8", "ours-int8")


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds, a quantized subclass counted by the plain tensors inside it."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def build(args, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The FLUX-shaped denoiser, created directly in `dtype` on `device` (no fp32 copy on the way)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,
                num_layers=args.double,
                num_single_layers=args.single,
                attention_head_dim=128,
                num_attention_heads=24,
                joint_attention_dim=4096,
                pooled_projection_dim=768,
                guidance_embeds=True,
                axes_dims_rope=(16, 56, 56),
            )
    finally:
        torch.set_default_dtype(before)
    return model.requires_grad_(False)


def quantize_with(model: torch.nn.Module, variant: str) -> None:
    """8-bit block Linears through one library, on quantize.py's selection of layers; ours-int8 is
    quantize_frozen itself (torchao's int8 without the full-precision copy in the autograd graph)."""
    from lorastudio.engine.models.quantize import frozen_linears

    names = frozen_linears(model)
    if variant == "quanto-int8":
        from optimum.quanto import freeze, qint8, quantize

        quantize(model, weights=qint8, include=names)
        freeze(model)
    elif variant == "ours-int8":
        from lorastudio.engine.models.quantize import quantize_frozen

        quantize_frozen(model, "int8")
    elif variant == "torchao-int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        chosen = set(names)
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda _m, fqn: fqn in chosen)


def inputs(args, device: torch.device, dtype: torch.dtype) -> dict:
    """One batch of packed latents, T5-width text states and ids, as FluxPipeline passes them."""
    gen = torch.Generator().manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype)

    return dict(
        hidden_states=randn(1, args.tokens, 64),
        encoder_hidden_states=randn(1, args.text_tokens, 4096),
        pooled_projections=randn(1, 768),
        timestep=torch.tensor([0.5], device=device),
        guidance=torch.tensor([3.5], device=device),
        img_ids=torch.zeros(args.tokens, 3, device=device),
        txt_ids=torch.zeros(args.text_tokens, 3, device=device),
        return_dict=False,
    )


def one(args) -> dict:
    """Build, quantize, train two steps; the row's figures."""
    from peft import LoraConfig, inject_adapter_in_model
    from train_speed import PeakMemory

    from lorastudio.engine.models.device import resolve_device
    from lorastudio.engine.models.families import FLUX_TARGETS

    device = resolve_device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[base_dtype(args.dtype, device)]
    model = build(args, device, dtype)
    quantize_with(model, args.one)
    weights_mb = sum(tensor_bytes(t) for t in [*model.parameters(), *model.buffers()]) / 2**20
    if device.type == "cuda":
        loaded_mb = torch.cuda.memory_allocated(device) / 2**20
    else:
        loaded_mb = PeakMemory._status_mb("VmRSS")
    inject_adapter_in_model(LoraConfig(r=16, lora_alpha=16, target_modules="|".join(FLUX_TARGETS["attn"])), model)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in lora:
        p.data = p.data.float()  # the LoRA trains in fp32 over the 8/16-bit base
    if args.ckpt == "on":
        model.enable_gradient_checkpointing()
    model.train()
    opt = torch.optim.AdamW(lora, lr=1e-4)
    batch = inputs(args, device, dtype)
    target = torch.randn(1, args.tokens, 64, generator=torch.Generator().manual_seed(2)).to(device)
    seconds, first = [], None
    with PeakMemory(device) as peak:
        for _ in range(2):
            start = time.perf_counter()
            out = model(**batch)[0]
            if first is None:  # the LoRA's up weights start at zero: this is the base's own output
                first = out.detach().float().cpu()
            loss = F.mse_loss(out.float(), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    stray = [n for n, p in model.named_parameters() if p.grad is not None or (p.requires_grad and "lora_" not in n)]
    row = dict(
        variant=args.one,
        dtype=str(dtype).removeprefix("torch."),
        checkpointing=args.ckpt,
        device=str(device),
        weights_mb=round(weights_mb),
        loaded_mb=round(loaded_mb),
        peak_growth_mb=round(peak.peak_mb),
        step_s=round(seconds[-1], 2),
        base_grads=len(stray),
    )
    ref = Path(args.ref)
    if args.one == "full" and not ref.exists():
        from safetensors.torch import save_file

        save_file({"out": first}, str(ref))
    elif ref.exists():
        from safetensors.torch import load_file

        want = load_file(str(ref))["out"]
        row["rel_error"] = float((first - want).norm() / want.norm())
    return row


def base_dtype(asked: str, device: torch.device) -> str:
    """bf16 where the device computes it natively (CUDA, a CPU with AVX512-BF16/AMX), else fp32: on
    an AVX2-only CPU a bf16 matmul runs at a fifth of fp32's speed."""
    from lorastudio.engine.models.device import cpu_has_bf16

    if asked != "auto":
        return asked
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return "bf16"
    return "fp32"


def main() -> None:
    """Run each row in a fresh process and print the table."""
    quiet_libraries()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64, help="image tokens (64 = 128 px)")
    parser.add_argument("--text-tokens", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--checkpointing", default="off,on")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"), help="the unquantized base's")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import warnings

        warnings.filterwarnings("ignore")
        print(json.dumps(one(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "bf16_out.safetensors")
        for variant in args.variants.split(","):
            for ckpt in args.checkpointing.split(","):
                cmd = [sys.executable, __file__, "--one", variant, "--ckpt", ckpt, "--ref", ref]
                cmd += ["--device", args.device, "--double", str(args.double), "--single", str(args.single)]
                cmd += ["--tokens", str(args.tokens), "--text-tokens", str(args.text_tokens), "--dtype", args.dtype]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{variant} checkpointing {ckpt} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                if not args.json:
                    print(_line(rows[-1]), flush=True) if len(rows) > 1 else print(_header() + "\n" + _line(rows[-1]))
    if args.json:
        print(json.dumps(rows, indent=1))


def _header() -> str:
    cols = (
        "variant",
        "dtype",
        "ckpt",
        "weights MB",
        "after load MB",
        "step peak +MB",
        "step s",
        "rel. error",
        "base grads",
    )
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def _line(r: dict) -> str:
    err = f"{r['rel_error']:.4f}" if "rel_error" in r else "-"
    cells = (
        r["variant"],
        r["dtype"],
        r["checkpointing"],
        r["weights_mb"],
        r["loaded_mb"],
        r["peak_growth_mb"],
        r["step_s"],
    )
    return "| " + " | ".join(str(c) for c in cells) + f" | {err} | {r['base_grads']} |"


if __name__ == "__main__":
    main()
