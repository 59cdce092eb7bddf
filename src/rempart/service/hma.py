"""HMA 2.0 compatibility: the lookup and bank-curation routes of Meta's Hasher-Matcher-Actioner.

HMA 2.0 (OpenMediaMatch) clients call ``/m/...`` (matching) and ``/c/...`` (curation). These
routes answer with HMA's JSON shapes on Rempart's banks, so a platform can point an HMA
integration at Rempart and switch. What differs, on purpose (see ``docs/hma-compatibility.md``):

- every route needs an API key (``Authorization: Bearer``); HMA has no authentication;
- URLs are never fetched server-side (``?url=`` is refused): send the file, or its hashes;
- a bank-content id is a Rempart entry id: one per hash, not one per piece of content;
- Rempart has no match sampling: ``matching_enabled_ratio`` is 0 or 1;
- errors are Rempart's problem JSON, with HMA's ``message`` key added.

The routes only translate: matching goes through the same matcher as ``/v1`` (per-bank
thresholds, quality gate, allow banks), curation through the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from rempart.errors import NotFoundError, RempartError
from rempart.exchanges.hma import HMA_NAMES
from rempart.hashing import MediaHashes, hash_media
from rempart.matcher import Match, MatchResult
from rempart.service.api.banks import EntryId
from rempart.service.api.scan import _UPLOAD_DOC, _outcome
from rempart.service.auth import Principal, require_scope
from rempart.service.body import read_upload
from rempart.service.context import ServiceContext, get_context
from rempart.signals import get_signal
from rempart.store import BankInfo, EntryInfo, NewEntry

#: HMA's ``BankContentConfig.ENABLED``: the ``disable_until_ts`` of content that matches.
_CONTENT_ENABLED: Final = 1
#: HMA caps content notes at 255 characters.
_MAX_NOTE: Final = 255


class _HMARoute(APIRoute):
    """A route whose error bodies also carry HMA's ``message`` key.

    Errors are rendered by the app's own problem handlers (same status, ``code`` and
    headers as ``/v1``); an HMA client that reads ``message`` still finds the explanation.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (RempartError, RequestValidationError, HTTPException) as exc:
                render = next(
                    request.app.exception_handlers[cls]
                    for cls in type(exc).__mro__
                    if cls in request.app.exception_handlers
                )
                problem: Response = await render(request, exc)
                body = json.loads(bytes(problem.body))
                body["message"] = body.get("detail", "")
                headers = {
                    k: v
                    for k, v in problem.headers.items()
                    if k.lower() not in ("content-length", "content-type")
                }
                return JSONResponse(
                    body,
                    status_code=problem.status_code,
                    headers=headers,
                    media_type=problem.media_type,
                )

        return route


router = APIRouter(tags=["hma"], route_class=_HMARoute)

Ctx = Annotated[ServiceContext, Depends(get_context)]
Scanner = Annotated[Principal, Depends(require_scope("scan"))]
Reader = Annotated[Principal, Depends(require_scope("banks:read"))]
Writer = Annotated[Principal, Depends(require_scope("banks:write"))]
BanksParam = Annotated[
    str | None, Query(description="Comma-separated bank names to search (default: all)")
]


# -- shapes -------------------------------------------------------------------------------------


class HMAMatch(BaseModel):
    """One matched bank entry, as HMA reports it."""

    bank_content_id: int
    #: HMA sends distances as strings (``"4"``); exact signals give ``"0"``.
    distance: str


class RawLookupOut(BaseModel):
    """Entry ids (or ids with distances) that the hash matched."""

    matches: list[int | HMAMatch]


class HMABank(BaseModel):
    """A bank as HMA shows it."""

    name: str
    #: 1.0 (enabled) or 0.0 (disabled): Rempart does not sample matches.
    matching_enabled_ratio: float


