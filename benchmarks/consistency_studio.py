"""Two characters from the studio (the web's path) against the CLI's regional path, on the toy world.

A user of the web UI adds "Action Hero John" and "Villain Kane" in the Character Manager with their look in
words, trains each LoRA from 20 references (the toy recipe), and composes the guide's two-character scene in
the Studio: John on the left, Kane on the right, each at the strength its LoRA records. The scenes go through
the studio's services and a worker, as the Studio page submits them; each image is scored by the toy world's
detectors (both characters, each his own fighter). The same trained files then go through the engine as
`lorastudio generate --lora john@left --lora kane@right` does (benchmarks/consistency.py's pair phase), with
the same prompts and seeds. A third run clears the LoRAs' descriptions in the library: the web before this fix,
where nothing set them (the ghost / one blended fighter of the issue). One difference is the studio's own: a
style trigger in the prompt (the pair prompts name kung fu and others) brings that style's LoRA, as it does for
any user; with the same LoRAs the two paths draw the same pixels (tests/studio/test_studio_scene_matches_cli.py).

Measured 2026-12-05 (2-core CPU, 20 prompts, 600 steps): studio 60%, CLI 65%, studio without descriptions 0%.

    python benchmarks/consistency_studio.py [--prompts 20] [--steps 600] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from lorastudio.config import Settings
from lorastudio.quiet import quiet_libraries


def main() -> None:
    """Train both LoRAs through the studio, then score the studio's scenes and the CLI's side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    from fastapi.testclient import TestClient
    from PIL import Image

    from lorastudio.engine.generation.pipecache import PipelineCache
    from lorastudio.engine.toyworld.consistency import (
        character_references,
        hit_rate,
        identity_hit,
        pair_loras,
        pair_prompts,
    )
    from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS
    from lorastudio.studio.workers import Worker
    from lorastudio.web.app import create_app

    john, kane = HELD_OUT_CHARACTERS["johnhero"], HELD_OUT_CHARACTERS["kanehero"]
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(home=tmp / "home", device="auto", starting_credits=10**6)
        client = TestClient(create_app(settings))
        worker = Worker(settings, name="bench@cpu")
        loras, files = {}, {}
        t0 = time.perf_counter()
        for who, name in ((john, "Action Hero John"), (kane, "Villain Kane")):
            character = client.post("/api/v1/characters", json={"name": name, "description": who.words()}).json()
            dataset = client.post(
                "/api/v1/datasets",
                json={"name": name, "kind": "character", "trigger": who.name, "character_id": character["id"]},
            ).json()
            refs = tmp / who.name
            character_references(who, refs, n=20, seed=7)
            files_in = [("files", (p.name, p.read_bytes())) for p in sorted(refs.iterdir())]
            client.post(f"/api/v1/datasets/{dataset['id']}/images", files=files_in).raise_for_status()
            job = client.post(
                "/api/v1/trainings", json={"dataset_id": dataset["id"], "overrides": {"steps": args.steps}}
            ).json()
            worker.drain()
            done = client.get(f"/api/v1/jobs/{job['id']}").json()
            assert done["status"] == "succeeded", done
            loras[who.name] = done["result"]["lora_id"]
            files[who.name] = tmp / f"{who.name}.safetensors"
            files[who.name].write_bytes(client.get(f"/api/v1/loras/{loras[who.name]}/file").content)
        seconds["train_s"] = round(time.perf_counter() - t0, 1)
        prompts = pair_prompts(john, kane, args.prompts)

        def studio_rate(phase: str) -> float:
            t0, hits = time.perf_counter(), 0
            for i, prompt in enumerate(prompts):
                body = {
                    "prompt": prompt.text,
                    "seed": 1000 + i,
                    "steps": 20,
                    "n": 1,
                    "loras": [
                        {"lora_id": loras[john.name], "region": "left"},
                        {"lora_id": loras[kane.name], "region": "right"},
                    ],
                }
                job = client.post("/api/v1/generations", json=body).json()
                worker.drain()
                image = client.get(f"/api/v1/jobs/{job['id']}/images").json()[0]
                hits += identity_hit(Image.open(io.BytesIO(client.get(image["url"]).content)).convert("RGB"), prompt)
            seconds[f"{phase}_generate_s"] = round(time.perf_counter() - t0, 1)
            return hits / len(prompts)

        web = studio_rate("studio")
        t0 = time.perf_counter()
        strength = client.get(f"/api/v1/loras/{loras[john.name]}").json()["recommended_strength"]
        cli = hit_rate(
            PipelineCache(settings),
            prompts,
            pair_loras(str(files[john.name]), str(files[kane.name]), strength),
            identity_hit,
        )
        seconds["cli_generate_s"] = round(time.perf_counter() - t0, 1)
        for lora_id in loras.values():
            client.patch(f"/api/v1/loras/{lora_id}", json={"description": ""}).raise_for_status()
        undescribed = studio_rate("undescribed")

    result = {
        "studio_two_character_rate": web,
        "cli_two_character_rate": cli,
        "studio_without_descriptions_rate": undescribed,
        "prompts": args.prompts,
        "steps": args.steps,
        "strength": strength,
        **seconds,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'two characters (john left, kane right)':44s} {'hit rate':>9s}")
    print(f"{'studio (web path, descriptions from the cards)':44s} {web:9.0%}")
    print(f"{'CLI regional path, same files and seeds':44s} {cli:9.0%}")
    print(f"{'studio with the descriptions cleared (before)':44s} {undescribed:9.0%}")
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
