"""The toyworld base's own training (`lorastudio toyworld train-base`): UNet steps/s, and with --profile
how much of a step the device is busy and with what.

Steps/s comes from two runs of `train_toyworld_base` with a and b UNet steps, (b - a) / (t_b - t_a), so the
renders, the VAE stage and the save drop out. --profile repeats both runs under torch.profiler and takes
the same difference of the device's kernel time and kernel count: device time per step against wall time
per step says whether a step waits on the GPU or on the host (Python and kernel launches).

    python benchmarks/toyworld_base_speed.py [--device auto] [--batch 256] [--steps 60] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lorastudio.quiet import quiet_libraries


def timed_run(steps: int, args: argparse.Namespace, folder: Path, device: torch.device) -> float:
    """Seconds of one train_toyworld_base run with `steps` UNet steps."""
    from lorastudio.engine.toyworld.basetrain import train_toyworld_base

    t0 = time.perf_counter()
    train_toyworld_base(
        folder / f"m{steps}-{time.monotonic_ns()}",
        vae_steps=args.vae_steps,
        unet_steps=steps,
        renders=args.renders,
        batch=args.batch,
        device=str(device),
        log=lambda _: None,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def device_work(steps: int, args: argparse.Namespace, folder: Path, device: torch.device) -> tuple[float, int, object]:
    """Device microseconds and kernel count of one profiled run (on a CPU: 0 and the outermost aten
    operators, backward's included), and the profiler's averages."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        timed_run(steps, args, folder, device)
    averages = prof.key_averages()
    if device.type != "cuda":
        outermost = [
            e
            for e in prof.events()
            if e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))
        ]
        return 0.0, len(outermost), averages
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.device_time_total for e in kernels), len(kernels), averages


def main() -> None:
    """Measure the UNet stage's steps/s (and with --profile the device's share of a step) and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=256, help="the CLI's default batch")
    parser.add_argument("--steps", type=int, default=60, help="UNet steps between the two runs")
    parser.add_argument("--renders", type=int, default=2048)
    parser.add_argument("--vae-steps", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    from lorastudio.engine.models.device import resolve_device

    device = resolve_device(args.device)
    a, b = 5, 5 + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timed_run(a, args, folder, device)  # warm-up: kernels chosen, allocator filled
        t_a, t_b = timed_run(a, args, folder, device), timed_run(b, args, folder, device)
        wall_ms = (t_b - t_a) / args.steps * 1000
        cpu = f"cpu, {torch.get_num_threads()} threads"
        result: dict = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
            "batch": args.batch,
            "unet_steps_per_s": round(1000 / wall_ms, 2),
            "wall_ms_per_step": round(wall_ms, 2),
        }
        table = ""
        if args.profile and device.type == "cuda":
            busy_a, count_a, _ = device_work(a, args, folder, device)
            busy_b, count_b, averages = device_work(b, args, folder, device)
            gpu_ms = (busy_b - busy_a) / args.steps / 1000
            result |= {
                "device_ms_per_step": round(gpu_ms, 2),
                "device_busy_share": round(gpu_ms / wall_ms, 3),
                "kernels_per_step": round((count_b - count_a) / args.steps),
            }
            table = averages.table(sort_by="self_cuda_time_total", row_limit=20)
        elif args.profile:
            # Outermost operators per step (forward and backward): on a GPU each launches at least one kernel,
            # so this count times the host's cost per call bounds the steps/s a GPU can reach in eager mode.
            _, ops_a, _ = device_work(a, args, folder, device)
            _, ops_b, averages = device_work(b, args, folder, device)
            result["host_ops_per_step"] = round((ops_b - ops_a) / args.steps)
            table = averages.table(sort_by="self_cpu_time_total", row_limit=20)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:22s} {value}")
    if table:
        print(table)


if __name__ == "__main__":
    main()
