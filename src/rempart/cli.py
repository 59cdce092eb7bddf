"""The ``rempart`` command: a thin door into the library.

Results go to stdout as JSON lines (one object per file) so they can be piped; progress bars,
tables and errors go to stderr. Errors are printed for people, without a traceback (set
``REMPART_DEBUG=1`` to see one).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rempart import __version__
from rempart._clikit import DatabaseUrl, err
from rempart._clikit import emit as _emit
from rempart._clikit import fail as _fail
from rempart._clikit import settings as _settings
from rempart._clikit import state as _state
from rempart.cases.cli import cases_app as _cases_app
from rempart.cases.evidence_cli import evidence_app as _evidence_app
from rempart.cases.evidence_cli import notices_app as _notices_app
from rempart.errors import RempartError
from rempart.media.files import iter_files
from rempart.service.ui.users_cli import users_app as _users_app

app = typer.Typer(
    name="rempart",
    help="Hash, match, detect, find, take down: a defence against deepfake and NCII imagery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bank_app = typer.Typer(help="Create, fill and inspect hash banks.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
keys_app = typer.Typer(help="API keys for the HTTP service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
faces_app = typer.Typer(
    help="Face templates of people who enrolled for protection (encrypted at rest).",
    no_args_is_help=True,
)
app.add_typer(faces_app, name="faces")
app.add_typer(_cases_app, name="cases")
app.add_typer(_evidence_app, name="evidence")
app.add_typer(_notices_app, name="notices")
app.add_typer(_users_app, name="users")

Tenant = Annotated[str, typer.Option("--tenant", help="Tenant that owns the banks.")]


class HashOutput(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class BankKind(StrEnum):
    block = "block"
    allow = "allow"


class ListFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    hma = "hma"


def _store(database_url: str | None) -> Any:
    from rempart.store import Store

    return Store.open(_settings(database_url).database_url)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _each_file(
    paths: list[Path],
    verb: tuple[str, str],
    work: Callable[[Path], dict[str, Any]],
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run ``work`` on every file under ``paths`` with a progress bar, printing one result
    per file; a file that fails is reported and the run goes on (exit status 1 at the end)."""
    files = list(iter_files(paths))
    failed = 0
    with _progress() as progress:
        task = progress.add_task(verb[0], total=len(files))
        for path in files:
            try:
                obj = {"path": str(path), **work(path)}
            except (RempartError, OSError) as e:
                obj = _error_dict(path, e)
                failed += 1
            (emit or _emit)(obj)
            progress.advance(task)
    if failed:
        err.print(f"{failed} of {len(files)} files could not be {verb[1]} (see their `error`).")
        raise typer.Exit(1)


def _error_dict(path: Path, error: RempartError | OSError) -> dict[str, Any]:
    if isinstance(error, RempartError):
        return {"path": str(path), "error": error.to_dict()}
    code = "not_found" if isinstance(error, FileNotFoundError) else "unreadable"
    return {"path": str(path), "error": {"code": code, "message": f"{path}: {error.strerror}"}}