class BankCreateIn(BaseModel):
    """HMA's bank creation body."""

    name: str = Field(min_length=1, max_length=64)
    enabled_ratio: float | None = Field(default=None, ge=0, le=1)
    enabled: bool | None = None


class BankUpdateIn(BaseModel):
    """HMA's bank update body (absent fields stay as they are)."""

    name: str | None = Field(default=None, max_length=64)
    enabled_ratio: float | None = Field(default=None, ge=0, le=1)
    enabled: bool | None = None


class AddSignalsOut(BaseModel):
    """What adding content created: HMA's ``id`` and ``signals``, plus each entry's id."""

    id: int
    signals: dict[str, str]
    #: Rempart extension: every hash is its own entry (HMA groups them under one ``id``).
    entry_ids: dict[str, int]


class ContentOut(BaseModel):
    """One bank content item (a Rempart entry), as HMA shows it."""

    id: int
    disable_until_ts: int
    original_media_uri: str | None = None
    bank: HMABank
    signals: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    note: str | None = None


# -- translation helpers ------------------------------------------------------------------------


def _signal_name(hma_name: str) -> str:
    """The Rempart signal for an HMA signal type name, or a 400 saying which exist."""
    name = HMA_NAMES.get(hma_name.strip().lower())
    if name is None:
        raise RempartError(
            f"no such signal type {hma_name!r}",
            code="unknown_signal_type",
            hint=f"use one of: {', '.join(HMA_NAMES)}",
        )
    return name


def _hma_name(signal: str, *, video: bool = False) -> str:
    """The name an HMA client knows a Rempart signal by: HMA's only MD5 is ``video_md5``,
    so a video's MD5 goes by that name; other signals keep Rempart's."""
    return "video_md5" if video and signal == "md5" else signal


def _ratio(b: BankInfo) -> HMABank:
    return HMABank(name=b.name, matching_enabled_ratio=1.0 if b.enabled else 0.0)


def _enabled_from_ratio(ratio: float) -> bool:
    if ratio not in (0.0, 1.0):
        raise RempartError(
            f"enabled_ratio {ratio} is not supported: Rempart does not sample matches",
            code="unsupported_enabled_ratio",
            hint="use 1.0 (enabled) or 0.0 (disabled)",
        )
    return ratio == 1.0


def _requested(
    ctx: ServiceContext, p: Principal, banks: str | None, *, enabled_only: bool
) -> list[str] | None:
    """The named banks that exist (HMA ignores unknown names), or None for all enabled.

    ``enabled_only`` also drops disabled banks, as HMA's lookups do (its raw lookup does not).
    """
    if banks is None:
        return None
    shared = ctx.shared_with(p.tenant)
    known = []
    for name in dict.fromkeys(n.strip() for n in banks.split(",") if n.strip()):
        try:
            (bank,) = ctx.scanner.matcher.banks_for([name], p.tenant, shared)
        except NotFoundError:
            continue
        if bank.enabled or not enabled_only:
            known.append(name)
    return known


def _hash_lookup(
    ctx: ServiceContext,
    p: Principal,
    signal_type: str,
    signal: str,
    banks: str | None,
    *,
    raw: bool,
) -> tuple[MediaHashes, MatchResult]:
    name = _signal_name(signal_type)
    value = get_signal(name).validate(signal)
    hashes = MediaHashes(
        kind="image",
        format="none",
        width=0,
        height=0,
        md5=value if name == "md5" else "",
        sha256=value if name == "sha256" else "",
        pdq=value if name == "pdq" else None,
    )
    match = ctx.scanner.matcher.match(
        hashes,
        banks=_requested(ctx, p, banks, enabled_only=not raw),
        tenant=p.tenant,
        shared=ctx.shared_with(p.tenant),
    )
    return hashes, match


def _by_bank(matches: Iterable[Match]) -> dict[str, list[HMAMatch]]:
    out: dict[str, list[HMAMatch]] = {}
    for m in matches:
        out.setdefault(m.bank, []).append(
            HMAMatch(bank_content_id=m.entry_id, distance=str(m.distance))
        )
    return out


