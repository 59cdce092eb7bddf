"""``rempart users``: accounts for the moderator web UI (create, list, disable)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from rempart._clikit import DatabaseUrl, settings
from rempart._clikit import fail as _fail

users_app = typer.Typer(
    help="Moderator and admin accounts for the web UI at /ui.", no_args_is_help=True
)


def _repo(database_url: str | None) -> Any:
    from rempart.store import Store
    from rempart.store.users import UserRepository

    store = Store.open(settings(database_url).database_url)
    return store, UserRepository(store)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


@users_app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="Login name (letters, digits, - _ .).")],
    role: Annotated[str, typer.Option(help="moderator or admin.")] = "moderator",
    tenant: Annotated[str, typer.Option(help="Tenant whose queue and banks they see.")] = (
        "default"
    ),
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user (the password is asked for, hidden, unless --password-stdin)."""
    from rempart.errors import RempartError
    from rempart.store.audit import AuditLog

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        store, repo = _repo(database_url)
        user = repo.create(username, password, tenant=tenant, role=role)
        AuditLog(store).append(
            tenant=tenant,
            actor=_actor(),
            action="user.create",
            target=username,
            details={"role": role},
        )
    except RempartError as e:
        _fail(e)
    typer.echo(json.dumps(user.to_dict()))
    typer.echo(f"log in at /ui/login as {username!r}", err=True)


@users_app.command("list")
def list_users(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's users.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List users (never their password hashes), one JSON object per line."""
    from rempart.errors import RempartError

    try:
        _, repo = _repo(database_url)
        users = repo.list(tenant)
    except RempartError as e:
        _fail(e)
    for u in users:
        typer.echo(json.dumps(u.to_dict()))


@users_app.command("disable")
def disable(
    username: str,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the account again.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Disable a user (ending their sessions at once), or --enable them again."""
    from rempart.errors import RempartError
    from rempart.store.audit import AuditLog

    try:
        store, repo = _repo(database_url)
        user = repo.set_disabled(username, not enable)
        AuditLog(store).append(
            tenant=user.tenant,
            actor=_actor(),
            action="user.enable" if enable else "user.disable",
            target=username,
        )
    except RempartError as e:
        _fail(e)
    typer.echo(json.dumps(user.to_dict()))
