"""Alembic environment: runs on the connection db.upgrade() hands over (or the configured URL)."""

from alembic import context
from sqlalchemy import create_engine

from lorastudio.studio.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` run by hand with a URL
    connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