@app.callback(invoke_without_command=True)
def _main(
    database_url: DatabaseUrl = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    """Rempart's command line. Every command takes --database-url (or REMPART_DATABASE_URL)."""
    if version:
        typer.echo(f"rempart {__version__}")
        raise typer.Exit()
    _state.database_url = database_url


# -- hash ----------------------------------------------------------------------------------


_CSV_FIELDS = [
    "path",
    "kind",
    "pdq",
    "pdq_quality",
    "md5",
    "sha256",
    "dihedral",
    "frames",
    "error_code",
    "error_message",
]


def _csv_row(obj: dict[str, Any]) -> dict[str, Any]:
    row = {k: obj.get(k, "") for k in ("path", "kind", "pdq", "pdq_quality", "md5", "sha256")}
    if "dihedral" in obj:
        row["dihedral"] = ";".join(f"{k}:{v}" for k, v in obj["dihedral"].items())
    if "frames" in obj:
        row["frames"] = ";".join(f"{f['timestamp']}:{f['pdq']}" for f in obj["frames"])
    if "error" in obj:
        row["error_code"] = obj["error"]["code"]
        row["error_message"] = obj["error"]["message"]
    return row


@app.command("hash")
def hash_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Also give the 8 rotation/flip variants.")
    ] = False,
    trim_borders: Annotated[
        bool, typer.Option("--trim-borders", help="Remove uniform borders before hashing.")
    ] = False,
    fmt: Annotated[HashOutput, typer.Option("--format", help="Output format.")] = HashOutput.jsonl,
    database_url: DatabaseUrl = None,
) -> None:
    """Hash images and videos: PDQ with its quality, MD5 and SHA-256 (and video frames).

    One result per file on stdout; exit status 1 if any file failed.
    """
    from rempart.hashing import hash_media
    from rempart.media import read_media_file

    settings = _settings(database_url)
    writer: csv.DictWriter[str] | None = None
    if fmt is HashOutput.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=_CSV_FIELDS, lineterminator="\n")
        writer.writeheader()

    def work(path: Path) -> dict[str, Any]:
        data = read_media_file(path, settings.limits)
        hashes = hash_media(
            data, limits=settings.limits, dihedral=dihedral, trim_borders=trim_borders
        )
        return hashes.to_dict()

    def emit_csv(obj: dict[str, Any]) -> None:
        assert writer is not None
        writer.writerow(_csv_row(obj))
        sys.stdout.flush()

    _each_file(paths, ("hashing", "hashed"), work, emit_csv if writer is not None else None)


# -- match ---------------------------------------------------------------------------------


