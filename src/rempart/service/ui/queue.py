"""The review queue: the list, one item, its preview, reveal, and decisions."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from rempart.errors import RempartError
from rempart.service.ui import decisions
from rempart.service.ui.render import redirect, render, secure, translator
from rempart.service.ui.security import Post, Session, State
from rempart.store.reviews import QueueItem

router = APIRouter()


def _view(item: QueueItem, size: tuple[int, int] | None) -> dict[str, Any]:
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
        {"kind": "face", "label": f"face {i + 1}", "box": b}
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
    request: Request, state: State, viewer: Session, view: str = "pending"
) -> Response:
    """The items waiting for review, by priority and age."""
    escalated = view == "escalated"
    items = await run_in_threadpool(state.queue.pending, viewer.user.tenant, escalated=escalated)
    return render(request, "queue.html", items=items, view="escalated" if escalated else "pending")


def _neighbours(items: list[QueueItem], scan_id: str) -> tuple[str | None, str | None]:
    ids = [i.scan_id for i in items]
    if scan_id not in ids:
        return None, ids[0] if ids else None
    at = ids.index(scan_id)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def _load_item(state: State, tenant: str, scan_id: str) -> dict[str, Any] | None:
    item = state.queue.item(tenant, scan_id)
    if item is None:
        return None
    state.previews.purge()  # on access, as well as in the background
    size = state.previews.size_of(tenant, [scan_id]).get(scan_id)
    view = _view(item, size)
    view["has_preview"] = size is not None
    banks = state.ctx.store.list_banks(tenant=tenant)
    view["block_banks"] = [b.name for b in banks if b.kind == "block"]
    view["allow_banks"] = [b.name for b in banks if b.kind == "allow"]
    pending = state.queue.pending(tenant, escalated=item.decision == "escalate")
    view["prev"], view["next"] = _neighbours(pending, scan_id)
    view["position"] = next((n for n, i in enumerate(pending, 1) if i.scan_id == scan_id), None)
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
    view["total"] = len(pending)
    return view


@router.get("/queue/{scan_id}", include_in_schema=False)
async def item_page(request: Request, state: State, viewer: Session, scan_id: str) -> Response:
    """One item: verdict, reasons, matches, evidence, the blurred preview, the decisions."""
    item = await run_in_threadpool(_load_item, state, viewer.user.tenant, scan_id)
    if item is None:
        t = translator(request)
        return render(request, "error.html", status_code=404, message=t("queue.not_found"))
    return render(
        request,
        "item.html",
        item=item,
        previews_on=state.settings.ui.previews,
        error=request.query_params.get("error"),
    )


@router.get("/queue/{scan_id}/preview", include_in_schema=False)
async def preview(request: Request, state: State, viewer: Session, scan_id: str) -> Response:
    """The stored preview (already blurred and greyscale), decrypted for this response."""
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
    before = await run_in_threadpool(state.queue.pending, tenant)
    _, next_id = _neighbours(before, scan_id)
    try:
        outcome = await run_in_threadpool(
            lambda: decisions.decide(
                state, viewer.user, scan_id, decision, bank=bank or None, note=note
            )
        )
    except RempartError as e:
        from urllib.parse import quote

        return redirect(request, f"/ui/queue/{scan_id}?error={quote(e.message)}")
    done = f"ok=decided.{outcome.decision}"
    if next_id and next_id != scan_id:
        return redirect(request, f"/ui/queue/{next_id}?{done}")
    return redirect(request, f"/ui/queue?{done}")
