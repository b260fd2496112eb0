"""Generation speed with stacked LoRAs, LoRA-set switching and batching, all in one process.

(a) stacked_overhead = t(3 LoRAs, unfused) / t(no LoRA) - 1, same warm pipeline, same seed (target <= 0.10);
    stacked_overhead_fused: the three folded into the weights, as generate() does by default in fp32 (the
    set stays fused between calls); refuse_vs_image: changing the fused set (restore the weights, fold
    the other set in) over the time of one image without LoRAs.
(b) switch_vs_cold = time to switch a warm pipeline to a set of 3 LoRAs not yet loaded, over the
    cold start (load the base model, load 3 LoRAs); the image itself is excluded from both, since it
    costs the same either way (target <= 0.20). The warm cache holds one set, so each switch evicts three
    adapters; files with their layers and ranks are copied into the evicted adapters' layers
    (engine/generation/slots.py; switch_hot_swaps counts them). switch_resident_vs_cold: the set is already
    resident.
(c) batch_speedup = t(4 single calls) / t(one batch of 4).

    python benchmarks/generate_speed.py [--model tiny-sd15|sd15-sized] [--size 256] [--steps 10] [--repeats 3]
                                        [--device auto] [--json]

--model sd15-sized: the full SD1.5 architecture with random weights (engine/models/sized.py), where
loading the base takes seconds as it does for a real model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from lorastudio.config import Settings
from lorastudio.quiet import quiet_libraries


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over repeats, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_loras(settings: Settings, folder: Path, count: int, base: str = "tiny-sd15") -> list[Path]:
    """Train `count` small, distinct LoRAs on the tiny model (a few steps each)."""
    from lorastudio.engine.data.synthetic import write_reference_set
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.train import train_lora

    images = folder / "images"
    write_reference_set(images, 6, size=128, caption="johnhero, a person")
    paths = []
    for i in range(count):
        cfg = TrainConfig.from_preset(
            kind="character",
            images=images,
            trigger=f"hero{i}",
            base=base,
            resolution=64,
            steps=3,
            network_dim=16,
            network_alpha=16,
            learning_rate=1e-2,
            seed=i,
            min_images=4,
            checkpoint_every=0,
            output=folder / f"lora{i}.safetensors",
            run_dir=folder / f"run{i}",
        )
        paths.append(train_lora(cfg, settings=settings).lora_path)
    return paths


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd15", choices=("tiny-sd15", "sd15-sized"))
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "lorastudio-bench")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    from lorastudio.engine.generation.generate import GenerateRequest, generate, prepare
    from lorastudio.engine.generation.pipecache import PipelineCache

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", device=args.device)
        base = "tiny-sd15"
        if args.model != "tiny-sd15":
            from lorastudio.engine.models.sized import ensure_sized_model

            base = str(ensure_sized_model(args.model, args.models_dir))
        loras = make_loras(settings, Path(tmp), 6, base)
        set_a, set_b = [str(p) for p in loras[:3]], [str(p) for p in loras[3:]]

        def request(names: list[str], n: int = 1, fuse: bool = False) -> GenerateRequest:
            return GenerateRequest.build(
                prompt="hero0, hero1, hero2, fighting stance",
                base=base,
                seed=1,
                n=n,
                steps=args.steps,
                width=args.size,
                height=args.size,
                loras=[{"lora": x, "strength": 0.6} for x in names],
                fuse=fuse,
            )

        cache = PipelineCache(settings)
        none_s = timed(lambda: generate(cache, request([])), args.repeats)
        stacked_s = timed(lambda: generate(cache, request(set_a, fuse=False)), args.repeats)
        fused_s = timed(lambda: generate(cache, request(set_a, fuse=True)), args.repeats)

        generate(cache, request(set_b, fuse=False))  # both sets resident

        def refuse() -> None:
            for names in (set_b, set_a):
                cache.fuse({lora.adapter: sel.strength for sel, lora in prepare(cache, request(names)).loras})

        refuse_s = timed(refuse, args.repeats) / 2

        def cold() -> None:
            fresh = PipelineCache(settings)
            fresh.activate({lora.adapter: sel.strength for sel, lora in prepare(fresh, request(set_a)).loras})

        cold_s = timed(cold, args.repeats)
        warm = PipelineCache(settings, max_loras=3)  # holds one set: switching always loads the other

        def switch() -> None:
            for names in (set_a, set_b):
                warm.activate({lora.adapter: sel.strength for sel, lora in prepare(warm, request(names)).loras})

        switch_s = timed(switch, args.repeats) / 2
        resident = PipelineCache(settings)

        def switch_resident() -> None:
            for names in (set_a, set_b):
                resident.activate({lora.adapter: sel.strength for sel, lora in prepare(resident, request(names)).loras})

        resident_s = timed(switch_resident, args.repeats) / 2
        singles_s = timed(
            lambda: [generate(cache, request(set_a, fuse=False).model_copy(update={"seed": 1 + i})) for i in range(4)],
            args.repeats,
        )
        batch_s = timed(lambda: generate(cache, request(set_a, n=4, fuse=False)), args.repeats)
        batch_fused_s = timed(lambda: generate(cache, request(set_a, n=4, fuse=True)), args.repeats)
        device = str(cache.device)

    result = {
        "device": device,
        "model": args.model,
        "size": args.size,
        "steps": args.steps,
        "t_no_lora_s": round(none_s, 4),
        "t_3_loras_s": round(stacked_s, 4),
        "stacked_overhead": round(stacked_s / none_s - 1, 4),
        "stacked_overhead_fused": round(fused_s / none_s - 1, 4),
        "refuse_vs_image": round(refuse_s / none_s, 4),
        "cold_start_s": round(cold_s, 4),
        "warm_switch_s": round(switch_s, 4),
        "switch_vs_cold": round(switch_s / cold_s, 4),
        "switch_resident_vs_cold": round(resident_s / cold_s, 4),
        "switch_hot_swaps": warm.swaps,
        "batch_speedup": round(singles_s / batch_s, 4),
        "batch_fused_vs_unfused": round(batch_s / batch_fused_s, 4),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:26s} {value}")


if __name__ == "__main__":
    main()