@app.command("match")
def match_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    bank: Annotated[
        list[str] | None, typer.Option("--bank", help="Bank to match (repeatable; default all).")
    ] = None,
    tenant: Tenant = "default",
    no_trim: Annotated[
        bool, typer.Option("--no-trim-borders", help="Do not also match borderless copies.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Match files against hash banks: one JSON object per file with its `matches`.

    A match is a lead for a human to review, never an identification.
    """
    from rempart.scan import Scanner

    try:
        scanner = Scanner(_store(database_url), _settings(database_url))
        scanner.matcher.banks_for(bank, tenant)  # unknown bank names fail before any work
    except RempartError as e:
        _fail(e)

    def work(path: Path) -> dict[str, Any]:
        result = scanner.scan_file(
            path, banks=bank, tenant=tenant, trim_borders=False if no_trim else None
        )
        obj = result.match.to_dict()
        obj["pdq"] = result.hashes.pdq
        obj["pdq_quality"] = result.hashes.pdq_quality
        return obj

    _each_file(paths, ("matching", "matched"), work)


@app.command("scan")
def scan_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    signals: Annotated[
        str,
        typer.Option(
            help="Evidence to gather: all, hashes, or some of provenance, watermark, "
            "faces, detectors (comma-separated)."
        ),
    ] = "all",
    bank: Annotated[
        list[str] | None, typer.Option("--bank", help="Bank to match (repeatable; default all).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="A policy TOML file (default: the shipped policy).")
    ] = None,
    tenant: Tenant = "default",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Batch scan into this folder: results.jsonl, results.csv, report.html "
            "(resumable: a re-run skips what is done). Also reads ZIP/TAR archives and "
            "Telegram Desktop exports."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="With --out: local (a process pool) or ray.")
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(help="With --out: worker processes (default: all cores).")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="With --engine ray: the cluster (default: local).")
    ] = None,
    previews: Annotated[
        bool,
        typer.Option("--previews", help="With --out: blurred greyscale thumbnails in the report."),
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="With --out: scan at most N new items this run.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="With --out: add these paths to a folder holding another scan."
        ),
    ] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="With --out: record flagged items as scans in the store (for `rempart "
            "evidence SCAN_ID` and case alerts).",
        ),
    ] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Scan files: hashes and bank matches, evidence of generation, faces of enrolled people,
    and the policy's verdict with its reasons. One JSON object per file, or with --out a
    batch scan of a whole corpus (see docs/batch.md) and a summary.

    Every match and every face is a lead for a human to review, never an identification;
    no evidence of generation never means authentic.
    """
    from rempart.evidence.collect import parse_signals
    from rempart.policy import DEFAULT_POLICY, load_policy
    from rempart.scan import Scanner

    if out is not None:
        from rempart.batch.command import batch_scan

        code = batch_scan(
            paths, out, _settings(database_url), err, signals=signals, banks=bank,
            policy=policy, tenant=tenant, engine=engine, workers=workers, address=address,
            previews=previews, limit=limit, force=force, record=record, emit=_emit,
            fail=_fail,
        )  # fmt: skip
        if code:
            raise typer.Exit(code)
        return
    try:
        wanted = parse_signals(signals)
        chosen = load_policy(policy) if policy else DEFAULT_POLICY
        scanner = Scanner(_store(database_url), _settings(database_url), policy=chosen)
        scanner.matcher.banks_for(bank, tenant)
    except RempartError as e:
        _fail(e)
    except OSError as e:
        _fail(RempartError(f"cannot read {policy}: {e.strerror}", code="unreadable"))
    _each_file(
        paths,
        ("scanning", "scanned"),
        lambda path: scanner.scan_file(path, banks=bank, tenant=tenant, signals=wanted).to_dict(),
    )


def _face_templates(database_url: str | None) -> Any:
    from rempart.store.faces import FaceTemplates, parse_key, parse_previous_keys

    settings = _settings(database_url)
    if settings.face_template_key is None:
        raise RempartError(
            "no face template key is configured",
            code="no_face_key",
            hint="set REMPART_FACE_TEMPLATE_KEY to 32 random bytes in base64, e.g. the output "
            'of `python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"`',
        )
    key = parse_key(settings.face_template_key.get_secret_value())
    previous = parse_previous_keys(settings.face_template_previous_keys)
    store = _store(database_url)
    return store, FaceTemplates(store, key, previous)


@faces_app.command("enrol")
def faces_enrol(
    person: Annotated[str, typer.Argument(help="An opaque id for the person (not a name).")],
    photos: Annotated[list[Path], typer.Argument(help="Photos of that person alone.")],
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Enrol a person who asked for protection, from photos of her or him alone.

    Only the face templates are kept (encrypted); the photos are not.
    """
    from rempart.evidence.faces import FaceAnalyzer
    from rempart.media import decode_image, read_media_file

    try:
        store, templates = _face_templates(database_url)
        settings = _settings(database_url)
        analyzer = FaceAnalyzer()
        embeddings = []
        for photo in photos:
            rgb = decode_image(
                read_media_file(photo, settings.limits), settings.limits, draft_min_side=None
            ).rgb
            faces = [f for f in analyzer.faces(rgb) if f.embedding is not None]
            if len(faces) != 1:
                raise RempartError(
                    f"{photo}: {len(faces)} faces found; enrolment needs exactly one",
                    code="enrol_needs_one_face",
                    hint="use photos in which the person is alone and facing the camera",
                )
            embeddings.append(faces[0].embedding)
        added = templates.enrol(person, tenant, embeddings)
        _audit(store, tenant, "face.enrol", person, templates=added)
    except RempartError as e:
        _fail(e)
    except OSError as e:
        _fail(RempartError(f"cannot read a photo: {e}", code="unreadable"))
    _emit({"person": person, "templates": added})


@faces_app.command("list")
def faces_list(tenant: Tenant = "default", database_url: DatabaseUrl = None) -> None:
    """List enrolled people (ids and template counts, never templates)."""
    try:
        _, templates = _face_templates(database_url)
        people = templates.list(tenant)
    except RempartError as e:
        _fail(e)
    for p in people:
        _emit(p.to_dict())


@faces_app.command("remove")
def faces_remove(person: str, tenant: Tenant = "default", database_url: DatabaseUrl = None) -> None:
    """Delete every template of a person (hard delete)."""
    try:
        store, templates = _face_templates(database_url)
        removed = templates.remove(person, tenant)
        _audit(store, tenant, "face.remove", person, templates=removed)
    except RempartError as e:
        _fail(e)
    _emit({"person": person, "removed": removed})


@faces_app.command("rotate-key")
def faces_rotate_key(
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Rows re-sealed per write transaction.")
    ] = 500,
    database_url: DatabaseUrl = None,
) -> None:
    """Re-seal every template under the current key (REMPART_FACE_TEMPLATE_KEY).

    Rows sealed with a key listed in REMPART_FACE_TEMPLATE_PREVIOUS_KEYS are opened and
    sealed again; nothing changes if some rows were sealed with a key that is not
    configured. Safe to interrupt and to run again. Prints the counts as JSON.
    """
    try:
        store, templates = _face_templates(database_url)
        with _progress() as progress:
            task = progress.add_task("re-sealing", total=templates.key_status().to_reseal)
            result = templates.rotate(
                batch, on_progress=lambda n: progress.update(task, completed=n)
            )
        # One entry per tenant whose templates were re-sealed: counts and fingerprints only.
        for tenant, count in sorted(result.tenants.items()):
            _audit(store, tenant, "face.rotate_key", result.key_fp, resealed=count)
    except RempartError as e:
        _fail(e)
    _emit(result.to_dict())


@faces_app.command("key-status")
def faces_key_status(database_url: DatabaseUrl = None) -> None:
    """Template rows per key fingerprint: current, previous (configured) or unknown.

    A previous key with no row left can be removed from REMPART_FACE_TEMPLATE_PREVIOUS_KEYS.
    """
    try:
        _, templates = _face_templates(database_url)
        status = templates.key_status()
    except RempartError as e:
        _fail(e)
    _emit(status.to_dict())


@app.command("protect")
def protect_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Your photos and videos, or folders.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the submission file.")
    ] = Path("rempart-submission.json"),
    enrol_face: Annotated[
        bool,
        typer.Option("--enrol-face", help="Also add your face template, sealed to the service."),
    ] = False,
    service_key: Annotated[
        Path | None,
        typer.Option(help="The service's public key file (needed with --enrol-face)."),
    ] = None,
    submit: Annotated[
        str | None,
        typer.Option(
            "--submit",
            help="Also send the submission file (only it) to this Rempart service, which "
            "opens a case and answers with its number and PIN.",
        ),
    ] = None,
    email: Annotated[
        str | None,
        typer.Option(
            "--email",
            help="With --submit: an e-mail address for alerts when a platform finds a copy "
            "(the service keeps it sealed and never shows it to platforms).",
        ),
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help="With --submit: a URL (http or https) that alerts are POSTed to, signed "
            "with a secret shown once in the answer.",
        ),
    ] = None,
) -> None:
    """Hash your images on this device into one submission file: only hashes leave it.

    Nothing is uploaded unless --submit is given, and then only the submission file (and
    the e-mail address or webhook URL you give for alerts). The file holds no image and no
    file name; it prints exactly what it contains.
    """
    from rempart.cases import build_submission, parse_service_key
    from rempart.settings import load_settings

    settings = load_settings()
    contact = {k: v for k, v in (("email", email), ("webhook_url", webhook)) if v}
    if contact and not submit:
        _fail(
            RempartError(
                "--email and --webhook are sent with the submission, and need --submit URL",
                code="contact_without_submit",
                hint="add --submit URL, or give them later with `rempart cases submit FILE "
                "--url URL --email ...`",
            )
        )
    try:
        key = parse_service_key(service_key.read_bytes()) if service_key else None
        with _progress() as progress:
            progress.add_task("hashing", total=None)
            submission = build_submission(
                paths, limits=settings.limits, enrol_face=enrol_face, service_public_key=key
            )
    except RempartError as e:
        _fail(e)
    except OSError as e:
        _fail(RempartError(f"cannot read the service key: {e.strerror}", code="unreadable"))
    output.write_text(submission.to_json(), encoding="utf-8")
    err.print(submission.summary())
    for problem in submission.errors:
        index = problem["index"]
        where = submission.local_paths[index] if index < len(submission.local_paths) else "?"
        err.print(f"  not included: {where}: {problem['message']}", highlight=False)
    summary = {
        "submission": str(output),
        "digest": submission.digest,
        "items": len(submission.items),
        "errors": len(submission.errors),
    }
    if submit:
        from rempart.cases.cli import submit_to_service

        text = submission.to_json()
        also = " and ".join(
            f"your {'e-mail address' if k == 'email' else 'webhook URL'} {v}"
            for k, v in contact.items()
        )
        err.print(
            f"Sending {len(text.encode())} bytes to {submit}: the submission file "
            f"{output} exactly as written (digest {submission.digest[:16]}...)"
            + (f", {also} for alerts," if also else ",")
            + " and nothing else -- no image, no file name.",
            highlight=False,
        )
        try:
            summary["case"] = submit_to_service(submit, text, contact)
        except RempartError as e:
            _fail(e)
        err.print("Keep the case number and PIN safe: the PIN is not shown again.")
    _emit(summary)


# -- banks ---------------------------------------------------------------------------------


def _bank_dict(b: Any) -> dict[str, Any]:
    return {
        "name": b.name,
        "tenant": b.tenant,
        "kind": b.kind,
        "threshold": b.threshold,
        "enabled": b.enabled,
        "description": b.description,
        "entries": dict(b.counts),
    }


@bank_app.command("create")
def bank_create(
    name: str,
    threshold: Annotated[
        int, typer.Option(help="PDQ distance at or under which hashes match.")
    ] = 31,
    kind: Annotated[
        BankKind, typer.Option(help="block: matches count; allow: matches suppress others.")
    ] = BankKind.block,
    description: Annotated[str, typer.Option(help="What this bank holds.")] = "",
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Create a bank."""
    try:
        if tenant == "_cases":  # rempart.store.cases.CASES_TENANT: victims' cases only
            raise RempartError(
                "the tenant '_cases' is reserved for victims' cases",
                code="reserved_tenant",
                hint="choose another tenant name",
            )
        store = _store(database_url)
        b = store.create_bank(
            name, tenant=tenant, threshold=threshold, kind=kind.value, description=description
        )
        _audit(store, tenant, "bank.create", name, kind=b.kind, threshold=b.threshold)
    except RempartError as e:
        _fail(e)
    _emit(_bank_dict(b))


@bank_app.command("list")
def bank_list(
    tenant: Tenant = "default",
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List banks with their sizes."""
    try:
        banks = _store(database_url).list_banks(tenant=tenant)
    except RempartError as e:
        _fail(e)
    if as_json or not sys.stdout.isatty():
        for b in banks:
            _emit(_bank_dict(b))
        return
    table = Table("name", "kind", "threshold", "enabled", "entries", "description")
    for b in banks:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(b.counts.items())) or "empty"
        table.add_row(
            b.name, b.kind, str(b.threshold), "yes" if b.enabled else "no", counts, b.description
        )
    Console().print(table)


@bank_app.command("update")
def bank_update(
    name: str,
    threshold: Annotated[int | None, typer.Option(help="New PDQ distance threshold.")] = None,
    kind: Annotated[BankKind | None, typer.Option(help="block or allow.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Match against it or not.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Change a bank's threshold, kind, description or enabled flag."""
    try:
        store = _store(database_url)
        b = store.update_bank(
            name,
            tenant=tenant,
            threshold=threshold,
            kind=kind.value if kind else None,
            enabled=enabled,
            description=description,
        )
        changed = {
            "threshold": threshold,
            "kind": kind.value if kind else None,
            "enabled": enabled,
            "description": description,
        }
        _audit(
            store,
            tenant,
            "bank.update",
            name,
            **{k: v for k, v in changed.items() if v is not None},
        )
    except RempartError as e:
        _fail(e)
    _emit(_bank_dict(b))


@bank_app.command("delete")
def bank_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a bank and every entry in it (hard delete)."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete bank {name!r} and all its entries?", abort=True)
    try:
        store = _store(database_url)
        gone = store.delete_bank(name, tenant=tenant)
        _audit(store, tenant, "bank.delete", name, entries=gone.entry_count)
    except RempartError as e:
        _fail(e)
    _emit({"deleted": name})


@bank_app.command("add")
def bank_add(
    name: str,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Media files or folders to hash.")
    ] = None,
    pdq: Annotated[list[str] | None, typer.Option("--pdq", help="A PDQ hash (64 hex).")] = None,
    md5: Annotated[list[str] | None, typer.Option("--md5", help="An MD5 (32 hex).")] = None,
    sha256: Annotated[
        list[str] | None, typer.Option("--sha256", help="A SHA-256 (64 hex).")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Where these hashes come from.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Add hashes, or the hashes of media files, to a bank (prints the new entry ids)."""
    from rempart.entries import entries_for_file, entries_for_values

    settings = _settings(database_url)
    try:
        store = _store(database_url)
        bank = store.get_bank(name, tenant=tenant)
        entries = entries_for_values(
            {"pdq": pdq or [], "md5": md5 or [], "sha256": sha256 or []},
            source=source,
            tags=tag or [],
        )
    except RempartError as e:
        _fail(e)
    files = list(iter_files(paths or []))
    if not entries and not files:
        _fail(
            RempartError(
                "nothing to add",
                code="usage",
                hint="give --pdq/--md5/--sha256 values or media files",
            )
        )
    failed = 0
    for path in files:
        try:
            entries += entries_for_file(path, settings, source=source, tags=tag or [])
        except (RempartError, OSError) as e:
            _emit(_error_dict(path, e))
            failed += 1
    try:
        added = store.add_entries(bank.name, entries, tenant=tenant)
        _audit(store, tenant, "entries.add", bank.name, added=added.added)
    except RempartError as e:
        _fail(e)
    _emit(
        {
            "bank": bank.name,
            "added": added.added,
            "duplicates": added.duplicates,
            "entry_ids": list(added.ids),
        }
    )
    if failed:
        raise typer.Exit(1)


@bank_app.command("remove")
def bank_remove(
    name: str,
    entry_ids: Annotated[list[int], typer.Argument(help="Entry ids to delete.")],
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Delete entries from a bank (hard delete)."""
    try:
        store = _store(database_url)
        removed = store.remove_entries(name, entry_ids, tenant=tenant)
        _audit(store, tenant, "entries.remove", name, ids=removed.removed)
    except RempartError as e:
        _fail(e)
    _emit({"bank": name, **removed.to_dict()})


@bank_app.command("import")
def bank_import(
    name: str,
    file: Annotated[Path, typer.Argument(help="Hash list (use - for stdin).")],
    fmt: Annotated[
        ListFormat | None, typer.Option("--format", help="csv, jsonl or hma (default: detect).")
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Import the good rows and report the bad ones (default: all or nothing).",
        ),
    ] = False,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Import a hash list into a bank: atomically, or good rows only with --partial."""
    from rempart.exchanges import import_file

    try:
        store = _store(database_url)
        store.get_bank(name, tenant=tenant)
        with _progress() as progress:
            task = progress.add_task("importing", total=None)
            report = import_file(
                store,
                name,
                file,
                fmt=fmt.value if fmt else None,
                mode="partial" if partial else "atomic",
                tenant=tenant,
                on_progress=lambda n: progress.update(task, completed=n),
            )
        _audit(store, tenant, "entries.import", name, added=report.added)
    except RempartError as e:
        _fail(e)
    except OSError as e:
        _fail(RempartError(f"cannot read {file}: {e.strerror}", code="unreadable"))
    _emit(report.to_dict())
    if report.errors:
        err.print(f"{len(report.errors)} bad rows were skipped (listed in `errors`).")
        raise typer.Exit(1)


@bank_app.command("export")
def bank_export(
    name: str,
    fmt: Annotated[
        ListFormat, typer.Option("--format", help="csv, jsonl or hma.")
    ] = ListFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Export a bank's entries as a hash list."""
    from rempart.exchanges import export_bank

    try:
        store = _store(database_url)
        if output is None:
            export_bank(store, name, sys.stdout, fmt=fmt.value, tenant=tenant)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = export_bank(store, name, fh, fmt=fmt.value, tenant=tenant)
            err.print(f"wrote {n} entries to {output}")
    except RempartError as e:
        _fail(e)


# -- service -------------------------------------------------------------------------------


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (they share the store).")
    ] = None,
    database_url: DatabaseUrl = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            envvar="FORWARDED_ALLOW_IPS",
            help="Proxies (comma-separated IPs or networks, or '*') whose X-Forwarded-Proto "
            "and -For are trusted: set it to the proxy's address when TLS ends on another "
            "host, so the UI's cookies get Secure. Default: 127.0.0.1,::1.",
        ),
    ] = None,
) -> None:
    """Run the HTTP service (API at /v1, docs at /docs)."""
    import uvicorn

    from rempart.store.keys import KeyRepository
    from rempart.store.users import UserRepository

    settings = _settings(database_url)
    svc = settings.service
    host = host or svc.host
    port = port if port is not None else svc.port
    workers = workers or svc.workers
    try:
        store = _store(database_url)  # migrates once, before any worker starts
        has_keys = bool(KeyRepository(store).list())
        has_users = bool(UserRepository(store).list()) if settings.ui.enabled else True
        store.close()
    except RempartError as e:
        _fail(e)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"Rempart {__version__} serving on http://{shown}:{port}")
    err.print(f"  API docs:  http://{shown}:{port}/docs")
    if settings.ui.enabled:
        err.print(f"  web UI:    http://{shown}:{port}/ui  (moderators)")
    err.print(f"  case page: http://{shown}:{port}/case  (victims: case number + PIN)")
    err.print(f"  store:     {settings.database_url}")
    if not has_keys:
        err.print("  no API key yet: create one with")
        err.print("    rempart keys create --tenant default --scopes admin")
    if not has_users:
        err.print("  no UI account yet: create one with")
        err.print("    rempart users create NAME --role admin")
    os.environ["REMPART_DATABASE_URL"] = settings.database_url
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="rempart-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "rempart.service.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    else:
        from rempart.service.app import create_app

        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level="info",
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            access_log=False,
        )


