"""A regional two-character scene from the studio (the web's path) draws exactly what the engine draws for the
CLI's `--lora a@left --lora b@right` with the same files, descriptions, prompt and seed: so the web gets both
characters right as often as the CLI does (benchmarks/consistency_studio.py measures that rate on the toy
world). The description the engine reads is the library's, edited there or brought from the character."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lorastudio.engine.generation.generate import GenerateRequest, generate
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.studio.workers import Worker

API = "/api/v1"


def _studio_image(client, settings, body: dict) -> np.ndarray:
    job = client.post(f"{API}/generations", json=body)
    assert job.status_code == 201, job.text
    Worker(settings, name="in-process").drain()
    image = client.get(f"{API}/jobs/{job.json()['id']}/images").json()[0]
    return np.asarray(Image.open(io.BytesIO(client.get(image["url"]).content)).convert("RGB"))


def test_a_regional_studio_scene_is_the_clis_scene(client, studio_settings, trained, tmp_path):
    files = {"john": trained["tiny-sd15"], "kane": trained["style-sd15"]}
    ids = {}
    for who, path in files.items():
        made = client.post(f"{API}/loras", files={"file": (f"{who}.safetensors", path.read_bytes())}).json()
        ids[who] = made["id"]
    looks = {"john": "red gi, white headband", "kane": "black gi, red belt"}
    for who, look in looks.items():
        client.patch(f"{API}/loras/{ids[who]}", json={"description": look}).raise_for_status()
    prompt = "johnhero facing his rival in a dojo"  # no style trigger: a style would expand to its phrases
    body = {
        "prompt": prompt,
        "base": "tiny-sd15",
        "seed": 7,
        "steps": 3,
        "n": 1,
        "add_triggers": False,
        "loras": [
            {"lora_id": ids["john"], "strength": 0.8, "region": "left"},
            {"lora_id": ids["kane"], "strength": 0.7, "region": "right"},
        ],
    }
    studio = _studio_image(client, studio_settings, body)

    cache = PipelineCache(studio_settings)
    selection = [
        {"lora": str(files["john"]), "strength": 0.8, "region": "left", "description": looks["john"]},
        {"lora": str(files["kane"]), "strength": 0.7, "region": "right", "description": looks["kane"]},
    ]
    request = GenerateRequest.build(prompt=prompt, base="tiny-sd15", seed=7, steps=3, loras=selection)
    cli = np.asarray(generate(cache, request).images[0].convert("RGB"))
    assert np.array_equal(studio, cli)
    # Without the library's words the passes read differently: the description is what reached the engine.
    bare = [{k: v for k, v in x.items() if k != "description"} for x in selection]
    plain = generate(cache, GenerateRequest.build(prompt=prompt, base="tiny-sd15", seed=7, steps=3, loras=bare))
    assert not np.array_equal(np.asarray(plain.images[0].convert("RGB")), studio)
