"""``rempart evidence`` and ``rempart notices``: signed evidence packages and takedown notices.

``rempart evidence CASE|SCAN... [-o ZIP]`` is the short form of ``rempart evidence build``;
``rempart evidence verify ZIP [--key PUB]`` exits 0 when the package is intact and signed by
the pinned key, 1 otherwise. Every item in a package or notice is a lead for human review,
not an identification.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from rempart._clikit import DatabaseUrl, err
from rempart._clikit import emit as _emit
from rempart._clikit import fail as _fail
from rempart._clikit import settings as _settings
from rempart.errors import RempartError


class _BuildByDefault(TyperGroup):
    """``rempart evidence X...`` means ``rempart evidence build X...`` unless X is a
    subcommand (``verify``, ``keygen``, ``build``) or ``--help``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


evidence_app = typer.Typer(
    cls=_BuildByDefault,
    help="Signed evidence packages: rempart evidence CASE|SCAN... [-o ZIP], "
    "rempart evidence verify ZIP, rempart evidence keygen.",
    no_args_is_help=True,
)
notices_app = typer.Typer(
    help="Takedown notices (TAKE IT DOWN, DSA Art. 16, Pharos, generic) and their tracking.",
    no_args_is_help=True,
)
Tenant = Annotated[
    str, typer.Option("--tenant", help="Tenant (platform) whose scans and notices these are.")
]


class Lang(StrEnum):
    en = "en"
    fr = "fr"


class Kind(StrEnum):
    takeitdown = "takeitdown"
    dsa = "dsa"
    pharos = "pharos"
    generic = "generic"


class Status(StrEnum):
    to_send = "to_send"
    sent = "sent"
    send_failed = "send_failed"
    not_removed = "not_removed"
    removed = "removed"
    withdrawn = "withdrawn"


def _store(settings: Any) -> Any:
    from rempart.store import Store

    return Store.open(settings.database_url)


# -- evidence -------------------------------------------------------------------------------


