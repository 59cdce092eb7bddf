"""The review queue: the list, one item, its preview, reveal, and decisions."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any, Final

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from rempart.errors import RempartError
from rempart.service.ui import decisions
from rempart.service.ui.i18n import Translator
from rempart.service.ui.render import redirect, render, secure, translator
from rempart.service.ui.security import Post, Session, State
from rempart.store.reviews import QueueItem

router = APIRouter()

#: Items per queue page (the pager moves through the rest; counts are never capped).
PAGE_SIZE: Final = 100


def _view(item: QueueItem, size: tuple[int, int] | None, t: Translator) -> dict[str, Any]:
    """What the item page shows, from the scan record's result."""
    result = item.result
    evidence = result.get("evidence") or {}
    nudity = evidence.get("nudity") or {}
    faces = evidence.get("faces") or []
    boxes = [
        {"kind": "nudity", "label": f"{r.get('class', '?')} {r.get('score', 0):.2f}", "box": b}
        for r in nudity.get("regions", [])
        if isinstance(b := r.get("box"), list) and len(b) == 4
    ] + [
        {"kind": "face", "label": t("item.face", n=i + 1), "box": b}
        for i, f in enumerate(faces)
        if isinstance(b := f.get("box"), list) and len(b) == 4
    ]
    return {
        "id": item.scan_id,
        "created_at": item.created_at,
        "priority": item.priority,
        "kind": item.kind,
        "decision": item.decision,
        "verdict": result.get("verdict", "review"),
        "reasons": result.get("reasons", []),
        "matches": result.get("matches", []),
        "suppressed": result.get("suppressed", []),
        "provenance": (evidence.get("provenance") or {}).get("findings", []),
        "watermarks": evidence.get("watermarks") or [],
        "detectors": evidence.get("detectors") or [],
        "nudity": nudity.get("regions", []),
        "nudity_threshold": nudity.get("threshold"),
        "faces": faces,
        "boxes": boxes,
        "source": result.get("source") or {},
        "size": size,
    }


@router.get("/queue", include_in_schema=False)
async def queue_page(
    request: Request, state: State, viewer: Session, view: str = "pending", page: int = 1
) -> Response:
    """The items waiting for review, by priority and age, a page at a time."""
    escalated = view == "escalated"
    tenant = viewer.user.tenant
    total = await run_in_threadpool(state.queue.count, tenant, escalated=escalated)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    items = await run_in_threadpool(
        lambda: state.queue.pending(
            tenant, escalated=escalated, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
    )
    return render(
        request,
        "queue.html",
        items=items,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1,
        view="escalated" if escalated else "pending",
    )


def _preview_state(state: State, tenant: str, item: QueueItem) -> tuple[str, Any]:
    """``(state, size)``: ``shown``, ``unavailable`` (kept, but sealed under another key),
    ``deleted`` (the item was decided), ``none`` (nothing kept, or expired) or ``off``
    (previews turned off: never served)."""
    if not state.settings.ui.previews:
        return "off", None
    state.previews.purge()  # on access, as well as in the background
    info = state.previews.info(tenant, item.scan_id)
    if info is None:
        return ("deleted" if item.decision in ("confirm", "reject") else "none"), None
    return ("shown" if info.readable else "unavailable"), (info.width, info.height)


def _load_item(state: State, tenant: str, scan_id: str, t: Translator) -> dict[str, Any] | None:
    item = state.queue.item(tenant, scan_id)
    if item is None:
        return None
    preview, size = _preview_state(state, tenant, item)
    view = _view(item, size, t)
    view["preview"] = preview
    banks = state.ctx.store.list_banks(tenant=tenant)
    view["block_banks"] = [b.name for b in banks if b.kind == "block"]
    view["allow_banks"] = [b.name for b in banks if b.kind == "allow"]
    where = state.queue.position(tenant, scan_id, escalated=item.decision == "escalate")
    view["prev"], view["next"], view["position"] = where.prev, where.next, where.position
    view["total"] = where.total
    decided = state.queue.decision(tenant, scan_id)
    view["decided"] = (
        None
        if decided is None
        else {
            "decision": decided.decision,
            "actor": decided.actor,
            "bank": decided.bank,
            "note": decided.note,
            "at": decided.decided_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
    )
    return view


@router.get("/queue/{scan_id}", include_in_schema=False)
async def item_page(request: Request, state: State, viewer: Session, scan_id: str) -> Response:
    """One item: verdict, reasons, matches, evidence, the blurred preview, the decisions."""
    t = translator(request)
    item = await run_in_threadpool(_load_item, state, viewer.user.tenant, scan_id, t)
    if item is None:
        return render(request, "error.html", status_code=404, message=t("queue.not_found"))
    return render(request, "item.html", item=item)


@router.get("/queue/{scan_id}/preview", include_in_schema=False)
async def preview(request: Request, state: State, viewer: Session, scan_id: str) -> Response:
    """The stored preview (already blurred and greyscale), decrypted for this response;
    404 when there is none, it cannot be opened, or previews are turned off."""
    if not state.settings.ui.previews:
        return secure(Response(status_code=404), request)
    found = await run_in_threadpool(state.previews.get, viewer.user.tenant, scan_id)
    if found is None:
        return secure(Response(status_code=404), request)
    return secure(Response(found.jpeg, media_type="image/jpeg"), request)


@router.post("/queue/{scan_id}/reveal", include_in_schema=False)
async def reveal(request: Request, state: State, viewer: Post, scan_id: str) -> Response:
    """Record that a moderator removed the page's blur on one item (audit log)."""
    item = await run_in_threadpool(state.queue.item, viewer.user.tenant, scan_id)
    if item is None:
        return secure(JSONResponse({"ok": False}, status_code=404), request)
    await run_in_threadpool(
        lambda: state.ctx.audit.append(
            tenant=viewer.user.tenant,
            actor=viewer.user.actor,
            action="ui.preview.reveal",
            target=scan_id,
        )
    )
    return secure(JSONResponse({"ok": True}), request)


@router.post("/queue/{scan_id}/decide", include_in_schema=False)
async def decide(
    request: Request,
    state: State,
    viewer: Post,
    scan_id: str,
    decision: Annotated[str, Form(max_length=16)],
    block_bank: Annotated[str, Form(max_length=64)] = "",
    allow_bank: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Confirm (into ``block_bank``), reject (optionally into ``allow_bank``) or escalate, with
    an optional note, then go to the next item."""
    # One form carries both bank choices; only the one for the decision taken counts.
    bank = {"confirm": block_bank, "reject": allow_bank}.get(decision, "")
    tenant = viewer.user.tenant
    next_id = (await run_in_threadpool(state.queue.position, tenant, scan_id)).next
    try:
        outcome = await run_in_threadpool(
            lambda: decisions.decide(
                state, viewer.user, scan_id, decision, bank=bank or None, note=note
            )
        )
    except RempartError as e:
        # A code, never the message: the banner's text comes from the catalogue, so no
        # crafted link can put words on a moderator's screen (see render.error_code).
        return redirect(request, f"/ui/queue/{scan_id}?error={e.code}")
    done = f"ok=decided.{outcome.decision}"
    if next_id and next_id != scan_id:
        return redirect(request, f"/ui/queue/{next_id}?{done}")
    return redirect(request, f"/ui/queue?{done}")