@keys_app.command("create")
def keys_create(
    tenant: Tenant = "default",
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: scan, banks:read, banks:write, webhooks, cases, admin."
        ),
    ] = "scan",
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key and print it (only the key, on stdout; it is shown once)."""
    from rempart.store.audit import AuditLog
    from rempart.store.keys import KeyRepository

    try:
        store = _store(database_url)
        info, key = KeyRepository(store).create(tenant, scopes.split(","), name)
        AuditLog(store).append(
            tenant=tenant,
            actor=_cli_actor(),
            action="key.create",
            target=info.key_id,
            details={"scopes": list(info.scopes)},
        )
    except RempartError as e:
        _fail(e)
    typer.echo(key)
    err.print(
        f"key {info.key_id} for tenant {tenant!r} with scopes {', '.join(info.scopes)}; "
        "store it now: it is not shown again"
    )


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List API keys (never their secrets)."""
    from rempart.store.keys import KeyRepository

    try:
        keys = KeyRepository(_store(database_url)).list(tenant)
    except RempartError as e:
        _fail(e)
    for k in keys:
        _emit(k.to_dict())


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke an API key (effective within 2 seconds in every worker)."""
    from rempart.store.audit import AuditLog
    from rempart.store.keys import KeyRepository

    try:
        store = _store(database_url)
        info = KeyRepository(store).revoke(key_id)
        AuditLog(store).append(
            tenant=info.tenant, actor=_cli_actor(), action="key.revoke", target=key_id
        )
    except RempartError as e:
        _fail(e)
    _emit(info.to_dict())


def _audit(store: Any, tenant: str, action: str, target: str, **details: Any) -> None:
    """Append a change made from the command line to the audit log."""
    from rempart.store.audit import AuditLog

    AuditLog(store).append(
        tenant=tenant, actor=_cli_actor(), action=action, target=target, details=details
    )


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


# -- feeds ---------------------------------------------------------------------------------

feeds_app = typer.Typer(
    help="Hash feeds: lists at a URL or the StopNCII API, pulled into a bank on a schedule.",
    no_args_is_help=True,
)
app.add_typer(feeds_app, name="feeds")


def _feed_config(pairs: list[str] | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(
                RempartError(
                    f"--config {pair!r} is not KEY=VALUE",
                    code="bad_feed",
                    hint="e.g. --config subscription_key=... --config page_size=500",
                )
            )
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value  # a plain string
    return config


@feeds_app.command("add")
def feeds_add(
    name: Annotated[str, typer.Argument(help="A name for the feed.")],
    url: Annotated[str, typer.Argument(help="The list's URL (StopNCII: the API base URL).")],
    bank: Annotated[str, typer.Option("--bank", help="Bank the feed fills.")],
    kind: Annotated[str, typer.Option(help="jsonl, csv, hma or stopncii.")] = "jsonl",
    interval: Annotated[int, typer.Option(help="Seconds between runs.")] = 3600,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", help="KEY=VALUE (JSON values allowed); repeat."),
    ] = None,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Define a feed; `rempart serve` runs it on schedule, `rempart feeds sync` runs it now."""
    from rempart.exchanges.feeds import add_feed

    store = _store(database_url)
    try:
        info = add_feed(
            store,
            bank=bank,
            name=name,
            kind=kind,
            url=url,
            tenant=tenant,
            interval_s=interval,
            config=_feed_config(config),
        )
    except RempartError as e:
        _fail(e)
    _audit(store, tenant, "feed.create", info.name, kind=info.kind, bank=bank)
    _emit(info.to_dict())


