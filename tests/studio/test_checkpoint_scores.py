"""Checkpoint scores in the studio: a toy-world training with evaluation on (the studio's default) registers the
chosen checkpoint as the library version with its scores, keeps the other scored checkpoints as alternatives,
and a switch makes a new version from an alternative's very file; alternatives expire and are purged, and only
the LoRA's owner may switch. Real worker, real SQLite, real HTTP through the app."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from safetensors import safe_open
from sqlalchemy import select, update

from lorastudio.errors import Forbidden, NotFound
from lorastudio.studio import accounts, library
from lorastudio.studio.db import LoraAlternative, LoraVersion, make_engine, now, session_factory
from lorastudio.studio.training import TrainingIn, estimate_training
from lorastudio.studio.workers import Worker
from tests.studio.conftest import john_dataset

# Small enough to run in seconds on two cores: the baseline and two checkpoints scored, all within the share.
SCORED = {
    "overrides": {
        "steps": 20,
        "checkpoint_every": 10,
        "eval_share": 1.0,
        "eval_prompts": 2,
        "eval_steps": 4,
        "sample_every": 0,
    }
}


def _session(settings):
    return session_factory(make_engine(settings))()


def _train(client, settings, refs, body=SCORED) -> tuple[dict, dict]:
    _, dataset = john_dataset(client, refs)
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset, **body})
    assert job.status_code == 201, job.text
    Worker(settings, name="in-process").drain()
    done = client.get(f"/api/v1/jobs/{job.json()['id']}").json()
    assert done["status"] == "succeeded", done
    return done, client.get(f"/api/v1/loras/{done['result']['lora_id']}").json()


@pytest.fixture(scope="module")
def scored(tmp_path_factory, john_refs):
    """One scored toy training, shared by the tests that only read what it made (a fresh studio each)."""
    from fastapi.testclient import TestClient

    from lorastudio.config import Settings
    from lorastudio.web.app import create_app

    home = tmp_path_factory.mktemp("scored") / "home"
    settings = Settings(home=home, device="cpu", lease_seconds=3, heartbeat_seconds=0.5)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        done, lora = _train(client, settings, john_refs)
        yield client, settings, done, lora


def test_the_studio_scores_checkpoints_by_default_and_counts_it_in_the_estimate(client, studio_settings, john_refs):
    _, dataset = john_dataset(client, john_refs)
    body = {"dataset_id": dataset, "overrides": {"steps": 2000, "checkpoint_every": 50}}
    on = client.post("/api/v1/trainings/estimate", json=body).json()
    off = client.post(
        "/api/v1/trainings/estimate", json=body | {"overrides": body["overrides"] | {"evaluate": False}}
    ).json()
    short = client.post("/api/v1/trainings/estimate", json=body | {"overrides": {"steps": 60}}).json()
    # 10% of 2000 steps' time fits several checkpoints' renders; 10% of 60 not even the baseline's and the end's.
    assert any(re.match(r"scoring the checkpoints \(\d+ evaluation renders at most\)", x) for x in on["breakdown"])
    assert not any("scoring" in line or "not scored" in line for line in off["breakdown"])
    assert any("checkpoints not scored" in line for line in short["breakdown"])
    # Bounded by the share: never more than eval_share of the training's time on top.
    assert off["minutes"][1] < on["minutes"][1] <= round(off["minutes"][1] * 1.1 + 0.1, 1)
    job = client.post("/api/v1/trainings", json=body | {"overrides": body["overrides"] | {"steps": 8}}).json()
    assert job["request"]["plan"]["evaluate"] is True and job["request"]["plan"]["eval_share"] == 0.1
    refused = client.post("/api/v1/trainings", json=body | {"overrides": {"eval_share": 0}})
    assert refused.status_code == 422 and "eval_share" in refused.text
    with _session(studio_settings) as session:
        data = TrainingIn(dataset_id=dataset, overrides={"evaluate": False, "steps": 8})
        assert "scoring" not in " ".join(
            estimate_training(
                session, studio_settings, owner_id=client.app.state.studio.local_user, data=data
            ).breakdown
        )


def test_the_chosen_checkpoint_is_the_version_with_its_scores_and_the_others_are_alternatives(scored):
    client, settings, done, lora = scored
    evaluation = done["result"]["evaluation"]
    steps = [s["step"] for s in evaluation["scores"]]
    assert steps == [0, 10, 20]  # the baseline first, then every checkpoint
    assert evaluation["choice"]["by"] == "toy detectors" and evaluation["note"]  # no scorer model: said, not silent
    assert all(s["hit_rate"] is not None for s in evaluation["scores"])
    chosen = evaluation["choice"]["step"]
    (version,) = lora["versions"]
    assert version["step"] == chosen and version["scores"]["chosen"] is True
    assert version["scores"]["score"]["step"] == chosen and version["scores"]["by"] == "toy detectors"
    assert version["scores"]["message"] == evaluation["choice"]["message"]
    # The job's progress kept every scored checkpoint and its renders (blob keys), in step order.
    progress = done["progress"]
    assert [s["step"] for s in progress["scores"]] == steps
    assert [r[0] for r in progress["eval_renders"]] == steps and all(len(r[1]) == 2 for r in progress["eval_renders"])
    render = client.get(f"/api/v1/jobs/{done['id']}/renders/{chosen}/0")
    assert render.status_code == 200 and render.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/v1/jobs/{done['id']}/renders/{chosen}/9").status_code == 404
    assert client.get(f"/api/v1/jobs/{done['id']}/renders/3/0").status_code == 404  # no checkpoint at step 3

    alternatives = lora["alternatives"]
    assert sorted(a["step"] for a in alternatives) == sorted(set(steps) - {0, chosen})
    for a in alternatives:
        assert a["scores"]["chosen"] is False and a["scores"]["score"]["step"] == a["step"]
    expiry = alternatives[0]["expires_at"]
    days = (now() - timedelta(days=settings.alternatives_days)).isoformat()
    assert expiry > now().isoformat() and expiry[:10] > days[:10]
    # The file is the chosen checkpoint's: its metadata says so.
    path = settings.home / "v1.safetensors"
    path.write_bytes(client.get(f"/api/v1/loras/{lora['id']}/file").content)
    with safe_open(str(path), "pt") as f:
        assert f'"chosen_step": {chosen}' in f.metadata()["lorastudio_evaluation"]


def test_only_the_owner_switches_and_no_days_keeps_no_alternatives(scored):
    client, settings, done, lora = scored
    store, me = client.app.state.studio.store, client.app.state.studio.local_user
    alt_id = lora["alternatives"][0]["id"]
    with _session(settings) as session:
        stranger = accounts.add_user(session, name="mallory", password="correct horse battery", starting_credits=0)
    with _session(settings) as session, pytest.raises(NotFound):  # not hers: not even found
        library.switch_version(session, store, owner_id=stranger.id, lora_id=lora["id"], alternative_id=alt_id)
    with _session(settings) as session:
        library.set_public(session, owner_id=me, lora_id=lora["id"], public=True)
    with _session(settings) as session, pytest.raises(Forbidden, match="only its owner"):  # shared: read-only
        library.switch_version(session, store, owner_id=stranger.id, lora_id=lora["id"], alternative_id=alt_id)
    with _session(settings) as session:
        library.set_public(session, owner_id=me, lora_id=lora["id"], public=False)
        assert len(session.scalars(select(LoraVersion).where(LoraVersion.lora_id == lora["id"])).all()) == 1
        # alternatives_days 0: a run keeps none.
        path = settings.home / "v1.safetensors"
        path.write_bytes(client.get(f"/api/v1/loras/{lora['id']}/file").content)
        scores = library.VersionScores.model_validate(lora["versions"][0]["scores"])
        before = len(session.scalars(select(LoraAlternative)).all())
        kept = library.add_alternatives(session, store, lora_id=lora["id"], alternatives=[(path, scores)], days=0)
        assert kept == 0 and len(session.scalars(select(LoraAlternative)).all()) == before


def test_switching_makes_a_new_version_from_the_alternative_s_own_file(scored):
    client, settings, done, lora = scored
    alt = lora["alternatives"][0]
    with _session(settings) as session:
        blob = session.get(LoraAlternative, alt["id"]).blob
    store_bytes = (settings.home / "blobs").rglob(blob)
    expected = next(store_bytes).read_bytes()
    switched = client.post(f"/api/v1/loras/{lora['id']}/alternatives/{alt['id']}/switch")
    assert switched.status_code == 200, switched.text
    out = switched.json()
    v1, v2 = out["versions"]
    assert v2["version"] == 2 and v2["step"] == alt["step"]
    assert v2["scores"]["chosen"] is False and "switched by you" in v2["scores"]["message"]
    assert v2["scores"]["score"] == alt["scores"]["score"]
    assert client.get(f"/api/v1/loras/{lora['id']}/file").content == expected  # the same bytes, the newest version
    # Now the alternatives stand by v2: the one switched from among them (to switch back), not the one switched to.
    steps = {a["step"] for a in out["alternatives"]}
    assert v1["step"] in steps and alt["step"] not in steps
    back = next(a for a in out["alternatives"] if a["step"] == v1["step"])
    assert back["scores"]["chosen"] is True
    again = client.post(f"/api/v1/loras/{lora['id']}/alternatives/{alt['id']}/switch")  # used up: it is v2 now
    assert again.status_code == 404 and "alternative" in again.json()["error"]["message"]
    assert client.post(f"/api/v1/loras/{lora['id']}/alternatives/99999/switch").status_code == 404


def test_expired_alternatives_are_purged_with_their_files_unless_a_version_shares_them(scored):
    client, settings, done, lora = scored
    store = client.app.state.studio.store
    with _session(settings) as session:
        # After the switch the one alternative left is v1's own file; one more, a file of its own, kept beside it.
        other = settings.home / "other.safetensors"
        other.write_bytes(b"another checkpoint's bytes")
        scores = library.VersionScores.model_validate(lora["versions"][0]["scores"])
        library.add_alternatives(session, store, lora_id=lora["id"], alternatives=[(other, scores)], days=1)
        rows = session.scalars(select(LoraAlternative).where(LoraAlternative.lora_id == lora["id"])).all()
        versions = set(session.scalars(select(LoraVersion.blob).where(LoraVersion.lora_id == lora["id"])))
        shared = {r.blob for r in rows} & versions
        alone = {r.blob for r in rows} - versions
        assert alone and all(store.exists(b) for b in alone)
        session.execute(update(LoraAlternative).values(expires_at=now() - timedelta(seconds=1)))
        session.commit()
        assert client.get(f"/api/v1/loras/{lora['id']}").json()["alternatives"] == []  # expired: not offered
        assert library.purge_deleted(session, store) >= len(rows)
        assert session.scalars(select(LoraAlternative)).all() == []
    assert not any(store.exists(b) for b in alone)
    assert all(store.exists(b) for b in shared | versions)  # a version's file stays
