"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL (a column added to
a model without its migration fails here, not on a user's upgrade)."""

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lorastudio.studio import bootstrap
from lorastudio.studio.db import Base, make_engine
from tests.studio.conftest import BOTH_DATABASES


@BOTH_DATABASES
def test_migrations_match_the_models(studio_settings):
    bootstrap.prepare(studio_settings)
    with make_engine(studio_settings).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # SQLite's full-text index of the library is made by a migration and has no model, on purpose.
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("loras_fts"))] == []


def test_0005_gives_older_jobs_their_typed_shapes_and_the_checkpoint_its_column(studio_settings, tmp_path):
    """A database from before typed payloads, its rows in the shapes the older code wrote: the jobs read as the
    typed models, a scene's LoRAs as the engine's selections with their library id, name and version (looked up
    for the oldest rows) and prompt tags off, a queued training is planned as a submit plans it now with the seed
    its submit picked, and a training's checkpoint leaves the public progress for its column."""
    from alembic import command
    from sqlalchemy import insert, text

    from lorastudio.studio import jobs
    from lorastudio.studio.db import Dataset, Job, Lora, LoraVersion, session_factory, upgrade
    from lorastudio.studio.db.engine import _alembic_config
    from lorastudio.studio.training import TrainingSettings
    from lorastudio.studio.training.service import _config

    engine = make_engine(studio_settings)
    cfg = _alembic_config()
    cfg.set_main_option("sqlalchemy.url", studio_settings.db_url)
    estimate = {
        "minutes": [1, 2],
        "credits": [3, 5],
        "dollars": 0.1,
        "images": 8,
        "steps": 10,
        "resolution": 32,
        "breakdown": [],
    }
    scene = {
        "prompt": "johnhero",
        "negative_prompt": "",
        "base": "tiny-sd15",
        "seed": 7,
        "n": 1,
        "steps": 2,
        "cfg_scale": 7.0,
        "width": None,
        "height": None,
        "sampler": "Euler",
        "add_triggers": True,
    }
    old = {
        # as issue 21's code wrote a scene: each LoRA with its library name, id and version, and `lora_ids` beside
        1: (
            "generation",
            scene
            | {
                "lora_ids": [4],
                "loras": [
                    {
                        "blob": "a" * 64,
                        "strength": 0.8,
                        "region": "left",
                        "name": "johnhero",
                        "description": "red gi",
                        "lora_id": 4,
                        "version": 2,
                    }
                ],
            },
            {},
        ),
        # as the code before it wrote one: the file and its strength only, the library ids in a list beside
        2: (
            "generation",
            scene | {"lora_ids": [4], "loras": [{"blob": "b" * 64, "strength": 0.6, "region": None}]},
            {},
        ),
        # a training as TrainingIn dumped it (every override present, most null), with the seed its submit picked
        3: (
            "training",
            {
                "dataset_id": 3,
                "preset": None,
                "base": "tiny-sd15",
                "description": None,
                "overrides": TrainingSettings(steps=10).model_dump(),
                "kind": "character",
                "trigger": "johnhero",
                "estimate": estimate,
                "seed": 99,
                "credits_per_gpu_minute": 0,
            },
            {"step": 6, "checkpoint": {"step": 5, "blob": "c" * 64}},
        ),
    }
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        conn.execute(text("INSERT INTO users (id, name, created_at, disabled) VALUES (1, 'local', '2026-01-01', 0)"))
        conn.execute(insert(Lora.__table__).values(id=4, owner_id=1, name="Action Hero John", kind="character"))
        conn.execute(insert(LoraVersion.__table__).values(lora_id=4, version=3, blob="b" * 64, size=1))
        for job_id, (kind, request, progress) in old.items():
            conn.execute(
                text(
                    "INSERT INTO jobs (id, owner_id, type, status, request, attempts, cancel_requested, progress, "
                    "created_at) VALUES (:id, 1, :type, 'pending', :request, 0, 0, :progress, '2026-01-01')"
                ),
                {"id": job_id, "type": kind, "request": json.dumps(request), "progress": json.dumps(progress)},
            )
    upgrade(studio_settings, engine)
    with session_factory(engine)() as session:
        newer, older, training = (session.get(Job, i) for i in (1, 2, 3))
        (lora,) = jobs.request_of(newer).loras
        assert (lora.lora, lora.lora_id, lora.version, lora.name, lora.region) == ("a" * 64, 4, 2, "johnhero", "left")
        (lora,) = jobs.request_of(older).loras
        assert (lora.lora, lora.lora_id, lora.version, lora.name) == ("b" * 64, 4, 3, "Action Hero John")
        assert jobs.request_of(older).prompt_tags is False and jobs.request_of(newer).prompt_tags is False
        request = jobs.request_of(training)
        assert request.credits_per_gpu_minute == 0  # the price quoted, even a free one
        assert training.checkpoint == {"step": 5, "blob": "c" * 64} and "checkpoint" not in training.progress
        assert jobs.progress_of(training).step == 6
    run = _config(studio_settings, request, Dataset(kind="character", trigger="johnhero"), tmp_path, resume=True)
    assert (run.seed, run.steps, run.trigger, run.base, run.resume) == (99, 10, "johnhero", "tiny-sd15", True)
    assert run.checkpoint_every == 50 and run.output == tmp_path / "lora.safetensors"  # as a submit plans it now