def _by_signal(hashes: MediaHashes, match: MatchResult) -> dict[str, dict[str, list[HMAMatch]]]:
    """HMA's upload lookup shape: signal type -> bank -> matches.

    The signal HMA computes for the content type is always there (``pdq`` for photos,
    ``video_md5`` for videos), empty when nothing matched; others appear when they matched.
    """
    primary = "video_md5" if hashes.kind == "video" else "pdq"
    out: dict[str, dict[str, list[HMAMatch]]] = {primary: {}}
    for signal in dict.fromkeys(m.signal for m in match.matches):
        out[_hma_name(signal, video=hashes.kind == "video")] = _by_bank(
            m for m in match.matches if m.signal == signal
        )
    return out


def _no_url(url: str | None) -> None:
    if url:
        raise RempartError(
            "Rempart never fetches URLs server-side",
            code="url_fetch_unsupported",
            hint="send the file itself (multipart field `photo`, `video` or `file`), "
            "or its hash with signal_type and signal",
        )


def _content(
    ctx: ServiceContext, bank: str, tenant: str, content_id: int
) -> tuple[BankInfo, EntryInfo]:
    b = ctx.store.get_bank(bank, tenant=tenant)
    found = ctx.store.get_entries([content_id])
    if not found or found[0].bank_id != b.id:
        raise NotFoundError(
            f"bank {bank!r} has no content {content_id}",
            code="entry_not_found",
            hint=f"list the bank's entries with GET /v1/banks/{bank}/export",
        )
    return b, found[0]


def _note(note: object) -> str | None:
    if not note:
        return None
    if not isinstance(note, str) or len(note) > _MAX_NOTE:
        raise RempartError(
            f"note must be a string of at most {_MAX_NOTE} characters",
            code="bad_note",
            hint="shorten the note",
        )
    return note


def _audit(ctx: ServiceContext, p: Principal, action: str, target: str, **details: Any) -> None:
    ctx.audit.append(
        tenant=p.tenant,
        actor=p.actor,
        action=action,
        target=target,
        details={**details, "via": "hma"},
    )


def _add(
    ctx: ServiceContext,
    p: Principal,
    bank: BankInfo,
    entries: list[tuple[str, NewEntry]],
    via: str,
) -> AddSignalsOut:
    """Add ``entries`` (each with the name the client knows its signal by) and answer with
    each one's id, new or already there."""
    if not entries:
        raise RempartError(
            "no signals given",
            code="no_signals",
            hint='send e.g. {"pdq": "<64 hex>"}',
        )
    result = ctx.store.add_entries(bank.id, [e for _, e in entries], tenant=p.tenant)
    ids: dict[str, int] = {}
    signals: dict[str, str] = {}
    for name, e in entries:
        # A hash already in the bank keeps its id: Rempart does not bank the same hash twice.
        (existing,) = ctx.store.lookup_exact(e.signal, e.value, bank_ids=[bank.id])
        ids[name] = existing.id
        if e.signal != "vpdq":  # its value is the video's MD5, listed under video_md5
            signals[name] = e.value
    _audit(ctx, p, "entries.add", bank.name, added=result.added, route=via)
    return AddSignalsOut(id=next(iter(ids.values())), signals=signals, entry_ids=ids)


# -- matching (/m) ------------------------------------------------------------------------------