@feeds_app.command("list")
def feeds_list(tenant: Tenant = "default", database_url: DatabaseUrl = None) -> None:
    """The tenant's feeds, one JSON line each (secrets masked), with last run and error."""
    from rempart.store.feeds import FeedRepository

    for info in FeedRepository(_store(database_url)).list(tenant):
        _emit(info.to_dict())


@feeds_app.command("sync")
def feeds_sync(
    feed_id: Annotated[int, typer.Argument(help="The feed's id (see `rempart feeds list`).")],
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Run a feed now and print what it added and removed."""
    from rempart.exchanges.feeds import sync_feed

    store = _store(database_url)
    try:
        with _progress() as progress:
            progress.add_task("syncing", total=None)
            report = sync_feed(store, feed_id, tenant=tenant)
    except RempartError as e:
        _fail(e)
    _audit(store, tenant, "feed.sync", str(feed_id), added=report.added, removed=report.removed)
    _emit(report.to_dict())


@feeds_app.command("remove")
def feeds_remove(
    feed_id: Annotated[int, typer.Argument(help="The feed's id.")],
    keep_entries: Annotated[
        bool, typer.Option("--keep-entries", help="Keep the hashes the feed added.")
    ] = False,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a feed and (unless --keep-entries) the hashes it added."""
    from rempart.exchanges.feeds import delete_feed

    store = _store(database_url)
    try:
        info, removed = delete_feed(store, feed_id, tenant=tenant, keep_entries=keep_entries)
    except RempartError as e:
        _fail(e)
    _audit(store, tenant, "feed.delete", info.name, entries_removed=removed)
    _emit({"deleted": info.name, "entries_removed": removed})


# -- demo ----------------------------------------------------------------------------------


@app.command("demo")
def demo_cmd(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to write the example images.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Build a bank from the bundled example images and match edited copies against it."""
    from rempart.entries import entries_for_file
    from rempart.examples import write_examples
    from rempart.scan import Scanner

    settings = _settings(database_url)
    workdir = directory or Path(tempfile.mkdtemp(prefix="rempart-demo-"))
    examples = write_examples(workdir)
    try:
        store = _store(database_url)
        bank_name = "demo"
        if not any(b.name == bank_name for b in store.list_banks(tenant="default")):
            store.create_bank(bank_name, description="Rempart's example originals")
        entries = []
        for path in examples.originals:
            entries += entries_for_file(path, settings, source="rempart demo")
        store.add_entries(bank_name, entries)
        scanner = Scanner(store, settings)
    except RempartError as e:
        _fail(e)
    err.print(f"bank 'demo' holds {len(examples.originals)} originals from {workdir}/originals")
    table = Table("upload", "matched", "distance", "variant")
    uploads = sorted(examples.copies + examples.unrelated)
    with _progress() as progress:
        task = progress.add_task("matching", total=len(uploads))
        for path in uploads:
            result = scanner.scan_file(path, banks=[bank_name])
            _emit({"path": str(path), **result.match.to_dict()})
            best = result.match.matches[0] if result.match.matches else None
            table.add_row(
                path.name,
                "yes" if best else "no",
                str(best.distance) if best else "-",
                (best.variant or "") if best else "",
            )
            progress.advance(task)
    err.print(table)


def main() -> None:
    """Entry point: run the app, printing RempartErrors without a traceback."""
    try:
        app()
    except RempartError as e:  # errors raised outside a command's own handling
        try:
            _fail(e)
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # pragma: no cover - last line of defence
        if os.environ.get("REMPART_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {e}", highlight=False)
        err.print("hint: run again with REMPART_DEBUG=1 for a traceback, and report it")
        sys.exit(70)


__all__ = ["app", "iter_files", "main"]
