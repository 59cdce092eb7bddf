"""Alembic environment for Rempart's store.

Rempart runs migrations itself (``Store.open`` calls ``rempart.store.db.upgrade_to_head``),
passing an open connection in ``config.attributes["connection"]``. Run by hand, for example
``alembic -c src/rempart/store/alembic.ini revision --autogenerate -m "..."``, it connects to
``REMPART_DATABASE_URL`` (or the ini file's ``sqlalchemy.url``).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from rempart.store.db import create_store_engine
from rempart.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("REMPART_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set REMPART_DATABASE_URL (or sqlalchemy.url in alembic.ini)")
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
