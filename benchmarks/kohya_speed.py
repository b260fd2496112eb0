"""Training speed against kohya sd-scripts' train_network.py: same SD1.5-sized model, pictures, captions,
LoRA modules, rank, optimizer and precision; each trainer in its own process, timed the same way.

kohya's LoRA (networks.lora) covers the Linear and 1x1-conv layers of the UNet's transformer blocks and the
text encoder's attention and MLP, and trains the text encoder unless told not to; ours gets the same with
`target="attn-ff"` and `train_text_encoder=True`. Both read the same folder (`1_johnhero`, .txt captions).
kohya runs with its defaults (no latent cache, its own attention) unless --kohya-args adds to them, e.g.
"--sdpa --cache_latents". Steady steps/s leaves out the model load and the first step: it counts from the
time each trainer's progress first reports step 2 (kohya's tqdm line, our progress events) to its last step;
the median over --repeats runs of each, which alternate who goes first.
Peak memory is each process's largest resident set (from wait4), model load included.

sd-scripts needs its own environment (its pinned diffusers and transformers differ from ours):

    python -m venv /tmp/kohya-venv && /tmp/kohya-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        accelerate==1.6.0 transformers==4.54.1 diffusers==0.32.1 ftfy einops safetensors toml voluptuous \\
        huggingface-hub==0.34.3 imagesize opencv-python-headless rich sentencepiece tensorboard "numpy<2.1"
    python benchmarks/kohya_speed.py --sd-scripts /path/to/sd-scripts --kohya-python /tmp/kohya-venv/bin/python \\
        [--resolution 256] [--steps 8] [--precision no|bf16] [--repeats 2] [--kohya-args "--sdpa"] [--json]

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


def watch(cmd: list[str], pattern: re.Pattern, cwd: Path | None = None) -> dict:
    """Run cmd; the time each new step number first appears on its stderr, its peak RSS, its exit code."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    from lorastudio.config import Settings
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.train import train_lora
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    a = json.loads(spec)
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
        min_snr_gamma=None,
        warmup_steps=0,
        min_images=4,
        seed=0,
        device=a["device"],
        precision=a["precision"],
        target="attn-ff",
        train_text_encoder=True,
        weight_decay=1e-2,
        lr_scheduler="constant",
    )

    def on_progress(event) -> None:
        if event.phase == "train":
            print(f"step {event.step}/{event.total}", file=sys.stderr, flush=True)

    train_lora(cfg, settings=Settings(home=out / "home", device=a["device"]), on_progress=on_progress)


def main() -> None:
    """Run kohya's trainer, then ours, on the same inputs and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd-scripts", type=Path, required=True, help="a checkout of kohya-ss/sd-scripts")
    parser.add_argument("--kohya-python", default=sys.executable, help="the Python of sd-scripts' environment")
    parser.add_argument("--kohya-args", default="", help="extra train_network.py arguments, e.g. '--sdpa'")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "lorastudio-bench")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--precision", default="no", choices=("no", "bf16"))
    parser.add_argument(
        "--ours-precision",
        choices=("auto", "no", "bf16"),
        help="ours at another precision (default: --precision); auto: a user's default",
    )
    parser.add_argument("--device", default="auto", help="ours; kohya's accelerate picks the GPU when there is one")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating which goes first")
    parser.add_argument("--child-ours", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.child_ours:
        ours_child(args.child_ours)
        return
    script = args.sd_scripts / "train_network.py"
    if not script.is_file():
        parser.error(f"--sd-scripts: no train_network.py in {args.sd_scripts}")
    from lorastudio.engine.data.synthetic import write_reference_set
    from lorastudio.engine.models.sized import ensure_sized_model

    model_dir = ensure_sized_model("sd15-sized", args.models_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = tmp / "data" / "1_johnhero"
        write_reference_set(images, args.images, size=max(args.resolution, 256), caption="johnhero, a person")
        kohya_tokenizer(model_dir, tmp / "tok")
        kohya_cmd = [
            args.kohya_python,
            str(script),
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
            "precision": args.ours_precision or args.precision,
        }
        child = [sys.executable, __file__, "--sd-scripts", str(args.sd_scripts), "--child-ours", json.dumps(spec)]
        runs: dict[str, list[dict]] = {"kohya": [], "ours": []}
        for i in range(args.repeats):  # alternate who goes first: on a shared machine order matters
            for name in ("kohya", "ours") if i % 2 == 0 else ("ours", "kohya"):
                run = watch(kohya_cmd, KOHYA_STEP, args.sd_scripts) if name == "kohya" else watch(child, OUR_STEP)
                if run["rc"] != 0:
                    sys.exit(f"{name}'s trainer failed (exit {run['rc']}):\n" + "\n".join(run["tail"]))
                runs[name].append(run)
    k = statistics.median(steady(r["stamps"]) for r in runs["kohya"])
    o = statistics.median(steady(r["stamps"]) for r in runs["ours"])
    result = {
        "model": "sd15-sized",
        "cpu_cores": os.cpu_count(),
        "precision": args.precision,
        "ours_precision": args.ours_precision or args.precision,
        "resolution": args.resolution,
        "batch": args.batch,
        "steps": args.steps,
        "kohya_args": args.kohya_args,
        "ours_steps_per_s": round(o, 4),
        "kohya_steps_per_s": round(k, 4),
        "ratio": round(o / k, 3) if k else None,
        "repeats": args.repeats,
        "ours_peak_rss_mb": round(max(r["peak_mb"] for r in runs["ours"])),
        "kohya_peak_rss_mb": round(max(r["peak_mb"] for r in runs["kohya"])),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:20s} {value}")


if __name__ == "__main__":
    main()
