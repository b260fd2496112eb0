"""kohya's own SD1.5 UNet (sd-scripts' library/original_unet.py) against diffusers' UNet2DConditionModel, as a
LoRA training step runs them: the same SD1.5 config and weights, base in bf16 under bf16 autocast, rank-8
LoRA in fp32 on the same modules (kohya's networks.lora set: every Linear and 1x1 conv of the transformer
blocks, our `attn-ff`), forward + MSE + backward + AdamW on the same input.

Four variants separate the network from the LoRA wrapping: each UNet with each trainer's LoRA (ours: peft's
`add_adapter`/`inject_adapter_in_model`, as engine/training/train.py does; kohya's: networks.lora.LoRAModule,
which swaps the layer's forward). A fifth is a lever for our loop: peft's LoRA without its input cast.
kohya's code is read from --sd-scripts (a checkout or the bare mirror, as kohya_speed.py reads it) into a
temporary folder and imported from there; nothing of it is copied into src.
The variants run interleaved, in a rotating order, --repeats times each after a warm-up step; the figures are
medians with the lowest and highest. Then one profiled step of each gives self CPU time by operator kind
(attention, conv, GroupNorm, matmul, copies...), and one forward of each, per top-level block.

    python benchmarks/unet_compare.py --sd-scripts /work/.mirror/kohya-ss+sd-scripts/repo \\
        --kohya-python /tmp/kohya-venv/bin/python [--latent 32] [--repeats 5] [--threads 1] [--json]

Our venv lacks einops (which kohya's attention uses): it is taken from --kohya-python's environment, and only
it. kohya's library.utils (logging setup, plus cv2 and torchvision imports the UNet does not use) is replaced
by a stub with its setup_logging.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kohya_speed import sd_scripts_tree  # noqa: E402  (the benchmarks folder is not a package)

# operator kinds for the profile, first match wins (self time, so a composite op's children count once)
KINDS = [
    ("attention (SDPA)", r"scaled_dot_product|flash_attention|efficient_attention|_attention"),
    ("conv", r"conv"),
    ("GroupNorm", r"group_norm"),
    ("LayerNorm", r"layer_norm"),
    ("matmul (Linear)", r"addmm|aten::mm$|bmm|matmul|linear"),
    ("upsample", r"upsample|interpolate"),
    ("activation (SiLU, GELU)", r"silu|gelu"),
    ("optimizer", r"adam|lerp|addcdiv|addcmul|_foreach|sqrt|maximum"),
    ("copies and casts", r"copy|_to_copy|contiguous|clone|cat$|stack|fill_|zero_|zeros|empty"),
    ("elementwise", r"aten::(add|mul|div|sub|neg|exp|sum|mean|pow|sin|cos|mse|where|rsub)"),
    ("layout (views)", r"permute|transpose|reshape|view|chunk|split|expand|as_strided|unsqueeze|t$|select|slice"),
]


def kohya_modules(sd_scripts: Path, kohya_python: str, tmp: Path):
    """kohya's UNet class and LoRAModule, imported from its tree (einops from its venv, logging stubbed)."""
    where = subprocess.run(
        [kohya_python, "-c", "import einops, os; print(os.path.dirname(einops.__file__))"],
        capture_output=True,
        text=True,
    )
    if where.returncode != 0:
        raise SystemExit(f"--kohya-python: {kohya_python} cannot import einops: {where.stderr.strip()}")
    only = tmp / "einops-only"  # that package alone on our path, not the rest of kohya's pinned venv
    only.mkdir()
    (only / "einops").symlink_to(where.stdout.strip())
    sys.path.append(str(only))
    sys.path.insert(0, str(sd_scripts))
    stub = types.ModuleType("library.utils")
    stub.setup_logging = lambda *a, **k: None
    sys.modules["library.utils"] = stub
    from library import original_unet
    from networks.lora import LoRAModule

    return original_unet.UNet2DConditionModel, LoRAModule


