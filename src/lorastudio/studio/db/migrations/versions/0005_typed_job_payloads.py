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
_PLAN = ("kind", "trigger", "preset", "base", "description", "seed")


def _request(kind: str, old: dict) -> dict:
    """An older row's request in its typed shape (jobs/payloads.py)."""
    if kind == "generation" and "lora_ids" in old:
        loras = [{"lora": x["blob"]} | {k: x.get(k) for k in _LORA} for x in old.get("loras", [])]
        return {k: v for k, v in old.items() if k != "lora_ids"} | {"type": "generation", "loras": loras}
    if kind == "training" and "plan" not in old:
        # Only what was asked is known here; a pending one is planned from it when it runs.
        plan = {k: old.get(k) for k in _PLAN if old.get(k) is not None} | (old.get("overrides") or {})
        return {
            "type": "training",
            "dataset_id": old["dataset_id"],
            "plan": plan,
            "estimate": old["estimate"],
            "credits_per_gpu_minute": old.get("credits_per_gpu_minute") or 1,
        }
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
            .values(request=_request(row.type, dict(row.request or {})), progress=progress, checkpoint=checkpoint)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("checkpoint")
