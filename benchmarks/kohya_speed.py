"""Training speed against kohya sd-scripts' train_network.py: same SD1.5-sized model, pictures, captions,
LoRA modules, rank, optimizer, precision, min-SNR, latent caching and thread count; each trainer in its own
process, timed the same way.

kohya's LoRA (networks.lora) covers the Linear and 1x1-conv layers of the UNet's transformer blocks and the
text encoder's attention and MLP, and trains the text encoder unless told not to; ours gets the same with
`target="attn-ff"` and `train_text_encoder=True`. Both read the same folder (`1_johnhero`, .txt captions).
kohya runs as its users run it: `--cache_latents --sdpa` (our loop caches latents by default; `--no-cache`
turns caching off on both sides). Min-SNR is the same on both: `--min-snr 5` (the default) passes
`--min_snr_gamma 5` to kohya and 5.0 to ours; `--min-snr off` leaves it off on both (our preset's 5.0 is
overridden, not left to fill a None). Both get `--threads` threads (OMP_NUM_THREADS and torch's own count).
Steady steps/s leaves out the model load, the latent cache and the first step: it counts from the time each
trainer's progress first reports step 2 (kohya's tqdm line, our progress events) to its last step; the
median over --repeats runs of each, which alternate who goes first, with every run's figure kept.
Peak memory is each process's largest resident set (from wait4), model load included.

sd-scripts needs its own environment (its pinned diffusers and transformers differ from ours). On a CPU the
same torch as ours keeps the comparison to the two trainers' code (a second torch build is a second
variable): the venv below links our torch in instead of installing its own.

    python -m venv /tmp/kohya-venv && /tmp/kohya-venv/bin/pip install accelerate==1.6.0 transformers==4.54.1 \\
        diffusers==0.32.1 ftfy einops safetensors toml voluptuous huggingface-hub==0.34.3 imagesize \\
        opencv-python-headless rich sentencepiece "numpy<2.1"
    # then, for our torch: pip uninstall torch (and the nvidia-* wheels it pulled), symlink .venv's torch,
    # torchgen and torch-*.dist-info into the kohya venv's site-packages, and install the matching
    # torchvision with --no-deps (kohya imports only its transforms)
    python benchmarks/kohya_speed.py --sd-scripts /path/to/sd-scripts --kohya-python /tmp/kohya-venv/bin/python \\
        [--resolution 256] [--steps 8] [--precision no|bf16] [--repeats 3] [--threads 1] [--min-snr 5|off] \\
        [--no-cache] [--kohya-args "..."] [--json]

--sd-scripts is a checkout, or a bare git directory (a mirror): then its Python and config files at HEAD are
written to a temporary folder (large binaries such as the Windows DLLs are not needed).
kohya loads its CLIP tokenizer by hub id; the script gives it ours through --tokenizer_cache_dir (nothing is
downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KOHYA_STEP = re.compile(rb"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
OUR_STEP = re.compile(rb"^step (\d+)/(\d+)$")


def watch(cmd: list[str], pattern: re.Pattern, cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run cmd; the time each new step number first appears on its stderr, its peak RSS, its exit code."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stamps: dict[int, float] = {}
    tail, buf = [], b""
    for chunk in iter(lambda: proc.stderr.read1(4096), b""):
        buf += chunk
        *lines, buf = re.split(rb"[\r\n]", buf)
        for line in lines:
            found = pattern.search(line.strip())
            if found and int(found.group(1)) not in stamps:
                stamps[int(found.group(1))] = time.perf_counter()
            elif line.strip():
                tail = (tail + [line.decode(errors="replace")])[-15:]
    # wait4 gives this child's own peak resident set (no sampling thread to compete with it)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"stamps": stamps, "peak_mb": usage.ru_maxrss / 1024, "rc": proc.returncode, "tail": tail}


def steady(stamps: dict[int, float]) -> float:
    """Steps/s from the first report of a step >= 2 to the last report."""
    steps = sorted(s for s in stamps if s >= 2)
    if len(steps) < 2:
        return 0.0
    return (steps[-1] - steps[0]) / (stamps[steps[-1]] - stamps[steps[0]])


def sd_scripts_tree(source: Path, into: Path) -> Path:
    """A checkout as it is; a bare git directory (a mirror) as its text files at HEAD written under into."""
    if (source / "train_network.py").is_file():
        return source
    if not (source / "HEAD").is_file() or not (source / "objects").is_dir():
        raise SystemExit(f"--sd-scripts: {source} is neither a checkout with train_network.py nor a git directory")
    git = ["git", "--git-dir", str(source)]
    names = subprocess.run([*git, "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, check=True, text=True)
    # only the code and its configs: a mirror may lack the large binaries (Windows DLLs), which no CPU run needs
    wanted = [n for n in names.stdout.splitlines() if n.endswith((".py", ".toml", ".json", ".txt", ".cfg"))]
    for name in wanted:
        blob = subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True)
        if blob.returncode == 0:
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(blob.stdout)
    if not (into / "train_network.py").is_file():
        raise SystemExit(f"--sd-scripts: no train_network.py at HEAD of {source}")
    return into


def kohya_tokenizer(model_dir: Path, cache: Path) -> None:
    """Our model's CLIP tokenizer as the vocab.json + merges.txt pair kohya's slow CLIPTokenizer reads."""
    spec = json.loads((model_dir / "tokenizer" / "tokenizer.json").read_text())["model"]
    folder = cache / "openai_clip-vit-large-patch14"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(spec["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def ours_child(spec: str) -> None:
    """Run our trainer with the settings in spec (JSON) and print each progress step to stderr."""
    import torch

    from lorastudio.config import Settings
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.train import train_lora
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    a = json.loads(spec)
    torch.set_num_threads(a["threads"])  # the same count kohya's torch takes from OMP_NUM_THREADS
    out = Path(a["out"])
    cfg = TrainConfig.from_preset(
        kind="character",
        images=Path(a["images"]),
        trigger="johnhero",
        base=a["model"],
        output=out / "o.safetensors",
        run_dir=out / "run",
        steps=a["steps"],
        resolution=a["resolution"],
        network_dim=a["dim"],
        network_alpha=a["dim"],
        learning_rate=1e-4,
        batch_size=a["batch"],
        checkpoint_every=0,
        warmup_steps=0,
        min_images=4,
        seed=0,
        device=a["device"],
        precision=a["precision"],
        target="attn-ff",
        train_text_encoder=True,
        weight_decay=1e-2,
        lr_scheduler="constant",
        cache_latents=a["cache"],
    )
    # from_preset drops None overrides (the preset's 5.0 would come back): set off-or-value after it
    cfg.min_snr_gamma = a["min_snr"]

    def on_progress(event) -> None:
        if event.phase == "train":
            print(f"step {event.step}/{event.total}", file=sys.stderr, flush=True)

    train_lora(cfg, settings=Settings(home=out / "home", device=a["device"]), on_progress=on_progress)


def spread(values: list[float]) -> dict:
    """Median, lowest and highest of a list of figures, rounded."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def main() -> None:
    """Run kohya's trainer and ours alternately on the same inputs and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sd-scripts", type=Path, required=True, help="a checkout of kohya-ss/sd-scripts, or its bare git directory"
    )
    parser.add_argument("--kohya-python", default=sys.executable, help="the Python of sd-scripts' environment")
    parser.add_argument("--kohya-args", default="", help="extra train_network.py arguments")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "lorastudio-bench")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=("no", "bf16"))
    parser.add_argument("--min-snr", default="5", help="min-SNR gamma for both trainers, or 'off' for neither")
    parser.add_argument("--no-cache", action="store_true", help="no latent cache on either side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each trainer (the same for both)")
    parser.add_argument("--device", default="auto", help="ours; kohya's accelerate picks the GPU when there is one")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating which goes first")
    parser.add_argument("--child-ours", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.child_ours:
        ours_child(args.child_ours)
        return
    try:
        min_snr = None if args.min_snr == "off" else float(args.min_snr)
    except ValueError:
        parser.error(f"--min-snr: a number or 'off', not {args.min_snr!r}")
    from lorastudio.engine.data.synthetic import write_reference_set
    from lorastudio.engine.models.sized import ensure_sized_model

    model_dir = ensure_sized_model("sd15-sized", args.models_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sd_scripts = sd_scripts_tree(args.sd_scripts, tmp / "sd-scripts")
        images = tmp / "data" / "1_johnhero"
        write_reference_set(images, args.images, size=max(args.resolution, 256), caption="johnhero, a person")
        kohya_tokenizer(model_dir, tmp / "tok")
        # like for like: kohya as its users run it, with our loop's latent cache and SDPA attention
        like_ours = [] if args.no_cache else ["--cache_latents"]
        like_ours += ["--sdpa"] + ([] if min_snr is None else ["--min_snr_gamma", str(min_snr)])
        kohya_cmd = [
            args.kohya_python,
            str(sd_scripts / "train_network.py"),
            "--pretrained_model_name_or_path",
            str(model_dir),
            "--train_data_dir",
            str(tmp / "data"),
            "--output_dir",
            str(tmp / "kohya"),
            "--output_name",
            "k",
            "--network_module",
            "networks.lora",
            "--network_dim",
            str(args.dim),
            "--network_alpha",
            str(args.dim),
            "--resolution",
            str(args.resolution),
            "--train_batch_size",
            str(args.batch),
            "--max_train_steps",
            str(args.steps),
            "--learning_rate",
            "1e-4",
            "--optimizer_type",
            "AdamW",
            "--lr_scheduler",
            "constant",
            "--mixed_precision",
            args.precision,
            "--caption_extension",
            ".txt",
            "--tokenizer_cache_dir",
            str(tmp / "tok"),
            "--seed",
            "0",
            "--max_data_loader_n_workers",
            "0",
            "--save_model_as",
            "safetensors",
            *like_ours,
            *shlex.split(args.kohya_args),
        ]
        spec = {
            "images": str(images),
            "model": str(model_dir),
            "out": str(tmp / "ours"),
            "steps": args.steps,
            "resolution": args.resolution,
            "dim": args.dim,
            "batch": args.batch,
            "device": args.device,
            "precision": args.precision,
            "min_snr": min_snr,
            "cache": not args.no_cache,
            "threads": args.threads,
        }
        child = [sys.executable, __file__, "--sd-scripts", str(sd_scripts), "--child-ours", json.dumps(spec)]
        runs: dict[str, list[dict]] = {"kohya": [], "ours": []}
        for i in range(args.repeats):  # alternate who goes first: on a shared machine order matters
            for name in ("kohya", "ours") if i % 2 == 0 else ("ours", "kohya"):
                if name == "kohya":
                    run = watch(kohya_cmd, KOHYA_STEP, sd_scripts, env)
                else:
                    run = watch(child, OUR_STEP, env=env)
                if run["rc"] != 0:
                    sys.exit(f"{name}'s trainer failed (exit {run['rc']}):\n" + "\n".join(run["tail"]))
                run["steps_per_s"] = steady(run["stamps"])
                line = f"run {i + 1} {name}: {run['steps_per_s']:.4f} steps/s, peak {run['peak_mb']:.0f} MB"
                print(line, file=sys.stderr, flush=True)
                runs[name].append(run)
    k = [r["steps_per_s"] for r in runs["kohya"]]
    o = [r["steps_per_s"] for r in runs["ours"]]
    # each repeat's pair ran back to back, so its ratio is less exposed to the shared machine's drift
    pairs = [ours / kohya for ours, kohya in zip(o, k, strict=True) if kohya]
    result = {
        "model": "sd15-sized",
        "cpu_cores": os.cpu_count(),
        "threads": args.threads,
        "precision": args.precision,
        "resolution": args.resolution,
        "batch": args.batch,
        "steps": args.steps,
        "dim": args.dim,
        "min_snr_gamma": min_snr,
        "cache_latents": not args.no_cache,
        "kohya_args": shlex.join(like_ours + shlex.split(args.kohya_args)),
        "repeats": args.repeats,
        "ours_steps_per_s": spread(o),
        "kohya_steps_per_s": spread(k),
        "ours_s_per_step": round(1 / statistics.median(o), 3),
        "kohya_s_per_step": round(1 / statistics.median(k), 3),
        # kohya's seconds a step over ours: > 1 means ours is faster
        "ratio_of_medians": round(statistics.median(o) / statistics.median(k), 3),
        "ratio_per_pair": spread(pairs) if pairs else None,
        "ours_runs_steps_per_s": [round(v, 4) for v in o],
        "kohya_runs_steps_per_s": [round(v, 4) for v in k],
        "ours_peak_rss_mb": round(max(r["peak_mb"] for r in runs["ours"])),
        "kohya_peak_rss_mb": round(max(r["peak_mb"] for r in runs["kohya"])),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:24s} {value}")


if __name__ == "__main__":
    main()
