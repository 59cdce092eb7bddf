"""Database URLs, engines and migrations.

Two databases, one behaviour:

* **SQLite** (the embedded default): WAL journal so readers never wait for the writer,
  foreign keys on, a busy timeout so a second process waits for the write lock instead of
  failing. Write transactions start with ``BEGIN IMMEDIATE``: taking the write lock up
  front avoids the "database is locked" error SQLite raises when a reader tries to become a
  writer after another process committed.
* **PostgreSQL** (production): psycopg 3. Write transactions take a transaction-scoped
  advisory lock, which serialises writers the way SQLite does. That is what keeps the change
  log's ``seq`` in commit order (see :class:`rempart.store.models.EntryChange`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from rempart.errors import ConfigError

#: Advisory-lock key for PostgreSQL write transactions ("REMP" in ASCII).
WRITE_LOCK_KEY: Final = 0x52454D50
#: A different key for migrations, so a worker migrating does not wait on itself.
MIGRATE_LOCK_KEY: Final = 0x52454D51
#: Execution option marking a connection whose transaction will write.
WRITE_OPTION: Final = "rempart_write"

T = TypeVar("T")

_URL_HINT = "use sqlite:///path/to/rempart.db or postgresql://user:password@host:5432/dbname"


def shown(url: URL) -> str:
    """The URL as safe to print (password hidden)."""
    return url.render_as_string(hide_password=True)


def parse_url(url: str | URL) -> URL:
    """Parse and normalise a database URL; raise :class:`ConfigError` when it is unusable.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3, the
    driver Rempart ships with).
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise ConfigError(f"cannot parse database URL {url!r}", hint=_URL_HINT) from None
    backend = parsed.get_backend_name()
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {backend!r} in {shown(parsed)}",
            hint=f"Rempart stores hashes in SQLite or PostgreSQL; {_URL_HINT}",
        )
    return parsed


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_store_engine(url: str | URL, *, busy_timeout_s: float = 30.0) -> Engine:
    """An engine configured for the store (pragmas, transaction style, driver)."""
    parsed = parse_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if _is_memory(parsed):
            # One shared connection, or every connection would see its own empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            assert parsed.database is not None
            path = Path(parsed.database).expanduser()
            parsed = parsed.set(database=str(path))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the directory for the SQLite database {path}: "
                    f"{exc.strerror or exc}",
                    hint="choose a writable location (REMPART_DATABASE_URL=sqlite:///path)",
                ) from None
            kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            # Fail in seconds, not after the operating system's TCP timeout (minutes), when
            # the server is down or firewalled.
            kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ArgumentError) as exc:
        raise ConfigError(
            f"cannot use database URL {shown(parsed)}: {exc}", hint=_URL_HINT
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms=int(busy_timeout_s * 1000))
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is always DEFERRED).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
            # Safe with WAL (a power cut can lose the last commits, never corrupt the file).
            cur.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB of page cache (the default is 2 MiB): bulk imports insert random hash
            # keys into B-tree indexes, and a small cache turns each insert into page I/O.
            cur.execute("PRAGMA cache_size=-65536")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on success, rolled back on error.

    Writers are serialised (see the module docstring); keep write transactions short, except
    imports, which are one transaction by design.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
            yield conn


@contextmanager
def driver_errors(conn: Connection) -> Iterator[None]:
    """Re-raise driver exceptions from raw-cursor work as SQLAlchemy's (IntegrityError, ...).

    The bulk paths use the driver's cursor directly for speed; callers still see the same
    exception types as from any other store call.
    """
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error, dialect=conn.dialect) from exc


def driver_errored(conn: Connection, items: Iterator[T]) -> Iterator[T]:
    """``items``, with driver exceptions raised while producing them translated."""
    with driver_errors(conn):
        yield from items


@contextmanager
def read_transaction(engine: Engine, *, snapshot: bool = False) -> Iterator[Connection]:
    """A connection in a read transaction; ``snapshot`` asks for one consistent view.

    SQLite read transactions are snapshots already (WAL); on PostgreSQL ``snapshot`` uses
    REPEATABLE READ so several queries see the same committed state.
    """
    with engine.connect() as conn:
        if snapshot and conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


# -- migrations -----------------------------------------------------------------------------

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
_migrate_guard = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this version of Rempart."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call from many processes at once."""
    from alembic import command
    from alembic.util.exc import CommandError

    head = head_revision()
    with _migrate_guard, engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Serialise migrations between processes; released at commit.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
            current = current_revision(conn)
            if current == head:
                return
            try:
                command.upgrade(alembic_config(conn), "head")
            except CommandError as exc:
                raise ConfigError(
                    f"cannot migrate the database from revision {current!r}: {exc}",
                    code="schema_mismatch",
                    hint="the database was made by a newer Rempart; upgrade Rempart",
                ) from None


def check_connection(engine: Engine) -> None:
    """Connect once, turning driver errors into a :class:`ConfigError` with a hint."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        url = engine.url
        if url.get_backend_name() == "sqlite":
            hint = "check that the directory is writable and the file is a SQLite database"
        else:
            hint = (
                f"is PostgreSQL running at {url.host or 'localhost'}:{url.port or 5432}, and do "
                "the user, password and database name exist? (REMPART_DATABASE_URL)"
            )
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"cannot connect to the database {shown(url)}: {reason}", hint=hint
        ) from None