@router.get("/m/raw_lookup", summary="HMA: look up a hash, entry ids only")
def raw_lookup(
    p: Scanner,
    ctx: Ctx,
    signal_type: Annotated[str, Query(description="pdq, video_md5 (= md5), md5 or sha256")],
    signal: Annotated[str, Query(description="The hash, hex")],
    banks: BanksParam = None,
    include_distance: Annotated[bool, Query()] = False,
) -> RawLookupOut:
    """Every entry the hash matches -- allow-bank and suppressed matches included -- as
    entry ids, or as ``{bank_content_id, distance}`` with ``include_distance``."""
    _, match = _hash_lookup(ctx, p, signal_type, signal, banks, raw=True)
    found = sorted(
        [*match.matches, *match.suppressed, *match.allowed],
        key=lambda m: (m.distance, m.entry_id),
    )
    if include_distance:
        return RawLookupOut(
            matches=[HMAMatch(bank_content_id=m.entry_id, distance=str(m.distance)) for m in found]
        )
    return RawLookupOut(matches=[m.entry_id for m in found])


@router.get("/m/lookup", summary="HMA: look up a hash, matches by bank")
def lookup(
    p: Scanner,
    ctx: Ctx,
    signal_type: Annotated[str | None, Query(description="pdq, video_md5, md5 or sha256")] = None,
    signal: Annotated[str | None, Query(description="The hash, hex")] = None,
    banks: BanksParam = None,
    url: Annotated[str | None, Query(description="Refused: Rempart never fetches URLs")] = None,
    seed: Annotated[str | None, Query(description="Accepted and ignored (no sampling)")] = None,
    bypass_coinflip: Annotated[bool, Query(description="Accepted and ignored")] = False,
) -> dict[str, list[HMAMatch]]:
    """``{bank: [{bank_content_id, distance}]}`` for the enabled banks' matches that decide
    the verdict (a match in an allow bank empties the answer, as in ``/v1/lookup``)."""
    _no_url(url)
    if not signal or not signal_type:
        raise RempartError(
            "both signal_type and signal are required",
            code="no_hash",
            hint="e.g. /m/lookup?signal_type=pdq&signal=<64 hex>, or POST the file",
        )
    hashes, match = _hash_lookup(ctx, p, signal_type, signal, banks, raw=False)
    _outcome(ctx, p, hashes, match, {}, record=False)
    return _by_bank(match.matches)


@router.post("/m/lookup", openapi_extra=_UPLOAD_DOC, summary="HMA: look up an uploaded file")
async def lookup_upload(
    request: Request,
    response: Response,
    p: Scanner,
    ctx: Ctx,
    banks: BanksParam = None,
    seed: Annotated[str | None, Query(description="Accepted and ignored (no sampling)")] = None,
    bypass_coinflip: Annotated[bool, Query(description="Accepted and ignored")] = False,
) -> dict[str, dict[str, list[HMAMatch]]]:
    """Hash the upload in memory and match it: ``{signal_type: {bank: [matches]}}``.

    HMA's form names the file field after the content type (``photo``, ``video``); Rempart
    sniffs the type from the bytes and also takes ``file`` or a raw body. The scan is
    recorded like ``/v1/scan``; its id is in the ``Rempart-Scan-Id`` header (for feedback).
    """
    data = await read_upload(request, ctx.settings.limits.max_bytes)
    result = await run_in_threadpool(
        ctx.scanner.scan_bytes,
        data,
        banks=_requested(ctx, p, banks, enabled_only=True),
        tenant=p.tenant,
        shared=ctx.shared_with(p.tenant),
    )
    body = _outcome(ctx, p, result.hashes, result.match, result.timings_ms, record=True)
    response.headers["Rempart-Scan-Id"] = body["id"]
    if body["verdict"] == "review":  # the moderator UI keeps a blurred, sealed preview
        from rempart.service.ui.previews import keep_preview

        await keep_preview(request, p.tenant, body["id"], data)
    return _by_signal(result.hashes, result.match)


