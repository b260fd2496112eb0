"""typed job payloads: the resume checkpoint in a column of its own, requests in their typed shapes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 16:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_JOBS = sa.table(
    "jobs",
    sa.column("id", sa.Integer),
    sa.column("type", sa.String),
    sa.column("request", sa.JSON),
    sa.column("progress", sa.JSON),
    sa.column("checkpoint", sa.JSON),
)
_LORA = ("strength", "region", "name", "description", "lora_id", "version")
_ASKED = ("dataset_id", "preset", "base", "description", "overrides")  # what a TrainingIn held


def _generation(conn, old: dict) -> dict:
    """A scene's LoRA entries as the engine's selections, each with its library id, name and version (rows
    from before those were stored get them from the library), and prompt tags off as the studio runs them."""
    loras = []
    for i, x in enumerate(old.get("loras") or []):
        entry = {"lora": x["blob"]} | {k: x.get(k) for k in _LORA}
        ids = old.get("lora_ids") or []
        if entry["lora_id"] is None and i < len(ids):
            entry["lora_id"] = ids[i]
        if entry["lora_id"] is not None and entry["name"] is None:
            entry["name"] = conn.execute(
                sa.text("SELECT name FROM loras WHERE id = :i"), {"i": entry["lora_id"]}
            ).scalar()
        if entry["lora_id"] is not None and entry["version"] is None:
            entry["version"] = conn.execute(
                sa.text("SELECT version FROM lora_versions WHERE lora_id = :i AND blob = :b"),
                {"i": entry["lora_id"], "b": x["blob"]},
            ).scalar()
        loras.append(entry)
    kept = {k: v for k, v in old.items() if k not in ("lora_ids", "loras")}
    return kept | {"type": "generation", "loras": loras, "prompt_tags": False}


def _training(old: dict) -> dict:
    """What an older training asked for, kept as asked: the worker plans it (as a submit does now) when it
    runs, with the seed its submit picked."""
    asked = {k: old.get(k) for k in _ASKED} | {"seed": old.get("seed")}
    rate = old.get("credits_per_gpu_minute")
    return {
        "type": "training",
        "dataset_id": old["dataset_id"],
        "plan": {"asked": asked},
        "estimate": old["estimate"],
        "credits_per_gpu_minute": 1 if rate is None else rate,
    }


def _request(conn, kind: str, old: dict) -> dict:
    """An older row's request in its typed shape (jobs/payloads.py)."""
    if kind == "generation" and "type" not in old:
        return _generation(conn, old)
    if kind == "training" and "plan" not in old:
        return _training(old)
    return {"type": kind} | old


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
    conn = op.get_bind()
    for row in conn.execute(sa.select(_JOBS.c.id, _JOBS.c.type, _JOBS.c.request, _JOBS.c.progress)).all():
        progress = dict(row.progress or {})
        checkpoint = progress.pop("checkpoint", None)
        conn.execute(
            _JOBS.update()
            .where(_JOBS.c.id == row.id)
            .values(request=_request(conn, row.type, dict(row.request or {})), progress=progress, checkpoint=checkpoint)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("checkpoint")