def build(args, tmp: Path) -> dict:
    """The variants, all sharing one bf16 copy of the base weights."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from lorastudio.engine.models.denoisers.common import lora_targets
    from lorastudio.engine.models.families import FAMILIES
    from lorastudio.engine.models.sized import SD15_UNET

    KohyaUNet, LoRAModule = kohya_modules(sd_scripts_tree(args.sd_scripts, tmp / "sd-scripts"), args.kohya_python, tmp)
    torch.manual_seed(0)
    source = UNet2DConditionModel(**SD15_UNET).to(dtype(args))
    weights = source.state_dict()
    targets = lora_targets(source, FAMILIES["sd15"], "attn-ff")
    cfg = source.config

    def diffusers_unet():
        with torch.device("meta"):
            unet = UNet2DConditionModel(**SD15_UNET)
        unet.load_state_dict(weights, assign=True)  # shares the tensors: one copy of the weights for all
        return unet

    def kohya_unet():
        with torch.device("meta"):
            unet = KohyaUNet(
                cfg.sample_size, cfg.attention_head_dim, cfg.cross_attention_dim, cfg.use_linear_projection,
                cfg.upcast_attention,
            )  # fmt: skip
        unet.load_state_dict(weights, assign=True)  # kohya converts diffusers' weights the same way
        unet.set_use_sdpa(True)  # --sdpa
        return unet

    def with_peft(unet):
        unet.requires_grad_(False)
        torch.manual_seed(1)
        config = LoraConfig(r=args.dim, lora_alpha=args.dim, target_modules=targets, init_lora_weights="gaussian")
        if hasattr(unet, "add_adapter"):
            unet.add_adapter(config)
        else:  # kohya's UNet is a plain nn.Module: peft directly, as train.py does for text encoders
            from peft import inject_adapter_in_model

            inject_adapter_in_model(config, unet)
        params = [p for p in unet.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()  # LoRA trains in fp32, as in train.py
        return unet, params

    def with_kohya_lora(unet):
        unet.requires_grad_(False)
        torch.manual_seed(1)
        named = dict(unet.named_modules())
        loras = torch.nn.ModuleList()
        for name in targets:
            lora = LoRAModule("lora_unet_" + name.replace(".", "_"), named[name], 1.0, args.dim, args.dim)
            lora.apply_to()
            loras.append(lora)
        unet._kohya_loras = loras  # kept alive beside the UNet (kohya keeps them in its LoRANetwork)
        return unet, list(loras.parameters())  # fp32: kohya trains the network in fp32 unless --full_bf16

    def without_input_cast(made):
        # a lever: peft casts each LoRA layer's bf16 input to fp32 (the LoRA's dtype), and autocast casts it
        # back for the matmul: two activation-sized copies a layer, and their gradients' in backward
        unet, params = made
        for module in unet.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
        return unet, params

    variants = {
        "diffusers UNet + peft LoRA (ours)": with_peft(diffusers_unet()),
        "kohya UNet + kohya LoRA (kohya)": with_kohya_lora(kohya_unet()),
        "diffusers UNet + kohya LoRA": with_kohya_lora(diffusers_unet()),
        "kohya UNet + peft LoRA": with_peft(kohya_unet()),
        "diffusers UNet + peft LoRA, no input cast (lever)": without_input_cast(with_peft(diffusers_unet())),
    }
    del source
    made = {name: {"unet": u, "params": p, "opt": torch.optim.AdamW(p, lr=1e-4)} for name, (u, p) in variants.items()}
    return {name: v | {"dtype": dtype(args)} for name, v in made.items()}


def dtype(args) -> torch.dtype:
    """The base's dtype: bf16, or fp32 for --precision no."""
    return torch.float32 if args.precision == "no" else torch.bfloat16


def step(v: dict, inputs: tuple) -> None:
    """One training step: forward (under autocast at bf16), MSE in fp32, backward, AdamW."""
    latents, t, hidden, target = inputs
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v["dtype"] == torch.bfloat16):
        pred = v["unet"](latents.to(v["dtype"]), t, hidden.to(v["dtype"])).sample
    loss = F.mse_loss(pred.float(), target)
    loss.backward()
    v["opt"].step()
    v["opt"].zero_grad(set_to_none=True)