@router.post("/m/compare", summary="HMA: compare pairs of hashes")
def compare(
    p: Scanner,
    ctx: Ctx,
    body: Annotated[
        dict[str, list[str]],
        Body(examples=[{"pdq": ["<64 hex>", "<64 hex>"]}]),
    ],
) -> dict[str, list[bool | dict[str, int]]]:
    """``{signal_type: [h1, h2]}`` -> ``{signal_type: [match, {"distance": d}]}``.

    PDQ matches at the service's ``pdq_threshold`` (31, HMA's too); exact signals give
    ``[equal, {}]``.
    """
    out: dict[str, list[bool | dict[str, int]]] = {}
    for hma_name, pair in body.items():
        if len(pair) != 2:
            raise RempartError(
                f"{hma_name}: give exactly 2 hashes to compare, not {len(pair)}",
                code="bad_compare",
                hint='e.g. {"pdq": ["<64 hex>", "<64 hex>"]}',
            )
        sig = get_signal(_signal_name(hma_name))
        left, right = sig.validate(pair[0]), sig.validate(pair[1])
        if sig.exact:
            out[hma_name] = [left == right, {}]
        else:
            d = sig.distance(left, right)
            out[hma_name] = [d <= ctx.settings.pdq_threshold, {"distance": d}]
    return out


# -- curation (/c) ------------------------------------------------------------------------------


@router.get("/c/banks", summary="HMA: list banks")
def list_banks(p: Reader, ctx: Ctx) -> list[HMABank]:
    """The key's tenant's banks, as ``[{name, matching_enabled_ratio}]``."""
    return [_ratio(b) for b in ctx.store.list_banks(tenant=p.tenant)]


@router.post("/c/banks", status_code=201, summary="HMA: create a bank")
def create_bank(body: BankCreateIn, p: Writer, ctx: Ctx) -> HMABank:
    """A block bank with the default threshold (31); ``enabled_ratio`` 0 or 1."""
    if body.enabled_ratio is not None:
        enabled = _enabled_from_ratio(body.enabled_ratio)
    else:
        enabled = body.enabled if body.enabled is not None else True
    b = ctx.store.create_bank(body.name, tenant=p.tenant, enabled=enabled)
    _audit(ctx, p, "bank.create", b.name, kind=b.kind, threshold=b.threshold)
    return _ratio(b)


@router.get("/c/bank/{bank_name}", summary="HMA: get a bank")
def get_bank(bank_name: str, p: Reader, ctx: Ctx) -> HMABank:
    """One bank; 404 when the tenant has none of that name."""
    return _ratio(ctx.store.get_bank(bank_name, tenant=p.tenant))


@router.put("/c/bank/{bank_name}", summary="HMA: update a bank")
def update_bank(bank_name: str, body: BankUpdateIn, p: Writer, ctx: Ctx) -> HMABank:
    """Enable or disable (``enabled``, or ``enabled_ratio`` 0/1). Renaming is refused."""
    current = ctx.store.get_bank(bank_name, tenant=p.tenant)
    if body.name is not None and body.name != current.name:
        raise RempartError(
            "renaming a bank is not supported",
            code="rename_unsupported",
            hint="create the new bank, import the old one's export, then delete the old one",
        )
    enabled = body.enabled
    if body.enabled_ratio is not None:
        enabled = _enabled_from_ratio(body.enabled_ratio)
    b = ctx.store.update_bank(bank_name, p.tenant, enabled=enabled)
    if enabled is not None:
        _audit(ctx, p, "bank.update", b.name, enabled=enabled)
    return _ratio(b)


@router.delete("/c/bank/{bank_name}", summary="HMA: delete a bank")
def delete_bank(bank_name: str, p: Writer, ctx: Ctx) -> dict[str, str]:
    """Delete the bank and its entries. Like HMA, deleting a missing bank succeeds."""
    try:
        b = ctx.store.delete_bank(bank_name, p.tenant)
    except NotFoundError:
        return {"message": "Done"}
    _audit(ctx, p, "bank.delete", b.name, entries=b.entry_count)
    return {"message": "Done"}


