"""Consistency on the toy world: does a LoRA make a held-out character (or style) appear, scene after scene?

Phases, each against a prompt-only baseline at the same seeds (no LoRA):
  identity  - johnhero (a colour pairing + accessory the base never saw together): 20 renders -> LoRA ->
              20 scene prompts with his trigger word (varied poses, backgrounds, with/without kungfustyle);
  style     - the held-out sword style: 20 renders of various fighters -> LoRA -> 20 swordstyle prompts;
  pair      - johnhero and kanehero LoRAs, each confined to its fighter's half of the picture (regional
              LoRAs, engine/generation/regions.py): "johnhero facing kanehero, ..." must show both, each as his own
              fighter (neither blended into the other). Also measured: both LoRAs stacked over the whole
              picture (the guide's plain recipe), which bleeds.
Detectors are deterministic (lorastudio.engine.toyworld.detect); a hit needs body, head and accessory.

    python benchmarks/consistency.py [--prompts 20] [--steps 600] [--strength 1.2] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lorastudio.config import Settings
from lorastudio.quiet import quiet_libraries


def main() -> None:
    """Run the three phases and print a table (or one JSON object)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--strength", type=float, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    from lorastudio.engine.generation.pipecache import PipelineCache
    from lorastudio.engine.toyworld.consistency import (
        TOY_STRENGTH,
        character_prompts,
        character_references,
        hit_rate,
        identity_hit,
        pair_loras,
        pair_prompts,
        style_hit,
        style_prompts,
        style_references,
        toy_lora_config,
    )
    from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS, HELD_OUT_STYLE, STYLES
    from lorastudio.engine.training.train import train_lora

    strength = args.strength or TOY_STRENGTH
    john, kane = HELD_OUT_CHARACTERS["johnhero"], HELD_OUT_CHARACTERS["kanehero"]
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(home=tmp / "home", device=args.device)

        def train(kind: str, folder: Path, trigger: str, phase: str) -> str:
            t0 = time.perf_counter()
            cfg = toy_lora_config(
                kind, folder, trigger, tmp / f"{trigger}.safetensors", tmp / f"run-{trigger}", steps=args.steps
            )
            path = str(train_lora(cfg, settings=settings).lora_path)
            seconds[f"{phase}_train_s"] = round(time.perf_counter() - t0, 1)
            return path

        cache = PipelineCache(settings)

        def score(prompts, loras: list[str] | list[dict], hit, phase: str) -> tuple[float, float]:
            t0 = time.perf_counter()
            selection = [x if isinstance(x, dict) else {"lora": x, "strength": strength} for x in loras]
            rates = hit_rate(cache, prompts, selection, hit), hit_rate(cache, prompts, [], hit)
            seconds[f"{phase}_generate_s"] = round(time.perf_counter() - t0, 1)
            return rates

        john_lora = train("character", _refs(character_references, john, tmp / "john"), "johnhero", "identity")
        identity, identity_base = score(character_prompts(john, args.prompts), [john_lora], identity_hit, "identity")
        trigger = STYLES[HELD_OUT_STYLE].trigger
        style_lora = train("fighting_style", _refs(style_references, HELD_OUT_STYLE, tmp / "style"), trigger, "style")
        style, style_base = score(style_prompts(HELD_OUT_STYLE, args.prompts), [style_lora], style_hit, "style")
        kane_lora = train("character", _refs(character_references, kane, tmp / "kane"), "kanehero", "pair")
        pairs = pair_prompts(john, kane, args.prompts)
        pair, pair_base = score(pairs, pair_loras(john_lora, kane_lora, strength), identity_hit, "pair")
        t0 = time.perf_counter()
        stacked = hit_rate(cache, pairs, pair_loras(john_lora, kane_lora, strength, regions=False), identity_hit)
        seconds["pair_stacked_generate_s"] = round(time.perf_counter() - t0, 1)

    result = {
        "identity_hit_rate": identity,
        "baseline_hit_rate": identity_base,
        "style_hit_rate": style,
        "style_baseline_rate": style_base,
        "two_character_rate": pair,
        "two_character_baseline_rate": pair_base,
        "two_character_stacked_rate": stacked,
        "prompts": args.prompts,
        "steps": args.steps,
        "strength": strength,
        **seconds,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'measure':28s} {'with LoRA':>10s} {'prompt only':>12s}   target")
    print(f"{'identity (johnhero)':28s} {identity:10.0%} {identity_base:12.0%}   >= 90% vs <= 10%")
    print(f"{'held-out style (sword)':28s} {style:10.0%} {style_base:12.0%}   >= 80%")
    print(f"{'two characters (john+kane)':28s} {pair:10.0%} {pair_base:12.0%}   >= 60% (want 80%)")
    print(f"{'  same, LoRAs not regional':28s} {stacked:10.0%} {'':12s}   (both LoRAs over the whole picture)")
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


def _refs(make, what, folder: Path) -> Path:
    make(what, folder)
    return folder


if __name__ == "__main__":
    main()
