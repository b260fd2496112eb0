"""checkpoint scores: a version's step and scores, the other checkpoints kept as alternatives; who wrote a
caption; a generated image's identity scores

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 21:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lora_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("scores", sa.JSON(), nullable=True))
    op.create_table(
        "lora_alternatives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lora_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lora_id"], ["loras.id"]),
        sa.ForeignKeyConstraint(["version_id"], ["lora_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lora_alternatives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lora_alternatives_lora_id"), ["lora_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lora_alternatives_version_id"), ["version_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lora_alternatives_expires_at"), ["expires_at"], unique=False)
    with op.batch_alter_table("dataset_images", schema=None) as batch_op:
        # Captions written before the captioner existed were the user's (typed or uploaded).
        batch_op.add_column(sa.Column("caption_source", sa.String(length=8), nullable=False, server_default="user"))
    # ...except the ones the dataset check made up for a picture without a caption ("trigger, class words"): those
    # were never the user's, and Auto-caption may replace them. The kinds' class words as they were at 0006.
    for kind, words in _CLASS_WORDS.items():
        op.execute(
            sa.text(
                "UPDATE dataset_images SET caption_source = 'auto' WHERE caption = (SELECT d.trigger || ', ' || "
                ":words FROM datasets d WHERE d.id = dataset_images.dataset_id AND d.kind = :kind)"
            ).bindparams(words=words, kind=kind)
        )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity", sa.JSON(), nullable=True))


_CLASS_WORDS = {
    "character": "a person",
    "fighting_style": "martial arts fighting technique",
    "pose": "action pose",
    "visual_style": "cinematic visual style",
}


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("identity")
    with op.batch_alter_table("dataset_images", schema=None) as batch_op:
        batch_op.drop_column("caption_source")
    with op.batch_alter_table("lora_alternatives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lora_alternatives_expires_at"))
        batch_op.drop_index(batch_op.f("ix_lora_alternatives_version_id"))
        batch_op.drop_index(batch_op.f("ix_lora_alternatives_lora_id"))
    op.drop_table("lora_alternatives")
    with op.batch_alter_table("lora_versions", schema=None) as batch_op:
        batch_op.drop_column("scores")
        batch_op.drop_column("step")
