"""Banks: list with sizes and precision, search by hash or by file, import, export, edit."""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from rempart.errors import RempartError
from rempart.exchanges import export_bank, import_file
from rempart.hashing import MediaHashes
from rempart.matcher import MatchResult
from rempart.service.body import read_upload
from rempart.service.problems import PayloadTooLarge
from rempart.service.ui.render import redirect, render, secure, translator
from rempart.service.ui.security import AdminPost, Post, Session, State
from rempart.signals import get_signal
from rempart.store import BankInfo
from rempart.store.scans import Precision

router = APIRouter()

Format = Literal["csv", "jsonl", "hma"]


def _row(b: BankInfo, p: Precision | None) -> dict[str, Any]:
    return {
        "name": b.name,
        "kind": b.kind,
        "threshold": b.threshold,
        "enabled": b.enabled,
        "description": b.description,
        "entries": b.entry_count,
        "counts": dict(b.counts),
        "tp": p.true_positives if p else 0,
        "fp": p.false_positives if p else 0,
        "precision": p.precision if p else None,
        "updated_at": b.updated_at,
    }


def _banks(state: State, tenant: str) -> list[dict[str, Any]]:
    banks = state.ctx.store.list_banks(tenant=tenant)
    precision = state.ctx.scans.precision([b.id for b in banks])
    return [_row(b, precision.get(b.id)) for b in banks]


@router.get("/banks", include_in_schema=False)
async def banks_page(request: Request, state: State, viewer: Session) -> Response:
    """The tenant's banks."""
    banks = await run_in_threadpool(_banks, state, viewer.user.tenant)
    return render(request, "banks.html", banks=banks)


