"""library search index (SQLite FTS5 trigram)

Revision ID: 0002
Revises: 0001

A substring search over 10,000 LoRAs with lower() LIKE '%q%' reads every row (~10 ms a count); a trigram
index answers the same substrings in ~0.3 ms. External content: the index keeps no second copy of the
text, and triggers keep it in step with the loras table. SQLite only: other databases search with LIKE.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = "name, triggers_text, description"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        f"CREATE VIRTUAL TABLE loras_fts USING fts5({COLUMNS}, content='loras', content_rowid='id', tokenize='trigram')"
    )
    new = "new.name, new.triggers_text, new.description"
    old = "old.name, old.triggers_text, old.description"
    op.execute(
        f"CREATE TRIGGER loras_fts_insert AFTER INSERT ON loras BEGIN "
        f"INSERT INTO loras_fts(rowid, {COLUMNS}) VALUES (new.id, {new}); END"
    )
    op.execute(
        f"CREATE TRIGGER loras_fts_delete AFTER DELETE ON loras BEGIN "
        f"INSERT INTO loras_fts(loras_fts, rowid, {COLUMNS}) VALUES ('delete', old.id, {old}); END"
    )
    # Only the searched columns: the metric counters change on every generation and must not reindex.
    op.execute(
        f"CREATE TRIGGER loras_fts_update AFTER UPDATE OF {COLUMNS} ON loras BEGIN "
        f"INSERT INTO loras_fts(loras_fts, rowid, {COLUMNS}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO loras_fts(rowid, {COLUMNS}) VALUES (new.id, {new}); END"
    )
    op.execute("INSERT INTO loras_fts(loras_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS loras_fts_{trigger}")
    op.execute("DROP TABLE IF EXISTS loras_fts")
