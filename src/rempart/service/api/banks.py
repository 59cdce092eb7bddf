"""Banks and their entries: create, list, get, update, delete, import, export, share."""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from rempart.errors import NotFoundError, RempartError
from rempart.exchanges import export_bank, import_file
from rempart.hashing import hash_media
from rempart.service.auth import Principal, require_scope
from rempart.service.body import read_upload
from rempart.service.context import ServiceContext, get_context
from rempart.service.problems import PayloadTooLarge
from rempart.store import BankInfo, EntryInfo, NewEntry
from rempart.store.scans import Precision

router = APIRouter(prefix="/v1/banks", tags=["banks"])

Reader = Annotated[Principal, Depends(require_scope("banks:read"))]
Writer = Annotated[Principal, Depends(require_scope("banks:write"))]
Ctx = Annotated[ServiceContext, Depends(get_context)]
EntryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The entry's id")]


def bank_dict(
    ctx: ServiceContext, b: BankInfo, precision: dict[int, Precision] | None = None
) -> dict[str, Any]:
    """A bank as the API shows it, with its precision from feedback (``precision``: already
    read for several banks, so a listing makes one query rather than one per bank)."""
    if precision is None:
        precision = ctx.scans.precision([b.id])
    p = precision.get(b.id)
    return {
        "name": b.name,
        "tenant": b.tenant,
        "description": b.description,
        "kind": b.kind,
        "threshold": b.threshold,
        "enabled": b.enabled,
        "entries": dict(b.counts),
        "created_at": b.created_at.isoformat(),
        "updated_at": b.updated_at.isoformat(),
        "feedback": {
            "true_positives": p.true_positives if p else 0,
            "false_positives": p.false_positives if p else 0,
            "precision": p.precision if p else None,
        },
        "shared_with": ctx.shares.tenants_of(b.id),
    }


def entry_dict(e: EntryInfo) -> dict[str, Any]:
    """An entry as the API shows it."""
    out: dict[str, Any] = {
        "id": e.id,
        "bank": e.bank,
        "signal": e.signal,
        "value": e.value,
        "quality": e.quality,
        "source": e.source,
        "tags": list(e.tags),
        "metadata": dict(e.meta),
        "added_at": e.added_at.isoformat(),
    }
    if e.frames:
        out["frames"] = list(e.frames)
    return out


class BankIn(BaseModel):
    """A new bank."""

    name: str = Field(min_length=1, max_length=64, examples=["reported"])
    description: str = ""
    kind: Literal["block", "allow"] = "block"
    threshold: int = Field(default=31, ge=0, le=64)
    enabled: bool = True


class BankPatch(BaseModel):
    """Fields to change on a bank (absent fields stay as they are)."""

    description: str | None = None
    kind: Literal["block", "allow"] | None = None
    threshold: int | None = Field(default=None, ge=0, le=64)
    enabled: bool | None = None


class EntryIn(BaseModel):
    """A hash to add."""

    signal: Literal["pdq", "md5", "sha256"]
    value: str = Field(min_length=1, max_length=128)
    quality: int | None = Field(default=None, ge=0, le=100)
    source: str | None = Field(default=None, max_length=256)
    tags: list[str] = Field(default_factory=list, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)


class EntriesIn(BaseModel):
    """Hashes to add in one transaction."""

    entries: list[EntryIn] = Field(min_length=1, max_length=10_000)


class ShareIn(BaseModel):
    """A tenant to share a bank with (read-only)."""

    tenant: str = Field(min_length=1, max_length=64)


def _audit(ctx: ServiceContext, p: Principal, action: str, target: str, **details: Any) -> None:
    ctx.audit.append(tenant=p.tenant, actor=p.actor, action=action, target=target, details=details)


@router.get("", summary="List banks")
def list_banks(p: Reader, ctx: Ctx) -> dict[str, Any]:
    """The tenant's banks with their sizes and precision."""
    banks = ctx.store.list_banks(tenant=p.tenant)
    precision = ctx.scans.precision([b.id for b in banks])
    return {"banks": [bank_dict(ctx, b, precision) for b in banks]}


