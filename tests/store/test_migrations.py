"""Schema and migrations: a fresh database reaches head, and the models match it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from rempart.errors import ConfigError
from rempart.store import Store
from rempart.store import db as store_db
from rempart.store.models import Base


def test_fresh_database_is_at_head(store: Store) -> None:
    with store.engine.connect() as conn:
        assert store_db.current_revision(conn) == store_db.head_revision()
        tables = set(inspect(conn).get_table_names())
    assert {"banks", "entries", "entry_changes", "alembic_version"} <= tables


def test_models_match_the_migrations(store: Store) -> None:
    # What `alembic check` does: autogenerate against the migrated schema finds nothing.
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_open_is_idempotent_and_cwd_independent(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Store.open(db_url) as first:
        first.create_bank("b")
    with Store.open(db_url) as second:
        assert [b.name for b in second.list_banks()] == ["b"]


def test_downgrade_and_upgrade_again(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(store_db.alembic_config(conn), "base")
    with store.engine.connect() as conn:
        assert store_db.current_revision(conn) is None
        assert "banks" not in inspect(conn).get_table_names()
    store_db.upgrade_to_head(store.engine)
    assert store.create_bank("back").name == "back"


def test_database_newer_than_code_is_explained(db_url: str) -> None:
    with Store.open(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(ConfigError) as info:
        Store.open(db_url)
    assert info.value.code == "schema_mismatch"


def test_sqlite_settings_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "rempart.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert path.exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_in_memory_sqlite() -> None:
    with Store.open("sqlite://") as store:
        store.create_bank("m")
        assert [b.name for b in store.list_banks()] == ["m"]


@pytest.mark.parametrize(
    "url", ["not a url", "mysql://root@localhost/db", "postgresql+nodriver://x@localhost/db"]
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Store.open(url)
    assert info.value.hint


def test_unreachable_postgres_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Store.open("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert "is PostgreSQL running" in (info.value.hint or "")
    assert "secret" not in str(info.value)


def test_unwritable_sqlite_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError):
        Store.open(f"sqlite:///{blocker / 'sub' / 'x.db'}")
    not_db = tmp_path / "junk.db"
    not_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError):
        Store.open(f"sqlite:///{not_db}")


def test_postgres_scheme_aliases() -> None:
    for url in ("postgres://u@h/d", "postgresql://u@h/d", "postgresql+psycopg2://u@h/d"):
        assert store_db.parse_url(url).drivername == "postgresql+psycopg"
    assert store_db.parse_url("postgresql+psycopg://u@h/d").drivername == "postgresql+psycopg"
