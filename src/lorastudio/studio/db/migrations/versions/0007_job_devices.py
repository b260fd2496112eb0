"""job devices: how many devices a job runs on; a worker's devices and the jobs it runs at once

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # Every job before this ran on one device.
        batch_op.add_column(sa.Column("devices", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("devices", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("current_job_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("current_job_ids")
        batch_op.drop_column("devices")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("devices")
