"""Storyboards through the HTTP API with an in-process worker: the guide's Epic Fight Sequence (faces,
attacks, blocks) built from generation jobs, images picked, reordered, re-rolled, a scene removed and added
back; exported as PDF (parsed back with pypdf), ZIP (manifest validated, regenerated pixel for pixel by
`lorastudio storyboard regenerate`) and contact sheet (tiles compared with the panels); bad input refused."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from lorastudio.studio import jobs, storyboards
from lorastudio.studio.db import User
from lorastudio.studio.storyboards import Manifest, StoryboardIn
from lorastudio.studio.workers import Worker
from tests.jobrequests import sample_request

API = "/api/v1"
SEQUENCE = [  # the demo's Epic Fight Sequence; "attacks" confines kungfustyle to the left half
    ("faces", "johnhero facing kanehero, kungfustyle, horse stance, in a dojo", None),
    ("attacks", "johnhero facing kanehero, kungfustyle, crane kick, in a dojo", "left"),
    ("blocks", "johnhero facing kanehero, kungfustyle, horse stance, at night", None),
]


def _scene_job(client, kungfu: int, prompt: str, region: str | None, seed: int) -> dict:
    loras = [{"lora_id": kungfu, "strength": 0.8, "region": region}] if region else []
    body = {"prompt": prompt, "loras": loras, "seed": seed, "n": 2, "steps": 3}
    response = client.post(f"{API}/generations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _titles(board: dict) -> list[str]:
    assert [s["position"] for s in board["scenes"]] == list(range(len(board["scenes"])))
    return [s["title"] for s in board["scenes"]]


def _export(client, worker: Worker, board_id: int, fmt: str):
    job = client.post(f"{API}/storyboards/{board_id}/exports", json={"format": fmt})
    assert job.status_code == 201, job.text
    assert client.get(f"{API}/storyboards/{board_id}/exports/{job.json()['id']}").status_code == 409  # not yet
    worker.drain()
    done = client.get(f"{API}/jobs/{job.json()['id']}").json()
    assert done["status"] == "succeeded", done
    assert (done["progress"]["step"], done["progress"]["total"]) == (3, 3)
    file = client.get(f"{API}/storyboards/{board_id}/exports/{done['id']}")
    assert file.status_code == 200 and file.headers["x-content-type-options"] == "nosniff"
    assert f"storyboard-{board_id}.{fmt}" in file.headers["content-disposition"]
    return file


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def fight(client, studio_settings) -> dict:
    """The Epic Fight Sequence, its scenes' jobs rendered."""
    for name, trigger in (("Action Hero John", "johnhero"), ("Villain Kane", "kanehero")):
        assert client.post(f"{API}/characters", json={"name": name, "trigger": trigger}).status_code == 201
    kungfu = next(s["lora_id"] for s in client.get(f"{API}/styles").json() if s["trigger"] == "kungfustyle")
    board = client.post(
        f"{API}/storyboards", json={"title": "Epic Fight Sequence", "description": "John vs Kane in the dojo"}
    ).json()
    jobs_ = [_scene_job(client, kungfu, prompt, region, 40 + i) for i, (_, prompt, region) in enumerate(SEQUENCE)]
    for (title, _, _), job in zip(SEQUENCE, jobs_, strict=True):
        added = client.post(f"{API}/storyboards/{board['id']}/scenes", json={"job_id": job["id"], "title": title})
        assert added.status_code == 201, added.text
    pending = added.json()["scenes"]
    assert [s["image_id"] for s in pending] == [None] * 3 and pending[0]["job_status"] == "pending"
    worker = Worker(studio_settings, name="in-process")
    assert worker.drain() == 3
    images = [client.get(f"{API}/jobs/{j['id']}/images").json() for j in jobs_]
    return {"board": board["id"], "jobs": jobs_, "images": images, "worker": worker, "kungfu": kungfu}