def profile_kinds(v: dict, inputs: tuple) -> dict[str, float]:
    """Self CPU seconds of one step by operator kind."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(v, inputs)
    kinds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        name = event.key.lower()
        if not name.startswith("aten::"):
            kind = "other (autograd nodes, python)"
        else:
            kind = next((k for k, pattern in KINDS if re.search(pattern, name)), "other aten")
        kinds[kind] += event.self_cpu_time_total / 1e6
    return dict(kinds)


def forward_blocks(v: dict, inputs: tuple) -> dict[str, float]:
    """Seconds of one forward (autograd on) in each top-level block of the UNet."""
    latents, t, hidden, _ = inputs
    spent: dict[str, float] = defaultdict(float)
    hooks, started = [], {}
    unet = v["unet"]

    def begin(label):
        return lambda module, args: started.__setitem__(label, time.perf_counter())

    def end(label):
        return lambda module, args, out: spent.__setitem__(label, spent[label] + time.perf_counter() - started[label])

    for name, module in unet.named_children():
        if name.startswith("_kohya") or not list(module.parameters()):
            continue
        parts = module if isinstance(module, torch.nn.ModuleList) else [module]
        for i, part in enumerate(parts):
            label = f"{name}.{i}" if isinstance(module, torch.nn.ModuleList) else name
            hooks += [part.register_forward_pre_hook(begin(label)), part.register_forward_hook(end(label))]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v["dtype"] == torch.bfloat16):
        unet(latents.to(v["dtype"]), t, hidden.to(v["dtype"]))
    for h in hooks:
        h.remove()
    return dict(spent)


def spread(values: list[float]) -> dict:
    """Median, lowest and highest, rounded."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def main() -> None:
    """Time the variants interleaved, then profile one step of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd-scripts", type=Path, required=True, help="a checkout of sd-scripts, or its bare git dir")
    parser.add_argument("--kohya-python", required=True, help="a Python with einops (sd-scripts' venv)")
    parser.add_argument("--latent", type=int, default=32, help="latent side: 32 is 256 px")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precision", default="bf16", choices=("bf16", "no"), help="no: fp32 (a CPU without native bf16 emulates it)"
    )
    parser.add_argument("--only", help="comma-separated variant numbers (1-5) to time, e.g. 1,2")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:  # kept to the end: einops imports its parts lazily from it
        result = measure(args, build(args, Path(tmp)))
    print(json.dumps(result, indent=None if args.json else 1))


def measure(args, variants: dict) -> dict:
    """Seconds a step of each variant, interleaved; with the profile, by operator kind and by block."""
    if args.only:
        keep = {int(i) - 1 for i in args.only.split(",")}
        variants = {k: v for i, (k, v) in enumerate(variants.items()) if i in keep}
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, 4, args.latent, args.latent)
    inputs = (
        torch.randn(shape, generator=gen),
        torch.randint(0, 1000, (args.batch,), generator=gen),
        torch.randn((args.batch, 77, 768), generator=gen),
        torch.randn(shape, generator=gen),
    )
    names = list(variants)
    for name in names:  # warm-up: first-call allocations and oneDNN kernel selection
        step(variants[name], inputs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            t0 = time.perf_counter()
            step(variants[name], inputs)
            times[name].append(time.perf_counter() - t0)
        print(
            f"repeat {r + 1}: " + ", ".join(f"{n.split(' (')[0]} {times[n][-1]:.3f}s" for n in names), file=sys.stderr
        )
    ours, kohya = names[0], names[1] if len(names) > 1 else None
    result = {
        "latent": args.latent,
        "batch": args.batch,
        "dim": args.dim,
        "threads": args.threads,
        "precision": args.precision,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "seconds_per_step": {n: spread(times[n]) for n in names},
        "runs": {n: [round(x, 4) for x in times[n]] for n in names},
    }
    if kohya and "kohya" in kohya:
        # each repeat ran both within seconds: the per-repeat ratio is less exposed to the shared machine
        ratios = [o / k for o, k in zip(times[ours], times[kohya], strict=True)]
        result["ours_seconds_over_kohya_per_repeat"] = spread(ratios)
    if not args.no_profile:
        result["profile_self_seconds"] = {n: profile_kinds(variants[n], inputs) for n in names}
        result["forward_block_seconds"] = {n: forward_blocks(variants[n], inputs) for n in names}
    return result


if __name__ == "__main__":
    main()