@evidence_app.command("build")
def evidence_build(
    refs: Annotated[
        list[str],
        typer.Argument(help="One case number, or one or more scan ids.", show_default=False),
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="ZIP file to write.")
    ] = None,
    lang: Annotated[Lang, typer.Option(help="Language of the report.")] = Lang.en,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Build a signed evidence package from a case (its alerts' scans) or from scans."""
    from rempart.cases.evidence import (
        EvidenceError,
        is_scan_id,
        package_for_case,
        package_for_scans,
    )
    from rempart.cases.signing import load_signing_key

    try:
        settings = _settings(database_url)
        key = load_signing_key(settings)
        scans = [r for r in refs if is_scan_id(r)]
        cases = [r for r in refs if not is_scan_id(r)]
        if cases and (scans or len(cases) > 1):
            raise EvidenceError(
                "give one case number, or scan ids, not both",
                code="mixed_refs",
                hint="scan ids are UUIDs; anything else is read as a case number",
            )
        with _store(settings) as store:
            if cases:
                package = package_for_case(store, cases[0], key, lang=lang.value)
            else:
                package = package_for_scans(store, tenant, scans, key, lang=lang.value)
    except RempartError as e:
        _fail(e)
    path = output or Path(package.filename)
    path.write_bytes(package.data)
    _emit(
        {
            "path": str(path),
            "items": len(package.manifest["items"]),
            "case": (package.manifest.get("case") or {}).get("number"),
            "key_fingerprint": package.manifest["issuer"]["key_fingerprint"],
            "bytes": len(package.data),
        }
    )
    err.print(
        f"wrote {path}: {len(package.manifest['items'])} item(s), signed by "
        f"{package.manifest['issuer']['key_fingerprint'][:16]}... -- every item is a lead for "
        "human review, not an identification",
        highlight=False,
    )


@evidence_app.command("verify")
def evidence_verify(
    package: Annotated[Path, typer.Argument(help="The evidence package (ZIP).")],
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The issuer's public key file (.pub): pins who signed it."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a package: exit 0 if intact and well signed (by --key when given), else 1."""
    from rempart.cases.evidence import MAX_PACKAGE_BYTES, verify
    from rempart.cases.signing import parse_public_key

    try:
        expected = parse_public_key(key.read_bytes()) if key is not None else None
        with package.open("rb") as f:
            data = f.read(MAX_PACKAGE_BYTES + 1)
    except RempartError as e:
        _fail(e)
    except OSError as e:
        err.print(f"[bold red]error:[/] cannot read {e.filename}: {e.strerror}", highlight=False)
        raise typer.Exit(2) from None
    result = verify(data, expected)
    if as_json:
        _emit(result.to_dict())
    elif result.ok:
        typer.echo(
            f"OK: {package} is intact and signed by key {result.key_fingerprint}"
            + (
                " (the pinned key)"
                if expected
                else " (not pinned: compare the fingerprint with the issuer's, or pass --key)"
            )
        )
        typer.echo(f"files: {', '.join(result.files)}")
    else:
        typer.echo(f"FAILED: {package} does not verify")
        for problem in result.problems:
            where = f" [{problem.file}]" if problem.file else ""
            typer.echo(f"  {problem.code}{where}: {problem.message}")
    raise typer.Exit(0 if result.ok else 1)


@evidence_app.command("keygen")
def evidence_keygen(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Private key file to write (default: evidence.signing_key_file, or "
            "evidence-signing.pem in your data directory).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
) -> None:
    """Make the Ed25519 key that signs evidence packages (and its .pub next to it)."""
    from rempart.cases.signing import generate_key, key_file, write_key

    try:
        path = out or key_file(_settings(None))
        key = generate_key()
        pub = write_key(key, path, overwrite=force)
    except RempartError as e:
        _fail(e)
    _emit({"private_key": str(path), "public_key": str(pub), "fingerprint": key.fingerprint})
    err.print(
        f"publish {pub} (fingerprint {key.fingerprint}); keep {path} private",
        highlight=False,
    )


# -- notices ----------------------------------------------------------------------------------


@notices_app.command("create")
def notices_create(
    kind: Annotated[Kind, typer.Option("--kind", help="Which notice.")],
    name: Annotated[str, typer.Option("--name", help="Who signs: her, or her representative.")],
    email: Annotated[str, typer.Option("--email", help="The signer's e-mail address.")],
    recipient: Annotated[
        str,
        typer.Option("--recipient", help="The platform's notice e-mail address or form URL."),
    ],
    case: Annotated[str | None, typer.Option("--case", help="The case number.")] = None,
    scan: Annotated[
        list[str] | None, typer.Option("--scan", help="A scan id (repeatable), instead of --case.")
    ] = None,
    lang: Annotated[Lang, typer.Option(help="Language of the notice.")] = Lang.en,
    platform: Annotated[
        str | None, typer.Option(help="The platform's name (default: one notice per platform).")
    ] = None,
    phone: Annotated[str | None, typer.Option(help="The signer's phone.")] = None,
    address: Annotated[str | None, typer.Option(help="The signer's postal address.")] = None,
    on_behalf_of: Annotated[
        str | None, typer.Option(help="Whom a representative acts for (e.g. initials).")
    ] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send/--no-send",
            help="E-mail it when the recipient is an address (otherwise it is to_send: send "
            "it by hand, then `rempart notices sent ID`).",
        ),
    ] = True,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Make a tracked notice (printed as JSON with its text) from a case or from scans."""
    from rempart.cases.notices import (
        NoticeError,
        Notices,
        Sender,
        check_case_number,
        items_for_case,
        items_for_scans,
    )

    try:
        if bool(case) == bool(scan):
            raise NoticeError("give --case or --scan (not both)", code="no_items")
        number = check_case_number(case) if case else None
        sender = Sender.from_dict(
            {
                "name": name,
                "email": email,
                "phone": phone,
                "address": address,
                "on_behalf_of": on_behalf_of,
            }
        )
        settings = _settings(database_url)
        with _store(settings) as store:
            if number:
                items = items_for_case(store, number)
            else:
                items = items_for_scans(store, tenant, scan or [])
            created = Notices(store, settings).create(
                tenant=tenant,
                kind=kind.value,
                lang=lang.value,
                sender=sender,
                recipient=recipient,
                items=items,
                platform=platform,
                case_number=number,
                send=send,
            )
    except RempartError as e:
        _fail(e)
    for c in created:
        _emit(c.to_dict())
        deadline = f", deadline {c.notice.deadline.isoformat()}" if c.notice.deadline else ""
        if c.emailed:
            how = "e-mailed"
        elif c.mail_error:
            retry = c.notice.next_reminder_at.isoformat() if c.notice.next_reminder_at else "-"
            how = f"e-mail failed ({c.mail_error}); retried at {retry}"
        else:
            how = f"to_send: send the text yourself, then `rempart notices sent {c.notice.id}`"
        err.print(f"notice {c.notice.id} to {c.notice.platform} ({how}{deadline})", highlight=False)


@notices_app.command("list")
def notices_list(
    due: Annotated[bool, typer.Option("--due", help="Only those whose reminder is due.")] = False,
    case: Annotated[str | None, typer.Option("--case")] = None,
    status: Annotated[Status | None, typer.Option("--status")] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Every tenant's notices (operator).")
    ] = False,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Tracked notices, one JSON object each; ``--due``: those with a message due now,
    including those waiting to be sent by hand (``to_send``)."""
    from rempart.cases.notices import check_case_number
    from rempart.store.notices import NoticeRepository

    try:
        case = check_case_number(case) if case else None
        settings = _settings(database_url)
        with _store(settings) as store:
            repo = NoticeRepository(store)
            who = None if all_tenants else tenant
            if due:
                notices = repo.due(datetime.now(UTC), who)
            else:
                notices = repo.list(who, case_number=case, status=status.value if status else None)
    except RempartError as e:
        _fail(e)
    for n in notices:
        if due and ((case and n.case_number != case) or (status and n.status != status.value)):
            continue
        _emit(n.to_dict())


@notices_app.command("show")
def notices_show(
    notice_id: Annotated[int, typer.Argument(help="The notice's id.")],
    database_url: DatabaseUrl = None,
) -> None:
    """A notice with the text of its latest message (what to send by hand when to_send)."""
    from rempart.cases.notices import Notices

    try:
        settings = _settings(database_url)
        with _store(settings) as store:
            notices = Notices(store, settings)
            notice = notices.repo.get(notice_id)
            message = notices.message(notice_id)
    except RempartError as e:
        _fail(e)
    _emit({**notice.to_dict(), "subject": message.subject, "text": message.text})


@notices_app.command("sent")
def notices_sent(
    ids: Annotated[list[int], typer.Argument(help="Notice ids whose message you sent by hand.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Mark notices' pending messages sent by hand: the next reminder is due
    evidence.renotice_hours later (never, for a Pharos sheet)."""
    _mark_notices(ids, "sent", database_url)


@notices_app.command("removed")
def notices_removed(
    ids: Annotated[list[int], typer.Argument(help="Notice ids whose content was removed.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Mark notices removed: their reminders stop."""
    _mark_notices(ids, "removed", database_url)


def _mark_notices(ids: list[int], status: str, database_url: str | None) -> None:
    from rempart.cases.notices import Notices

    try:
        settings = _settings(database_url)
        with _store(settings) as store:
            notices = Notices(store, settings)
            done = [notices.mark(i, status) for i in ids]
    except RempartError as e:
        _fail(e)
    for n in done:
        _emit(n.to_dict())


@notices_app.command("remind")
def notices_remind(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Notice ids (default: every due notice).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Remind the ids given even if not due yet.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Send due reminders and retries by e-mail; those that cannot be e-mailed (a form URL,
    no SMTP) become to_send, to be sent by hand (`rempart notices show ID`, then `sent`)."""
    from rempart.cases.notices import Notices, Reminder

    try:
        settings = _settings(database_url)
        with _store(settings) as store:
            notices = Notices(store, settings)
            sent: list[Reminder] = []
            if ids:
                for i in ids:
                    reminder = notices.remind(i, force=force)
                    if reminder is None:
                        err.print(
                            f"notice {i}: not due, closed, or to_send (send it by hand, then "
                            "`rempart notices sent`); use --force to send a reminder now"
                        )
                    else:
                        sent.append(reminder)
            else:
                sent = notices.remind_due()
    except RempartError as e:
        _fail(e)
    for r in sent:
        _emit(r.to_dict())
    err.print(f"{len(sent)} reminder(s)")