def test_epic_fight_sequence_built_reordered_rerolled_and_exported(client, fight, run, monkeypatch, tmp_path):
    board_id, images, worker = fight["board"], fight["images"], fight["worker"]
    url = f"{API}/storyboards/{board_id}"
    # a kept image is the default choice; otherwise the first image
    client.put(f"{API}/images/{images[2][1]['id']}/verdict", json={"verdict": "kept"})
    board = client.get(url).json()
    assert [s["image_id"] for s in board["scenes"]] == [images[0][0]["id"], images[1][0]["id"], images[2][1]["id"]]
    faces, attacks, blocks = (s["id"] for s in board["scenes"])
    picked = client.patch(f"{url}/scenes/{faces}", json={"image_id": images[0][1]["id"], "notes": "they circle"})
    assert picked.json()["scenes"][0]["image_id"] == images[0][1]["id"]
    wrong = client.patch(f"{url}/scenes/{faces}", json={"image_id": images[1][0]["id"]})
    assert wrong.status_code == 422 and "not one of the images" in wrong.json()["error"]["message"]

    assert _titles(client.put(f"{url}/order", json={"scene_ids": [blocks, faces, attacks]}).json()) == [
        "blocks",
        "faces",
        "attacks",
    ]
    client.post(f"{url}/scenes/{blocks}/move", json={"direction": "down"})
    assert _titles(client.post(f"{url}/scenes/{blocks}/move", json={"direction": "down"}).json()) == [
        "faces",
        "attacks",
        "blocks",
    ]
    at_end = client.post(f"{url}/scenes/{blocks}/move", json={"direction": "down"}).json()
    assert _titles(at_end) == ["faces", "attacks", "blocks"]  # the last one stays last

    before = client.get(url).json()["scenes"][2]
    rolled = client.post(f"{url}/scenes/{blocks}/reroll")
    assert rolled.status_code == 201, rolled.text
    new_job = rolled.json()["job"]
    assert new_job["request"]["prompt"] == fight["jobs"][2]["request"]["prompt"]
    assert new_job["request"]["seed"] not in (42, 43) and rolled.json()["storyboard"]["scenes"][2]["image_id"] is None
    worker.drain()
    after = client.get(url).json()["scenes"][2]
    assert after["job_id"] == new_job["id"] and after["image_id"] not in (None, before["image_id"])
    assert after["seed"] != before["seed"] and after["prompt"] == before["prompt"]

    assert _titles(client.delete(f"{url}/scenes/{attacks}").json()) == ["faces", "blocks"]
    back = client.post(f"{url}/scenes", json={"job_id": fight["jobs"][1]["id"], "title": "attacks"}).json()
    attacks = back["scenes"][2]["id"]
    assert _titles(client.post(f"{url}/scenes/{attacks}/move", json={"direction": "up"}).json()) == [
        "faces",
        "attacks",
        "blocks",
    ]
    board = client.get(url).json()
    (used,) = board["scenes"][1]["loras"]  # the library entry by name and id, as the scene's request chose it
    assert (
        used
        == {"name": "Kung Fu Martial Arts", "strength": 0.8, "region": "left", "lora_id": used["lora_id"], "version": 1}
        and used["lora_id"] >= 1
    )

    pdf = _export(client, worker, board_id, "pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.content))
    assert len(reader.pages) == 1 + 3
    cover = _words(reader.pages[0].extract_text())
    assert "Epic Fight Sequence" in cover and "John vs Kane in the dojo" in cover
    assert "Action Hero John" in cover and "Villain Kane" in cover
    for page, scene in zip(reader.pages[1:], board["scenes"], strict=True):
        text = _words(page.extract_text())
        assert scene["title"] in text and _words(scene["prompt"]) in text and f"Seed: {scene['seed']}" in text
        for lora in scene["loras"]:
            assert f"{lora['name']} at {lora['strength']:g}" in text
        assert len(page.images) >= 1
    assert "they circle" in _words(reader.pages[1].extract_text())

    archive = zipfile.ZipFile(io.BytesIO(_export(client, worker, board_id, "zip").content))
    manifest = Manifest.model_validate(json.loads(archive.read("manifest.json")))
    loras = [n for n in archive.namelist() if n.startswith("loras/")]
    assert sorted(set(archive.namelist()) - set(loras)) == [
        "manifest.json",
        "panels/01.png",
        "panels/02.png",
        "panels/03.png",
    ]
    assert len(loras) == 1 and loras[0].endswith(".safetensors")  # kungfustyle, once for all three panels
    assert hashlib.sha256(archive.read(loras[0])).hexdigest() == manifest.panels[0].loras[0].sha256
    for panel, scene in zip(manifest.panels, board["scenes"], strict=True):
        png = archive.read(panel.file)
        assert hashlib.sha256(png).hexdigest() == panel.png_sha256
        assert png == client.get(scene["image_url"]).content  # as stored, its PNG parameters included
        assert (panel.title, str(panel.seed), panel.prompt) == (scene["title"], scene["seed"], scene["prompt"])
    assert manifest.panels[1].loras[0].region == "left" and manifest.panels[1].loras[0].strength == 0.8
    unzipped = tmp_path / "export"
    archive.extractall(unzipped)
    regenerated = run("storyboard", "regenerate", unzipped / "manifest.json", "--out", tmp_path / "again", "--json")
    assert regenerated.exit_code == 0, regenerated.output
    report = json.loads(regenerated.stdout)
    assert report["all_match"] and [p["matches"] for p in report["panels"]] == [True] * 3
    for p in report["panels"]:
        again = np.asarray(Image.open(p["output"]).convert("RGB"))
        assert np.array_equal(again, np.asarray(Image.open(unzipped / f"panels/{p['number']:02d}.png").convert("RGB")))

    first = unzipped / "panels/01.png"
    Image.open(first).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(first)  # not the exported PNG any more
    tampered = run("storyboard", "regenerate", unzipped / "manifest.json", "--out", tmp_path / "again", "--json")
    verdicts = json.loads(tampered.stdout)["panels"]
    assert tampered.exit_code == 1 and [p["matches"] for p in verdicts] == [False, True, True]
    assert "not the PNG that was exported" in verdicts[0]["problems"][0]

    # the CLI exports in-process from the studio database of $LORASTUDIO_HOME
    monkeypatch.setenv("LORASTUDIO_HOME", str(client.app.state.studio.settings.home))
    if client.app.state.studio.settings.database_url:
        monkeypatch.setenv("LORASTUDIO_DATABASE_URL", client.app.state.studio.settings.database_url)
    listed = json.loads(run("storyboard", "list", "--json").stdout)
    assert [(b["id"], b["scene_count"]) for b in listed] == [(board_id, 3)]
    for args, says in (
        (("999", "--format", "pdf"), "storyboard 999 not found"),
        ((str(board_id), "--format", "doc"), "not one of pdf, png, zip"),
    ):
        refused = run("storyboard", "export", *args, "--out", tmp_path / "x", "--json")
        assert refused.exit_code == 2 and says in json.loads(refused.stdout)["error"]["message"]
    sheet_file = tmp_path / "sheet.png"
    exported = run("storyboard", "export", board_id, "--format", "png", "--out", sheet_file, "--json")
    assert exported.exit_code == 0, exported.output
    sheet = Image.open(sheet_file).convert("RGB")
    assert sheet.size == (16 + 3 * (256 + 16), 48 + 256 + 3 * 18 + 8 + 16)  # one row of three tiles
    for i, scene in enumerate(board["scenes"]):
        panel = Image.open(io.BytesIO(client.get(scene["image_url"]).content)).convert("RGB")
        tile = sheet.crop((16 + i * 272, 48, 16 + i * 272 + 256, 48 + 256))
        assert np.array_equal(np.asarray(tile), np.asarray(panel.resize((256, 256), Image.Resampling.NEAREST)))


def test_other_ids_and_bad_orders_are_refused(client):
    factory = client.app.state.studio.factory
    with factory() as session:  # another user, with a storyboard and a generation job of their own
        other = User(name="someone-else")
        session.add(other)
        session.commit()
        theirs = storyboards.create_storyboard(session, owner_id=other.id, data=StoryboardIn(title="Theirs"))
        their_job = jobs.add_job(session, owner_id=other.id, request=sample_request("generation", prompt="x"))
        session.commit()
        their_job_id = their_job.id
    assert client.get(f"{API}/storyboards/{theirs.id}").status_code == 404
    assert client.get(f"{API}/storyboards/999999").json()["error"]["code"] == "not_found"
    assert [b["title"] for b in client.get(f"{API}/storyboards").json()] == []
    mine = client.post(f"{API}/storyboards", json={"title": "Mine"}).json()["id"]
    second = client.post(f"{API}/storyboards", json={"title": "Second"}).json()["id"]
    refused = client.post(f"{API}/storyboards/{mine}/scenes", json={"job_id": their_job_id})
    assert refused.status_code == 404  # their job is not found for me, not forbidden

    training = client.post(f"{API}/storyboards/{mine}/scenes", json={"job_id": 999999})
    assert training.status_code == 404
    with factory() as session:
        me = client.app.state.studio.local_user
        my_jobs = [jobs.add_job(session, owner_id=me, request=sample_request("generation", prompt=p)) for p in "abc"]
        session.commit()
        job_ids = [j.id for j in my_jobs]
    for job_id in job_ids[:2]:
        client.post(f"{API}/storyboards/{mine}/scenes", json={"job_id": job_id})
    other_scene = client.post(f"{API}/storyboards/{second}/scenes", json={"job_id": job_ids[2]}).json()["scenes"][0]
    a, b = (s["id"] for s in client.get(f"{API}/storyboards/{mine}").json()["scenes"])

    assert client.patch(f"{API}/storyboards/{mine}/scenes/{other_scene['id']}", json={"title": "x"}).status_code == 404
    assert client.delete(f"{API}/storyboards/{mine}/scenes/{other_scene['id']}").status_code == 404
    assert client.post(f"{API}/storyboards/{mine}/scenes/{other_scene['id']}/reroll").status_code == 404
    for order, says in (([a, a], "more than once"), ([a], "missing"), ([a, b, other_scene["id"]], "not scenes of")):
        bad = client.put(f"{API}/storyboards/{mine}/order", json={"scene_ids": order})
        assert bad.status_code == 422 and says in bad.json()["error"]["message"], bad.text
    assert client.post(f"{API}/storyboards/{mine}/scenes/{a}/move", json={"direction": "sideways"}).status_code == 422
    assert client.post(f"{API}/storyboards/{mine}/scenes", json={"job_id": job_ids[0], "x": 1}).status_code == 422
    empty = client.post(f"{API}/storyboards", json={"title": "Empty"}).json()["id"]
    nothing = client.post(f"{API}/storyboards/{empty}/exports", json={"format": "pdf"})
    assert nothing.status_code == 422 and "no scenes" in nothing.json()["error"]["message"]
    waiting = client.post(f"{API}/storyboards/{mine}/exports", json={"format": "zip"})
    assert waiting.status_code == 422 and "no image yet" in waiting.json()["error"]["message"]
    assert client.get(f"{API}/storyboards/{mine}/exports/{job_ids[0]}").status_code == 404  # not an export
    assert client.delete(f"{API}/storyboards/{theirs.id}").status_code == 404


def _manifest(panel_file: str = "panels/01.png", lora_file: str = "loras/abc.safetensors") -> dict:
    panel = {
        "number": 1,
        "title": "faces",
        "notes": "",
        "file": panel_file,
        "png_sha256": "0" * 64,
        "pixels_sha256": "0" * 64,
        "base": "toyworld",
        "model": "toyworld",
        "model_hash": "",
        "prompt": "x",
        "negative_prompt": "",
        "seed": 1,
        "first_seed": 1,
        "batch_index": 0,
        "batch_size": 1,
        "steps": 2,
        "cfg_scale": 7.0,
        "sampler": "Euler a",
        "width": 32,
        "height": 32,
        "region_blend": 0.1,
        "loras": [{"name": "k", "file": lora_file, "sha256": "0" * 64, "strength": 1.0}],
    }
    return {
        "format": "lorastudio-storyboard",
        "version": 1,
        "generator": "test",
        "title": "t",
        "description": "",
        "characters": [],
        "panels": [panel],
    }


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        (_manifest(panel_file="../outside.png"), "not a plain relative path"),
        (_manifest(lora_file="/etc/passwd"), "not a plain relative path"),
        (_manifest(lora_file="loras/../../x.safetensors"), "not a plain relative path"),
        ({"format": "something-else"}, "not a LoRA Studio storyboard manifest"),
        ("[1, 2", "not valid JSON"),
        (None, "is not a file"),
    ],
)
def test_regenerate_refuses_bad_manifests(run, tmp_path, manifest, says):
    path = tmp_path / "manifest.json"
    if manifest is not None:
        path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    result = run("storyboard", "regenerate", path, "--json")
    assert result.exit_code == 2 and says in json.loads(result.stdout)["error"]["message"], result.output
    human = run("storyboard", "regenerate", path)
    assert human.exit_code == 2 and "Traceback" not in human.output and says in " ".join(human.output.split())


