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


def test_0005_gives_older_jobs_their_typed_shapes_and_the_checkpoint_its_column(studio_settings):
    """A database from before typed payloads: its jobs read as the typed models, a scene's LoRAs as the engine's
    selections (the blob key, library id and name kept), and a training's checkpoint leaves the public progress."""
    from alembic import command
    from sqlalchemy import text

    from lorastudio.studio import jobs
    from lorastudio.studio.db import Job, session_factory, upgrade
    from lorastudio.studio.db.engine import _alembic_config

    engine = make_engine(studio_settings)
    cfg = _alembic_config()
    cfg.set_main_option("sqlalchemy.url", studio_settings.db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        conn.execute(text("INSERT INTO users (id, name, created_at, disabled) VALUES (1, 'local', '2026-01-01', 0)"))
        estimate = {
            "minutes": [1, 2],
            "credits": [3, 5],
            "dollars": 0.1,
            "images": 8,
            "steps": 10,
            "resolution": 32,
            "breakdown": [],
        }
        old = {
            1: (
                "generation",
                {
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
            2: (
                "training",
                {
                    "dataset_id": 3,
                    "preset": "quick",
                    "base": "tiny-sd15",
                    "description": None,
                    "overrides": {"steps": 10},
                    "kind": "character",
                    "trigger": "johnhero",
                    "estimate": estimate,
                    "seed": 99,
                    "credits_per_gpu_minute": 2,
                },
                {"step": 6, "checkpoint": {"step": 5, "blob": "c" * 64}},
            ),
        }
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
        scene, training = session.get(Job, 1), session.get(Job, 2)
        (lora,) = jobs.request_of(scene).loras
        assert (lora.lora, lora.lora_id, lora.version, lora.name, lora.region) == ("a" * 64, 4, 2, "johnhero", "left")
        plan = jobs.request_of(training).plan
        assert plan["seed"] == 99 and plan["steps"] == 10 and plan["trigger"] == "johnhero"
        assert training.checkpoint == {"step": 5, "blob": "c" * 64} and "checkpoint" not in training.progress
        assert jobs.progress_of(training).step == 6