@router.post("/banks", include_in_schema=False)
async def create_bank(
    request: Request,
    state: State,
    viewer: AdminPost,
    name: Annotated[str, Form(max_length=64)],
    kind: Annotated[Literal["block", "allow"], Form()] = "block",
    threshold: Annotated[int, Form(ge=0, le=64)] = 31,
    description: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Create a bank (admins)."""
    user = viewer.user

    def run() -> None:
        state.ctx.store.create_bank(
            name, tenant=user.tenant, kind=kind, threshold=threshold, description=description
        )
        state.ctx.audit.append(
            tenant=user.tenant,
            actor=user.actor,
            action="bank.create",
            target=name,
            details={"kind": kind, "threshold": threshold},
        )

    try:
        await run_in_threadpool(run)
    except RempartError as e:  # a code, never text (see render.error_code)
        return redirect(request, f"/ui/banks?error={e.code}")
    return redirect(request, f"/ui/banks/{name}?ok=bank.created")


def _query_hashes(q: str) -> MediaHashes:
    """Hashes to search for from a typed value: PDQ or SHA-256 (64 hex), MD5 (32 hex)."""
    value = q.strip().lower()
    pdq = sha256 = md5 = None
    if len(value) == 64:
        sha256 = get_signal("sha256").validate(value)
        try:
            pdq = get_signal("pdq").validate(value)
        except RempartError:
            pdq = None
    elif len(value) == 32:
        md5 = get_signal("md5").validate(value)
    else:
        raise RempartError(
            "give a PDQ or SHA-256 hash (64 hex digits) or an MD5 (32 hex digits)",
            code="malformed_hash",
        )
    return MediaHashes(
        kind="image",
        format="none",
        width=0,
        height=0,
        md5=md5 or "",
        sha256=sha256 or "",
        pdq=pdq,
        pdq_quality=None,
    )


def _found(state: State, match: MatchResult) -> list[dict[str, Any]]:
    """The bank entries a search hit, with distances."""
    hits = match.matches + match.suppressed + match.allowed
    entries = {e.id: e for e in state.ctx.store.get_entries([m.entry_id for m in hits])}
    out = []
    for m in hits:
        e = entries.get(m.entry_id)
        out.append(
            {
                "entry_id": m.entry_id,
                "signal": m.signal,
                "distance": m.distance,
                "threshold": m.threshold,
                "variant": m.variant,
                "value": e.value if e else "",
                "source": e.source if e else "",
                "added_at": e.added_at if e else None,
            }
        )
    return out


def _bank_page(
    request: Request,
    state: State,
    tenant: str,
    name: str,
    *,
    results: list[dict[str, Any]] | None = None,
    query: str = "",
    error: str | None = None,
    searched_file: bool = False,
) -> Response:
    store = state.ctx.store
    bank = store.get_bank(name, tenant=tenant)
    p = state.ctx.scans.precision([bank.id]).get(bank.id)
    return render(
        request,
        "bank.html",
        bank=_row(bank, p),
        results=results,
        query=query,
        error=error,
        searched_file=searched_file,
    )


@router.get("/banks/{name}", include_in_schema=False)
async def bank_page(
    request: Request, state: State, viewer: Session, name: str, q: str = ""
) -> Response:
    """One bank; with ``q``, the entries within its threshold of that hash."""
    tenant = viewer.user.tenant

    def run() -> Response:
        results = None
        error = None
        if q.strip():
            try:
                hashes = _query_hashes(q)
                match = state.ctx.scanner.matcher.match(hashes, banks=[name], tenant=tenant)
                results = _found(state, match)
            except RempartError as e:
                error = e.message
        return _bank_page(request, state, tenant, name, results=results, query=q, error=error)

    try:
        return await run_in_threadpool(run)
    except RempartError as e:
        return render(request, "error.html", status_code=e.status, message=e.message)


@router.post("/banks/{name}/search", include_in_schema=False)
async def search_file(request: Request, state: State, viewer: Post, name: str) -> Response:
    """Search the bank with a file: hashed in memory like a scan, never stored."""
    tenant = viewer.user.tenant
    data = await read_upload(request, state.settings.limits.max_bytes)

    def run() -> Response:
        try:
            result = state.ctx.scanner.scan_bytes(data, banks=[name], tenant=tenant)
            results = _found(state, result.match)
            error = None
        except RempartError as e:
            results, error = None, e.message
        return _bank_page(
            request, state, tenant, name, results=results, error=error, searched_file=True
        )

    return await run_in_threadpool(run)


@router.post("/banks/{name}/edit", include_in_schema=False)
async def edit_bank(
    request: Request,
    state: State,
    viewer: AdminPost,
    name: str,
    threshold: Annotated[int, Form(ge=0, le=64)],
    kind: Annotated[Literal["block", "allow"], Form()],
    enabled: Annotated[str, Form()] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Change threshold, kind, enabled, description (admins)."""
    user = viewer.user

    def run() -> None:
        state.ctx.store.update_bank(
            name,
            user.tenant,
            threshold=threshold,
            kind=kind,
            enabled=bool(enabled),
            description=description,
        )
        state.ctx.audit.append(
            tenant=user.tenant,
            actor=user.actor,
            action="bank.update",
            target=name,
            details={"threshold": threshold, "kind": kind, "enabled": bool(enabled)},
        )

    try:
        await run_in_threadpool(run)
    except RempartError as e:  # a code, never text (see render.error_code)
        return redirect(request, f"/ui/banks/{name}?error={e.code}")
    return redirect(request, f"/ui/banks/{name}?ok=bank.saved")


@router.post("/banks/{name}/import", include_in_schema=False)
async def import_list(
    request: Request,
    state: State,
    viewer: AdminPost,
    name: str,
    fmt: Format | None = None,
    mode: Literal["atomic", "partial"] = "atomic",
) -> Response:
    """Import a hash list sent as the raw body; streams ``{"progress": n}`` lines, then
    ``{"report": ...}`` or ``{"error": ...}`` (the page's progress bar reads them)."""
    user = viewer.user
    await run_in_threadpool(state.ctx.store.get_bank, name, user.tenant)
    limit = state.settings.service.max_import_bytes
    # A hash list, not media: spooling it to a temporary file is fine (as the API does).
    spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed and unlinked below
        prefix="rempart-ui-import-", suffix=".txt", delete=False
    )
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the hash list is over {limit} bytes")
            spool.write(chunk)
        spool.close()
    except BaseException:
        spool.close()
        os.unlink(spool.name)
        raise
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def worker() -> None:
        try:
            report = import_file(
                state.ctx.store,
                name,
                spool.name,
                fmt=fmt,
                mode=mode,
                tenant=user.tenant,
                on_progress=lambda n: events.put({"progress": n}),
                progress_every=1000,
            )
            state.ctx.audit.append(
                tenant=user.tenant,
                actor=user.actor,
                action="entries.import",
                target=name,
                details={"added": report.added, "mode": mode},
            )
            events.put({"report": report.to_dict()})
        except RempartError as e:
            events.put({"error": e.to_dict()})
        except Exception as e:  # reported to the page, not swallowed
            events.put({"error": {"code": "internal_error", "message": str(e)}})
        finally:
            os.unlink(spool.name)
            events.put(None)

    threading.Thread(target=worker, daemon=True).start()

    def lines() -> Iterator[bytes]:
        while (item := events.get()) is not None:
            yield (json.dumps(item) + "\n").encode()

    return secure(StreamingResponse(lines(), media_type="application/x-ndjson"), request)


@router.get("/banks/{name}/export", include_in_schema=False)
async def export(
    request: Request, state: State, viewer: Session, name: str, format: Format = "csv"
) -> Response:
    """Download the bank's entries as CSV, JSONL or HMA lines."""
    user = viewer.user
    fd, path = tempfile.mkstemp(prefix="rempart-ui-export-", suffix=f".{format}")
    os.close(fd)

    def run() -> None:
        export_bank(state.ctx.store, name, path, fmt=format, tenant=user.tenant)
        state.ctx.audit.append(
            tenant=user.tenant,
            actor=user.actor,
            action="bank.export",
            target=name,
            details={"format": format},
        )

    try:
        await run_in_threadpool(run)
    except RempartError as e:
        os.unlink(path)
        t = translator(request)
        return render(
            request, "error.html", status_code=e.status, message=t("error.generic") + e.message
        )
    media = {"csv": "text/csv", "jsonl": "application/x-ndjson", "hma": "text/plain"}[format]
    response = FileResponse(
        path,
        media_type=media,
        filename=f"{name}.{format}",
        background=BackgroundTask(os.unlink, path),
    )
    return secure(response, request)