def test_regenerate_refuses_a_link_out_of_the_folder(run, tmp_path):
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"not yours")
    folder = tmp_path / "export"
    (folder / "loras").mkdir(parents=True)
    (folder / "loras" / "abc.safetensors").symlink_to(outside)
    (folder / "manifest.json").write_text(json.dumps(_manifest()))
    result = run("storyboard", "regenerate", folder / "manifest.json", "--json")
    assert (
        result.exit_code == 2 and "leads outside the manifest's folder" in json.loads(result.stdout)["error"]["message"]
    )


def test_storyboard_routes_are_described_and_never_answer_500(client):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    spec = client.get("/openapi.json").json()
    ours = {p: m for p, m in spec["paths"].items() if p.startswith(f"{API}/storyboards")}
    assert len([op for m in ours.values() for op in m]) == 13
    for path, methods in ours.items():
        for method, op in methods.items():
            assert op.get("summary") and op["tags"] == ["Storyboards"], f"{method.upper()} {path}"
    for name in ("StoryboardOut", "SceneOut", "SceneLora", "RerollOut", "ReorderIn", "SceneUpdate", "ExportIn"):
        for field, prop in spec["components"]["schemas"][name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    client.post(f"{API}/storyboards", json={"title": "Something to find"})  # so ids 1.. reach real rows too
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path.startswith(f"{API}/storyboards")]
    for operation in operations:

        @given(operation.as_strategy())
        @settings(
            max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def call(case):
            response = case.call()
            assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text}"

        call()