@router.post("/c/bank/{bank_name}/signal", summary="HMA: add hashes to a bank")
def add_signals(
    bank_name: str,
    p: Writer,
    ctx: Ctx,
    body: Annotated[
        dict[str, str],
        Body(examples=[{"pdq": "<64 hex>", "note": "optional, up to 255 characters"}]),
    ],
) -> AddSignalsOut:
    """``{signal_type: hash, ..., "note": "..."}``: each hash becomes an entry; a hash
    already in the bank keeps its id."""
    bank = ctx.store.get_bank(bank_name, tenant=p.tenant)
    fields = dict(body)
    note = _note(fields.pop("note", None))
    meta = {"note": note} if note else {}
    entries = [(k, NewEntry(signal=_signal_name(k), value=v, meta=meta)) for k, v in fields.items()]
    return _add(ctx, p, bank, entries, "signal")


@router.post(
    "/c/bank/{bank_name}/content",
    openapi_extra=_UPLOAD_DOC,
    summary="HMA: add an uploaded file's hashes to a bank",
)
async def add_content(
    request: Request,
    bank_name: str,
    p: Writer,
    ctx: Ctx,
    url: Annotated[str | None, Query(description="Refused: Rempart never fetches URLs")] = None,
) -> AddSignalsOut:
    """Hash the upload in memory (never stored) and bank its PDQ and MD5 (a video: its
    frames and MD5)."""
    _no_url(url)
    bank = ctx.store.get_bank(bank_name, tenant=p.tenant)
    data = await read_upload(request, ctx.settings.limits.max_bytes)
    hashes = await run_in_threadpool(hash_media, data, limits=ctx.settings.limits)
    video = hashes.kind == "video"
    entries: list[tuple[str, NewEntry]] = []
    if video and hashes.frames:
        frames = tuple(f["pdq"] for f in hashes.frames)
        entries.append(("vpdq", NewEntry(signal="vpdq", value=hashes.md5, frames=frames)))
    elif hashes.pdq:
        entries.append(
            ("pdq", NewEntry(signal="pdq", value=hashes.pdq, quality=hashes.pdq_quality))
        )
    entries.append((_hma_name("md5", video=video), NewEntry(signal="md5", value=hashes.md5)))
    return await run_in_threadpool(_add, ctx, p, bank, entries, "content")


@router.get(
    "/c/bank/{bank_name}/content/{content_id}",
    response_model=ContentOut,
    summary="HMA: get bank content",
)
def get_content(
    bank_name: str,
    content_id: EntryId,
    p: Reader,
    ctx: Ctx,
    include_signals: Annotated[bool, Query()] = False,
    include_metadata: Annotated[bool, Query()] = True,
) -> Response:
    """One entry as HMA content: ``{id, disable_until_ts, original_media_uri, bank}``, with
    ``signals``, ``metadata`` and ``note`` when asked for and present (as HMA leaves them
    out)."""
    bank, e = _content(ctx, bank_name, p.tenant, content_id)
    meta = dict(e.meta)
    note = meta.pop("note", None)
    out: dict[str, Any] = {
        "id": e.id,
        "disable_until_ts": _CONTENT_ENABLED,
        "original_media_uri": None,
        "bank": _ratio(bank).model_dump(),
    }
    if include_signals:
        out["signals"] = {e.signal: e.value}
    if include_metadata and meta:
        out["metadata"] = meta
    if isinstance(note, str):
        out["note"] = note
    return JSONResponse(out)


@router.delete("/c/bank/{bank_name}/content/{content_id}", summary="HMA: remove bank content")
def delete_content(bank_name: str, content_id: EntryId, p: Writer, ctx: Ctx) -> dict[str, int]:
    """Remove one entry; ``{"deleted": 1}``, or ``{"deleted": 0}`` when it was not there."""
    result = ctx.store.remove_entries(bank_name, [content_id], tenant=p.tenant)
    if result.removed:
        _audit(ctx, p, "entries.remove", bank_name, ids=result.removed)
    return {"deleted": len(result.removed)}
