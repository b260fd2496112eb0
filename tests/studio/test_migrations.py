"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL (a column added to
a model without its migration fails here, not on a user's upgrade)."""

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
