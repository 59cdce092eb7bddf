"""``rempart cases``: open, follow and withdraw victims' cases; make the service key.

Without ``--url`` the commands work on the local store (``--database-url`` as everywhere);
with ``--url`` they talk to a Rempart service over HTTP, and the PIN travels in the request
body, never in the URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rempart._clikit import DatabaseUrl, err
from rempart._clikit import emit as _emit
from rempart._clikit import fail as _fail
from rempart._clikit import settings as _settings
from rempart.errors import RempartError

cases_app = typer.Typer(
    help="Victims' cases: submit hashes, follow a case, withdraw it (number + PIN).",
    no_args_is_help=True,
)
Url = Annotated[
    str | None,
    typer.Option("--url", help="A Rempart service (https://...) instead of the local store."),
]
Pin = Annotated[str, typer.Option("--pin", help="The case's PIN.", prompt=True, hide_input=True)]


def _repo(database_url: str | None) -> Any:
    from rempart.cases.registry import CaseRepository
    from rempart.store import Store

    settings = _settings(database_url)
    return CaseRepository(Store.open(settings.database_url), settings)


def _endpoint(url: str, path: str) -> str:
    base = url.rstrip("/")
    base = base.removesuffix("/v1/cases")
    return f"{base}/v1/cases{path}"


def post_json(url: str, body: bytes | dict[str, Any]) -> dict[str, Any]:
    """POST JSON to a Rempart service; its problem answers become RempartErrors."""
    import httpx

    content = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    try:
        response = httpx.post(
            url, content=content, headers={"Content-Type": "application/json"}, timeout=60
        )
    except httpx.HTTPError as exc:
        raise RempartError(
            f"cannot reach {url}: {exc}", code="service_unreachable", hint="check --url"
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise RempartError(f"{url} answered {response.status_code} without JSON", code="bad_answer")
    if response.status_code >= 400:
        raise RempartError(
            str(answer.get("detail") or answer.get("title") or "the service refused"),
            code=str(answer.get("code") or "error"),
            hint=answer.get("hint"),
        )
    return answer


def submit_to_service(url: str, submission_json: str, contact: dict[str, str]) -> dict[str, Any]:
    """Send a submission (and contact, if any) to ``url``; returns ``{"case", "pin", ...}``."""
    if contact:
        body: bytes | dict[str, Any] = {
            "submission": json.loads(submission_json),
            "contact": contact,
        }
    else:
        body = submission_json.encode("utf-8")
    return post_json(_endpoint(url, ""), body)


@cases_app.command("submit")
def cases_submit(
    file: Annotated[Path, typer.Argument(help="The submission file from `rempart protect`.")],
    url: Url = None,
    email: Annotated[str | None, typer.Option(help="E-mail address for alerts.")] = None,
    webhook: Annotated[str | None, typer.Option(help="URL that alerts are POSTed to.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Open a case from a submission file; prints {"case": ..., "pin": ...} (keep them)."""
    from rempart.cases import load_submission

    try:
        text = file.read_text(encoding="utf-8")
        submission = load_submission(text)
        if url:
            contact = {k: v for k, v in (("email", email), ("webhook_url", webhook)) if v}
            answer = submit_to_service(url, text, contact)
        else:
            answer = (
                _repo(database_url)
                .submit(submission, email=email, webhook_url=webhook, actor="cli")
                .to_dict()
            )
    except RempartError as e:
        _fail(e)
    except (OSError, UnicodeDecodeError) as e:
        _fail(RempartError(f"cannot read {file}: {e}", code="unreadable"))
    _emit(answer)
    err.print("Keep the case number and PIN safe: the PIN is not shown again.")


@cases_app.command("status")
def cases_status(
    case: Annotated[str, typer.Argument(help="The case number (RMP-...).")],
    pin: Pin,
    url: Url = None,
    database_url: DatabaseUrl = None,
) -> None:
    """How many matches, on which platform, when (never the content)."""
    try:
        if url:
            answer = post_json(_endpoint(url, f"/{case}/status"), {"pin": pin})
        else:
            answer = _repo(database_url).status(case, pin).to_dict()
    except RempartError as e:
        _fail(e)
    _emit(answer)


@cases_app.command("withdraw")
def cases_withdraw(
    case: Annotated[str, typer.Argument(help="The case number (RMP-...).")],
    pin: Pin,
    url: Url = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Withdraw a case: its hashes, face template and alerts are deleted for good."""
    try:
        if url:
            answer = post_json(_endpoint(url, f"/{case}/withdraw"), {"pin": pin})
        else:
            answer = _repo(database_url).withdraw(case, pin, actor="cli").to_dict()
    except RempartError as e:
        _fail(e)
    _emit(answer)


@cases_app.command("show")
def cases_show(
    case: Annotated[str, typer.Argument(help="The case number (RMP-...).")],
    database_url: DatabaseUrl = None,
) -> None:
    """The operator's view of a case and its alerts (local store; no PIN, no contact)."""
    try:
        repo = _repo(database_url)
        info = repo.get(case).to_dict()
        info["alerts"] = [a.to_dict() for a in repo.alerts(case)]
    except RempartError as e:
        _fail(e)
    _emit(info)


@cases_app.command("keygen")
def cases_keygen(
    private: Annotated[
        Path, typer.Option(help="Where to write the private key (keep it secret).")
    ] = Path("rempart-service.key"),
    public: Annotated[
        Path, typer.Option(help="Where to write the public key (publish it).")
    ] = Path("rempart-service.pub"),
    force: Annotated[bool, typer.Option(help="Replace an existing private key.")] = False,
) -> None:
    """Make the service's X25519 key pair (sealed face templates and contact details).

    Set REMPART_CASES__SERVICE_KEY_FILE to the private key; give the public key to victims
    (`rempart protect --enrol-face --service-key FILE`).
    """
    from rempart.cases.service_key import write_keypair

    try:
        fingerprint = write_keypair(private, public, overwrite=force)
    except RempartError as e:
        _fail(e)
    except OSError as e:
        _fail(RempartError(f"cannot write the key files: {e}", code="unwritable"))
    _emit({"private_key": str(private), "public_key": str(public), "fingerprint": fingerprint})
    err.print(
        f"Set REMPART_CASES__SERVICE_KEY_FILE={private}; publish {public} and its fingerprint."
    )