@router.post("", status_code=201, summary="Create a bank")
def create_bank(body: BankIn, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Create a bank for the tenant."""
    b = ctx.store.create_bank(
        body.name,
        tenant=p.tenant,
        threshold=body.threshold,
        kind=body.kind,
        description=body.description,
        enabled=body.enabled,
    )
    _audit(ctx, p, "bank.create", b.name, kind=b.kind, threshold=b.threshold)
    return bank_dict(ctx, b)


@router.get("/{bank}", summary="Get a bank")
def get_bank(bank: str, p: Reader, ctx: Ctx) -> dict[str, Any]:
    """One bank."""
    return bank_dict(ctx, ctx.store.get_bank(bank, tenant=p.tenant))


@router.patch("/{bank}", summary="Update a bank")
def update_bank(bank: str, body: BankPatch, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Change threshold, kind, description or enabled."""
    b = ctx.store.update_bank(
        bank,
        p.tenant,
        threshold=body.threshold,
        kind=body.kind,
        enabled=body.enabled,
        description=body.description,
    )
    _audit(ctx, p, "bank.update", b.name, **body.model_dump(exclude_none=True))
    return bank_dict(ctx, b)


@router.delete("/{bank}", summary="Delete a bank and its entries")
def delete_bank(bank: str, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Hard-delete the bank and every entry in it."""
    b = ctx.store.delete_bank(bank, p.tenant)
    _audit(ctx, p, "bank.delete", b.name, entries=b.entry_count)
    return {"deleted": b.name}


@router.post("/{bank}/entries", status_code=201, summary="Add hashes")
def add_entries(bank: str, body: EntriesIn, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Add hashes (validated; all or nothing). Duplicates are counted, not errors."""
    entries = [
        NewEntry(
            signal=e.signal,
            value=e.value,
            quality=e.quality,
            source=e.source,
            tags=tuple(e.tags),
            meta=e.metadata,
        )
        for e in body.entries
    ]
    result = ctx.store.add_entries(bank, entries, tenant=p.tenant)
    _audit(ctx, p, "entries.add", bank, added=result.added)
    return {"added": result.added, "duplicates": result.duplicates, "ids": result.ids}


@router.post(
    "/{bank}/entries/file",
    status_code=201,
    summary="Add a media file's hashes",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def add_file(
    request: Request,
    bank: str,
    p: Writer,
    ctx: Ctx,
    source: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    """Hash the uploaded file in memory and add its PDQ (or frames) and MD5; the file is not
    kept."""
    data = await read_upload(request, ctx.settings.limits.max_bytes)
    hashes = await run_in_threadpool(hash_media, data, limits=ctx.settings.limits)
    common: dict[str, Any] = {"source": source}
    entries = [NewEntry(signal="md5", value=hashes.md5, **common)]
    if hashes.kind == "video" and hashes.frames:
        entries.append(
            NewEntry(
                signal="vpdq", value=hashes.md5, frames=[f["pdq"] for f in hashes.frames], **common
            )
        )
    elif hashes.pdq:
        entries.append(
            NewEntry(signal="pdq", value=hashes.pdq, quality=hashes.pdq_quality, **common)
        )
    result = ctx.store.add_entries(bank, entries, tenant=p.tenant)
    _audit(ctx, p, "entries.add", bank, added=result.added, from_file=True)
    return {
        "added": result.added,
        "duplicates": result.duplicates,
        "ids": result.ids,
        "hashes": hashes.to_dict(),
    }


def _entry_in(ctx: ServiceContext, bank: str, tenant: str, entry_id: int) -> EntryInfo:
    b = ctx.store.get_bank(bank, tenant=tenant)
    try:
        e = ctx.store.get_entry(entry_id)
    except NotFoundError:
        e = None
    if e is None or e.bank_id != b.id:
        raise NotFoundError(
            f"bank {bank!r} has no entry {entry_id}",
            code="entry_not_found",
            hint=f"list entries with GET /v1/banks/{bank}/export",
        )
    return e


@router.get("/{bank}/entries/{entry_id}", summary="Get an entry")
def get_entry(bank: str, entry_id: EntryId, p: Reader, ctx: Ctx) -> dict[str, Any]:
    """One entry of the bank."""
    return entry_dict(_entry_in(ctx, bank, p.tenant, entry_id))


@router.delete("/{bank}/entries/{entry_id}", summary="Delete an entry")
def delete_entry(bank: str, entry_id: EntryId, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Hard-delete one entry; it stops matching in every worker within a second."""
    result = ctx.store.remove_entries(bank, [entry_id], tenant=p.tenant)
    if not result.removed:
        raise NotFoundError(f"bank {bank!r} has no entry {entry_id}", code="entry_not_found")
    _audit(ctx, p, "entries.remove", bank, ids=[entry_id])
    return {"removed": entry_id}


@router.post(
    "/{bank}/import",
    summary="Bulk import a hash list (streamed)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_list(
    request: Request,
    bank: str,
    p: Writer,
    ctx: Ctx,
    fmt: Annotated[Literal["csv", "jsonl", "hma"] | None, Query(alias="format")] = None,
    mode: Annotated[Literal["atomic", "partial"], Query()] = "atomic",
) -> Any:
    """Import CSV, JSONL or HMA lines in one transaction (atomic, or partial with a report).

    With ``Accept: application/x-ndjson`` the answer streams progress lines
    (``{"progress": rows}``) and ends with ``{"report": ...}``.
    """
    ctx.store.get_bank(bank, tenant=p.tenant)
    limit = ctx.settings.service.max_import_bytes
    # A hash list is not media: spooling it to a temporary file (not memory) is fine, and it
    # lets a multi-GB list stream through the importer.
    spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed and unlinked below
        prefix="rempart-import-", suffix=".txt", delete=False
    )
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the hash list is over {limit} bytes",
                    hint="split it, or raise service.max_import_bytes",
                )
            spool.write(chunk)
        spool.close()
    except BaseException:
        spool.close()
        os.unlink(spool.name)
        raise

    def run(on_progress: Any) -> Any:
        try:
            report = import_file(
                ctx.store,
                bank,
                spool.name,
                fmt=fmt,
                mode=mode,
                tenant=p.tenant,
                on_progress=on_progress,
            )
        finally:
            os.unlink(spool.name)
        _audit(ctx, p, "entries.import", bank, added=report.added, mode=mode)
        return report

    if "application/x-ndjson" not in request.headers.get("accept", ""):
        report = await run_in_threadpool(run, None)
        return report.to_dict()

    events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def worker() -> None:
        try:
            report = run(lambda n: events.put({"progress": n}))
            events.put({"report": report.to_dict()})
        except RempartError as e:
            events.put({"error": e.to_dict()})
        except Exception as e:  # pragma: no cover - reported to the client, not swallowed
            events.put({"error": {"code": "internal_error", "message": str(e)}})
        finally:
            events.put(None)

    threading.Thread(target=worker, daemon=True).start()

    def lines() -> Iterator[bytes]:
        while (item := events.get()) is not None:
            yield (json.dumps(item) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/{bank}/export", summary="Export a bank")
def export(
    bank: str,
    p: Reader,
    ctx: Ctx,
    fmt: Annotated[Literal["csv", "jsonl", "hma"], Query(alias="format")] = "jsonl",
) -> StreamingResponse:
    """Stream the bank's entries as CSV, JSONL or HMA lines."""
    ctx.store.get_bank(bank, tenant=p.tenant)
    media = {"csv": "text/csv", "jsonl": "application/x-ndjson", "hma": "text/plain"}[fmt]
    rows: queue.Queue[str | None] = queue.Queue(maxsize=1000)

    class _Sink:
        def write(self, text: str) -> int:
            rows.put(text)
            return len(text)

    def worker() -> None:
        try:
            export_bank(ctx.store, bank, _Sink(), fmt=fmt, tenant=p.tenant)
        finally:
            rows.put(None)

    threading.Thread(target=worker, daemon=True).start()

    def body() -> Iterator[bytes]:
        while (text := rows.get()) is not None:
            yield text.encode()

    return StreamingResponse(
        body(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{bank}.{fmt}"'},
    )


@router.post("/{bank}/shares", summary="Share a bank read-only with another tenant")
def share(bank: str, body: ShareIn, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """The other tenant may match against this bank; it never sees or changes its entries."""
    ctx.shares.share(bank, p.tenant, body.tenant)
    _audit(ctx, p, "bank.share", bank, tenant=body.tenant)
    return bank_dict(ctx, ctx.store.get_bank(bank, tenant=p.tenant))


@router.delete("/{bank}/shares/{tenant}", summary="Stop sharing a bank")
def unshare(bank: str, tenant: str, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Stop sharing the bank with ``tenant``."""
    ctx.shares.unshare(bank, p.tenant, tenant)
    _audit(ctx, p, "bank.unshare", bank, tenant=tenant)
    return bank_dict(ctx, ctx.store.get_bank(bank, tenant=p.tenant))
