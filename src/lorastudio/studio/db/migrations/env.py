"""Alembic environment: runs on the connection db.upgrade() hands over (or the configured URL)."""

from alembic import context
from sqlalchemy import create_engine

from lorastudio.studio.db.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` run by hand with a URL
    connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave the search index (0002, raw SQL: FTS5 and its shadow tables) out of autogenerate."""
    return not (type_ == "table" and name.startswith("loras_fts"))


context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, include_object=include_object
)
with context.begin_transaction():
    context.run_migrations()
