"""What every ``rempart`` command group shares: the error console, JSON-lines output, the
``--database-url`` option and its global form (``rempart --database-url URL <command>``).

Kept apart from :mod:`rempart.cli` so that command groups living beside their concept
(``rempart.cases.cli``, ``rempart.cases.evidence_cli``, ``rempart.service.ui.users_cli``)
use the same pieces without importing the whole CLI (which imports them).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from rempart.errors import RempartError

if TYPE_CHECKING:
    from rempart.settings import Settings

#: Progress, tables and errors go to stderr; results to stdout.
err = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="REMPART_DATABASE_URL",
        help="SQLAlchemy URL of the store (default: a SQLite file in your data directory).",
        show_default=False,
    ),
]


class _State:
    #: ``rempart --database-url URL``: the default for every command of this run.
    database_url: str | None = None


state = _State()


def settings(database_url: str | None = None) -> Settings:
    """Settings with the command's ``--database-url``, else the global one, else the
    environment and config file."""
    from rempart.settings import load_settings

    return load_settings(database_url=database_url or state.database_url)


def fail(error: RempartError) -> NoReturn:
    """Print ``error`` for people (message, hint, bad rows) and exit with status 2."""
    err.print(f"[bold red]error:[/] {error.message}", highlight=False)
    if error.hint:
        err.print(f"[dim]hint:[/] {error.hint}", highlight=False)
    extra = getattr(error, "errors", None)
    if extra:
        for row in extra[:50]:
            err.print(f"  line {row.get('line')}: {row.get('message')}", highlight=False)
        if len(extra) > 50:
            err.print(f"  ... and {len(extra) - 50} more", highlight=False)
    raise typer.Exit(2)


def emit(obj: dict[str, Any]) -> None:
    """One JSON object on its own line on stdout, flushed (results can be piped)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
