"""The database: one engine per process (SQLite in WAL mode by default), sessions, and the schema kept
current by Alembic migrations (applied at start and by `lorastudio db upgrade`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from lorastudio.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITING = "lorastudio_sqlite_writing"
# session.info: a write transaction is open on this session (@writes or write_transaction); a write inside
# it joins it instead of committing (db/writes.py).
OPEN_WRITE = "lorastudio_open_write"
_READS = ("SELECT", "PRAGMA", "BEGIN", "COMMIT", "ROLLBACK", "RELEASE", "EXPLAIN")


def _reads_only(statement: str) -> bool:
    # SAVEPOINT counts as a write: committing the read part would end the savepoint too.
    return statement.lstrip()[:8].upper().startswith(_READS)


def make_engine(settings: Settings) -> Engine:
    """An engine for settings.db_url; SQLite gets WAL, foreign keys and a busy timeout (many processes)."""
    url = settings.db_url
    if url.startswith("sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
        # The pool may grow with demand: FastAPI runs sync routes on 40 threads, and a request gives its
        # connection back only after its response; a capped pool deadlocked at ~55 concurrent requests
        # (benchmarks/api_load.py). SQLite connections are cheap to open.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10, max_overflow=-1
        )

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:
            # isolation_level None: we issue BEGIN ourselves, so a claim can be BEGIN IMMEDIATE.
            conn.isolation_level = None
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            immediate = bool(conn.get_execution_options().get("sqlite_immediate"))
            conn.info[_WRITING] = immediate
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        @event.listens_for(engine, "before_cursor_execute")
        def _take_write_lock(conn, cursor, statement, _params, _context, _many) -> None:
            # A transaction that has read and then writes must upgrade its snapshot; in WAL mode SQLite
            # refuses at once ("database is locked", no busy wait) if any other process wrote since the
            # read, and workers write every heartbeat. So before the first write of a transaction we end
            # its read part and take the write lock (waiting up to the busy timeout): SQLite then behaves
            # like PostgreSQL's READ COMMITTED. A check that must hold until its write is a @writes service.
            if conn.info.get(_WRITING) or not conn.in_transaction() or _reads_only(statement):
                return
            conn.info[_WRITING] = True
            cursor.execute("COMMIT")
            cursor.execute("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (services return plain data anyway)."""
    return sessionmaker(engine, expire_on_commit=False)


def begin_write(session: Session) -> None:
    """End the session's read transaction (committing what it holds) and begin a write one: BEGIN
    IMMEDIATE on SQLite, so a check and the write that depends on it see the same database. Services do
    not call it: they are declared `@writes` (db/writes.py), which does."""
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_immediate": True})


@contextmanager
def write_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction takes SQLite's write lock at BEGIN (BEGIN IMMEDIATE), so two
    processes never both read and then race to write; elsewhere an ordinary transaction."""
    with factory() as session:
        session.connection(execution_options={"sqlite_immediate": True})
        session.info[OPEN_WRITE] = True  # services called inside join this transaction (db/writes.py)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.info.pop(OPEN_WRITE, None)


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(settings: Settings, engine: Engine | None = None) -> None:
    """Bring the schema to the newest migration (creating it on a fresh database)."""
    from alembic import command

    cfg = _alembic_config()
    cfg.set_main_option("sqlalchemy.url", settings.db_url.replace("%", "%%"))
    engine = engine or make_engine(settings)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_behind(session: Session) -> str | None:
    """None when the database answers and carries the newest migration; else what is wrong (for /readyz)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    try:
        current = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # noqa: BLE001 - any failure to answer means not ready; the words say which
        return f"the database does not answer: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    return (
        None if current == head else f"the schema is at {current}, the code needs {head}: run `lorastudio db upgrade`"
    )
