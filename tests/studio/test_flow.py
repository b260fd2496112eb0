"""The guide's flow through the HTTP API with a real worker: character -> references (+ broken files) ->
estimate -> training with progress over SSE -> LoRA version in the library -> a scene with johnhero and
kungfustyle -> images judged -> usage and success rate."""

import json
import threading

import pytest

from lorastudio.studio.workers import Worker
from tests.studio.conftest import john_dataset, upload_refs


def _sse(client, job_id: int) -> list[tuple[str, dict]]:
    events, kind = [], None
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.split(":", 1)[1])))
    return events


# Slow on both databases (12 s each): the browser runs the guide's workflow, and the deploy test runs PostgreSQL.
@pytest.mark.slow
@pytest.mark.parametrize("studio_settings", ["sqlite", "postgresql"], indirect=True)
def test_the_guides_flow_end_to_end(client, studio_settings, john_refs):
    styles = client.get("/api/v1/styles").json()
    assert [s["trigger"] for s in styles[:4]] == ["boxingstyle", "kungfustyle", "mmastyle", "swordstyle"]
    character = client.post("/api/v1/characters", json={"name": "Action Hero John", "description": "red gi"}).json()
    assert character["trigger"] == "johnhero"
    dataset = client.post(
        "/api/v1/datasets",
        json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": character["id"]},
    ).json()
    broken = [
        ("files", ("empty.png", b"")),
        ("files", ("garbage.png", b"not an image")),
        ("files", ("cut.png", (john_refs / "johnhero_00.png").read_bytes()[:60])),
    ]
    uploaded = upload_refs(client, dataset["id"], john_refs, broken).json()
    verdicts = {i["filename"]: i["status"] for i in uploaded["images"]}
    assert (
        uploaded["usable"] == 20 and [verdicts[n] for n in ("empty.png", "garbage.png", "cut.png")] == ["skipped"] * 3
    )
    body = {"dataset_id": dataset["id"], "overrides": {"steps": 8, "checkpoint_every": 4}}
    estimate = client.post("/api/v1/trainings/estimate", json=body).json()
    assert estimate["images"] == 20 and estimate["resolution"] == 32 and estimate["breakdown"]

    job = client.post("/api/v1/trainings", json=body).json()
    assert job["status"] == "pending"
    worker = Worker(studio_settings, name="in-process")
    runner = threading.Thread(target=worker.drain)
    runner.start()
    events = _sse(client, job["id"])
    runner.join(timeout=120)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"
    steps = [data["step"] for kind, data in events if kind == "progress" and data.get("phase") == "train"]
    assert steps and steps == sorted(steps)
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["progress"]["losses"] and len(done["progress"]["losses"]) == 8
    lora_id = done["result"]["lora_id"]
    john = client.get(f"/api/v1/characters/{character['id']}").json()
    assert john["lora_id"] == lora_id and len(john["versions"]) == 1 and john["versions"][0]["training_seconds"] > 0

    scene = client.post(
        "/api/v1/generations",
        json={
            "prompt": "johnhero, kungfustyle, horse stance, in a dojo",
            "loras": [{"lora_id": lora_id, "strength": 1.2}],
            "seed": 42,
            "n": 2,
            "steps": 6,
        },
    )
    assert scene.status_code == 201, scene.text
    kungfu = next(s for s in styles if s["trigger"] == "kungfustyle")
    assert [x["lora_id"] for x in scene.json()["request"]["loras"]] == [
        lora_id,
        kungfu["lora_id"],
    ]  # the trigger brought its LoRA
    worker.drain()
    images = client.get(f"/api/v1/jobs/{scene.json()['id']}/images").json()
    assert len(images) == 2
    png = client.get(images[0]["url"])
    assert png.headers["content-type"] == "image/png" and png.headers["x-content-type-options"] == "nosniff"
    client.put(f"/api/v1/images/{images[0]['id']}/verdict", json={"verdict": "kept"})
    client.put(f"/api/v1/images/{images[1]['id']}/verdict", json={"verdict": "rejected"})
    lora = client.get(f"/api/v1/loras/{lora_id}").json()
    assert (lora["usage_count"], lora["kept_count"], lora["judged_count"], lora["success_rate"]) == (1, 1, 2, 0.5)
    rated = client.put(f"/api/v1/loras/{lora_id}/rating", json={"stars": 4}).json()
    assert (rated["rating_avg"], rated["rating_count"]) == (4.0, 1)
    again = client.put(f"/api/v1/loras/{lora_id}/rating", json={"stars": 2}).json()
    assert (again["rating_avg"], again["rating_count"]) == (2.0, 1)  # one rating per user
    found = client.get("/api/v1/loras", params={"q": "johnhero", "sort": "usage"}).json()
    assert [x["id"] for x in found["items"]] == [lora_id] and found["total"] == 1


# Slow (12 s): the browser test of the Train page cancels a running training and checks the same.
@pytest.mark.slow
def test_cancel_mid_training_registers_no_version(client, studio_settings, john_refs, workers):
    character_id, dataset_id = john_dataset(client, john_refs)
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, "overrides": {"steps": 400}}).json()
    workers.start("w1")
    from tests.studio.conftest import wait_for

    wait_for(client, job["id"], lambda j: j["progress"].get("step", 0) >= 3)
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json()["cancel_requested"]
    final = wait_for(client, job["id"], lambda j: j["status"] in ("canceled", "succeeded", "failed"))
    assert final["status"] == "canceled" and final["progress"]["step"] < 400
    assert client.get(f"/api/v1/characters/{character_id}").json()["versions"] == []
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 409
