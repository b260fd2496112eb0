"""Checkpoint choice on the toy world: does the evaluation pick the checkpoint the detectors say is best?

For a character (the held-out johnhero) and a style (the held-out sword style): train to three times the toy
recipe's steps with a checkpoint every 10% of them and `evaluate` on, so every checkpoint (or as many as fit the
evaluation's share of the run) is scored on the small evaluation set. Then the detectors judge each scored
checkpoint on a larger set of held-out scene prompts (other seeds and scenes than the evaluation's) and we report:
  - the rank correlation (Spearman) between our identity score and the detectors' hit rate across checkpoints
    (goal >= 0.8);
  - the detectors' hit rate of the chosen checkpoint against the best one and the final one (goal: within 5
    points of the best, and never below the final);
  - the evaluation's share of the run's time.

Our identity score is DINO when a DINOv2 scorer is configured, else CLIP-I, else the detectors' own hit rate on
the evaluation set. No scorer weights can be downloaded here: `--scorer tiny` uses randomly initialised tiny CLIP
and DINOv2 models (plumbing only; their numbers mean little), `--scorer none` ranks by the detectors.

    python benchmarks/checkpoint_choice.py [--steps 1800] [--prompts 20] [--scorer none|tiny] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lorastudio.config import Settings
from lorastudio.quiet import quiet_libraries


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given their average rank (as Spearman's rho needs)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation; None when either side has no spread (it is undefined then)."""
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va and vb else None


def identity_of(score) -> float | None:
    """The identity number the choice ranks by."""
    for name in ("dino", "clip_i", "hit_rate"):
        value = getattr(score, name)
        if value is not None:
            return value
    return None


def main() -> None:
    """Train, score, judge; print a table (or one JSON object)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1800, help="three times the toy recipe's 600")
    parser.add_argument("--prompts", type=int, default=20, help="held-out prompts the detectors judge")
    parser.add_argument("--eval-prompts", type=int, default=4)
    parser.add_argument("--scorer", choices=("none", "tiny"), default="none")
    parser.add_argument("--only", choices=("character", "style"), default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    from lorastudio.engine.evaluation.scorers import build_tiny_scorers
    from lorastudio.engine.generation.pipecache import PipelineCache
    from lorastudio.engine.toyworld.consistency import (
        TOY_STRENGTH,
        character_prompts,
        character_references,
        hit_rate,
        identity_hit,
        style_hit,
        style_prompts,
        style_references,
        toy_lora_config,
    )
    from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS, HELD_OUT_STYLE
    from lorastudio.engine.training.train import train_lora

    report: dict = {"steps": args.steps, "scorer": args.scorer, "date": time.strftime("%Y-%m-%d"), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scorer = {}
        if args.scorer == "tiny":
            clip, dino = build_tiny_scorers(tmp / "scorers")
            scorer = {"scorer_clip": str(clip), "scorer_dino": str(dino)}
        settings = Settings(home=tmp / "home", device=args.device, **scorer)
        cache = PipelineCache(settings)
        john = HELD_OUT_CHARACTERS["johnhero"]
        runs = {
            "character": (
                "character",
                "johnhero",
                lambda folder: character_references(john, folder),
                character_prompts(john, args.prompts, seed=11),
                identity_hit,
            ),
            "style": (
                "fighting_style",
                f"{HELD_OUT_STYLE}style",
                lambda folder: style_references(HELD_OUT_STYLE, folder),
                style_prompts(HELD_OUT_STYLE, args.prompts, seed=12),
                style_hit,
            ),
        }
        for name, (kind, trigger, make_refs, prompts, hit) in runs.items():
            if args.only and name != args.only:
                continue
            refs = tmp / name / "refs"
            make_refs(refs)
            cfg = toy_lora_config(
                kind,
                refs,
                trigger,
                tmp / name / "lora.safetensors",
                tmp / name / "run",
                steps=args.steps,
                checkpoint_every=args.steps // 10,
                keep_checkpoints=2,
                evaluate=True,
                eval_prompts=args.eval_prompts,
            )
            t0 = time.perf_counter()
            result = train_lora(cfg, settings=settings)
            seconds = time.perf_counter() - t0
            evaluation = result.evaluation
            files = dict(result.alternatives)
            chosen = evaluation.choice.step if evaluation.choice.step is not None else args.steps
            files[chosen] = result.lora_path
            judged = {}
            for step, path in sorted(files.items()):
                loras = [{"lora": str(path), "strength": TOY_STRENGTH}]
                judged[step] = hit_rate(cache, prompts, loras, hit, first_seed=5000)
            scored = {s.step: identity_of(s) for s in evaluation.scores if s.step in judged}
            steps = sorted(s for s in scored if scored[s] is not None)
            rho = spearman([scored[s] for s in steps], [judged[s] for s in steps]) if len(steps) > 2 else None
            best = max(judged.values())
            report["runs"][name] = {
                "trigger": trigger,
                "scored_steps": steps,
                "identity_score": {str(s): scored[s] for s in steps},
                "detector_hit_rate": {str(s): judged[s] for s in sorted(judged)},
                "spearman": rho,
                "chosen_step": chosen,
                "chosen_hit_rate": judged[chosen],
                "best_hit_rate": best,
                "final_hit_rate": judged.get(args.steps),
                "by": evaluation.choice.by,
                "overtrained_after": evaluation.choice.overtrained_after,
                "message": evaluation.choice.message,
                "eval_share": round(evaluation.share, 4),
                "eval_seconds": round(evaluation.eval_seconds, 1),
                "run_seconds": round(seconds, 1),
            }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"checkpoint choice on the toy world, {args.steps} steps, scorer {args.scorer}, {report['date']}")
    for name, r in report["runs"].items():
        print(f"\n{name} ({r['trigger']}), ranked by {r['by']}: {r['message']}")
        print("step   ours    detectors")
        for s in r["detector_hit_rate"]:
            ours = r["identity_score"].get(s)
            mark = " <- chosen" if int(s) == r["chosen_step"] else ""
            print(f"{int(s):5d}  {'-' if ours is None else f'{ours:.3f}':>6}  {r['detector_hit_rate'][s]:.2f}{mark}")
        rho = "undefined (no spread)" if r["spearman"] is None else f"{r['spearman']:.2f}"
        print(
            f"Spearman {rho}; chosen {r['chosen_hit_rate']:.2f}, best {r['best_hit_rate']:.2f}, "
            f"final {r['final_hit_rate']:.2f}; evaluation {r['eval_share']:.1%} of {r['run_seconds']} s"
        )


if __name__ == "__main__":
    main()
