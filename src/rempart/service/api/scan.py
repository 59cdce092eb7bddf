"""Scanning uploads, hash-only lookups, and feedback on scans."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from rempart.entries import entries_for_values
from rempart.errors import RempartError
from rempart.evidence.collect import EvidenceResult, parse_signals
from rempart.hashing import MediaHashes
from rempart.matcher import MatchResult
from rempart.policy import decide
from rempart.service.auth import Principal, require_scope
from rempart.service.body import read_upload
from rempart.service.context import ServiceContext, get_context
from rempart.service.metrics import MATCHES, VERDICTS
from rempart.signals import get_signal
from rempart.store.scans import ScanRecord

router = APIRouter(prefix="/v1", tags=["scan"])

_UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file: a raw body (any content type) or a multipart form field "
        "named `file`. It is processed in memory and never stored.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


def _events(
    tenant: str, scan_id: str, verdict: str, result: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any]]]:
    payload = {
        "scan_id": scan_id,
        "verdict": verdict,
        "matches": result["matches"],
        "reasons": result["reasons"],
    }
    events = []
    if result["matches"]:
        events.append((tenant, "match", payload))
    if verdict in ("block", "review"):
        events.append((tenant, f"verdict.{verdict}", payload))
    return events


def _outcome(
    ctx: ServiceContext,
    principal: Principal,
    hashes: MediaHashes,
    match: MatchResult,
    timings: dict[str, float],
    *,
    record: bool,
    evidence: EvidenceResult | None = None,
    source: dict[str, str] | None = None,
) -> dict[str, Any]:
    evidence = evidence or EvidenceResult()
    verdict = decide(match, ctx.policy_for(principal.tenant), evidence.facts)
    scan_id = str(uuid.uuid4())
    body: dict[str, Any] = {"id": scan_id, "hashes": hashes.to_dict()}
    body.update(match.to_dict())
    body.update(evidence.parts)
    if evidence.warnings:
        body["warnings"] = body.get("warnings", []) + evidence.warnings
    body.update(verdict.to_dict())
    body["timings_ms"] = {k: round(v, 2) for k, v in timings.items()}
    for m in match.matches:
        MATCHES.labels(m.bank, m.signal).inc()
    VERDICTS.labels(verdict.action).inc()
    stored = None
    if record and ctx.settings.service.record_scans:
        result = {
            "matches": [{**m.to_dict(), "bank_id": m.bank_id} for m in match.matches],
            "suppressed": [{**m.to_dict(), "bank_id": m.bank_id} for m in match.suppressed],
            "verdict": verdict.action,
            "priority": verdict.priority,
            "reasons": verdict.reasons,
        }
        if evidence.parts:
            result["evidence"] = evidence.parts
        if source:
            result["source"] = source
        stored = ScanRecord(
            scan_id,
            principal.tenant,
            datetime.now(UTC),
            hashes.kind,
            verdict.action,
            hashes.pdq,
            hashes.md5,
            hashes.sha256,
            result,
        )
    ctx.submit(stored, _events(principal.tenant, scan_id, verdict.action, body))
    return body


@router.post("/scan", openapi_extra=_UPLOAD_DOC, summary="Scan an upload")
async def scan(
    request: Request,
    principal: Annotated[Principal, Depends(require_scope("scan"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
    bank: Annotated[list[str] | None, Query(description="Banks to match (default: all)")] = None,
    trim_borders: Annotated[bool | None, Query(description="Also match borderless")] = None,
    signals: Annotated[
        str | None,
        Query(
            description="Evidence to gather: all, or some of provenance, watermark, faces, "
            "detectors (hashes always)",
            max_length=200,
        ),
    ] = None,
    url: Annotated[
        str | None,
        Query(
            description="Where the platform found the upload (kept in the scan record, "
            "for evidence and notices)",
            max_length=2048,
        ),
    ] = None,
    content_id: Annotated[
        str | None,
        Query(
            description="The platform's own id of the upload (post, message, file)", max_length=256
        ),
    ] = None,
) -> dict[str, Any]:
    """Hash the upload, match it against the tenant's banks and return the verdict.

    The bytes are processed in memory and not stored; the scan record keeps hashes, matches
    and the verdict (for feedback and webhooks).
    """
    wanted = parse_signals(signals)
    t0 = time.perf_counter()
    data = await read_upload(request, ctx.settings.limits.max_bytes)
    t1 = time.perf_counter()
    result = await run_in_threadpool(
        ctx.scanner.scan_bytes,
        data,
        banks=bank,
        tenant=principal.tenant,
        shared=ctx.shared_with(principal.tenant),
        trim_borders=trim_borders,
        signals=wanted,
    )
    timings = {"read": (t1 - t0) * 1e3, **result.timings_ms}
    source = {k: v for k, v in (("url", url), ("content_id", content_id)) if v}
    body = _outcome(
        ctx,
        principal,
        result.hashes,
        result.match,
        timings,
        record=True,
        evidence=result.evidence,
        source=source,
    )
    if body["verdict"] == "review":  # the moderator UI keeps a blurred, sealed preview
        from rempart.service.ui.previews import keep_preview

        await keep_preview(request, principal.tenant, body["id"], data)
    return body


@router.get("/lookup", summary="Look up hashes computed elsewhere")
async def lookup(
    principal: Annotated[Principal, Depends(require_scope("scan"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
    pdq: Annotated[str | None, Query(description="PDQ hash, 64 hex")] = None,
    md5: Annotated[str | None, Query(description="MD5, 32 hex")] = None,
    sha256: Annotated[str | None, Query(description="SHA-256, 64 hex")] = None,
    bank: Annotated[list[str] | None, Query(description="Banks to match (default: all)")] = None,
) -> dict[str, Any]:
    """Match hashes the platform computed itself (the fast path: no file is sent)."""
    if not (pdq or md5 or sha256):
        raise RempartError(
            "give at least one of pdq, md5, sha256",
            code="no_hash",
            hint="e.g. /v1/lookup?pdq=<64 hex>",
        )
    t0 = time.perf_counter()
    hashes = MediaHashes(
        kind="image",
        format="none",
        width=0,
        height=0,
        md5=get_signal("md5").validate(md5) if md5 else "",
        sha256=get_signal("sha256").validate(sha256) if sha256 else "",
        pdq=get_signal("pdq").validate(pdq) if pdq else None,
        pdq_quality=None,
    )
    shared = ctx.shared_with(principal.tenant)
    if md5 or sha256:  # exact hashes are looked up in the store: off the event loop
        match = await run_in_threadpool(
            ctx.scanner.matcher.match, hashes, banks=bank, tenant=principal.tenant, shared=shared
        )
    else:  # PDQ only: an in-memory index search, sub-millisecond
        match = ctx.scanner.matcher.match(
            hashes, banks=bank, tenant=principal.tenant, shared=shared
        )
    timings = {"match": (time.perf_counter() - t0) * 1e3}
    body = _outcome(ctx, principal, hashes, match, timings, record=False)
    del body["id"]
    body["hashes"] = {
        k: v for k, v in (("pdq", hashes.pdq), ("md5", hashes.md5), ("sha256", hashes.sha256)) if v
    }
    return body


class FeedbackIn(BaseModel):
    """A reviewer's verdict on a scan's matches."""

    label: Literal["true_positive", "false_positive"]
    note: str = Field(default="", max_length=2000)
    #: With ``false_positive``: add the scan's hashes to this allow bank, so the same file
    #: stops matching.
    allow_bank: str | None = None


@router.post(
    "/scans/{scan_id}/feedback",
    summary="Label a scan's matches",
    responses={409: {"description": "the scan's review item was already decided"}},
)
def feedback(
    scan_id: str,
    body: FeedbackIn,
    principal: Annotated[Principal, Depends(require_scope("scan"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """True or false positive; a false positive can add the hashes to an allow bank.

    A scan in the review queue is decided by this, as by a moderator in the UI (confirm or
    reject, recorded as decided by the API key): it leaves the queue, and feedback on an
    item already decided is refused (409 ``already_decided``) rather than counted twice.
    """
    from rempart.cases.alerts import confirm_scan, dismiss_scan  # victims' case alerts
    from rempart.store.previews import delete_preview
    from rempart.store.reviews import ReviewQueue

    ctx.flush()
    scan = ctx.scans.get(principal.tenant, scan_id)
    allow = None
    if body.allow_bank:  # checked before anything is written
        if body.label != "false_positive":
            raise RempartError(
                "allow_bank goes with false_positive only",
                code="bad_feedback",
                hint="drop allow_bank, or label the scan false_positive",
            )
        if "banks:write" not in principal.scopes and "admin" not in principal.scopes:
            from rempart.service.problems import ForbiddenError

            raise ForbiddenError("adding to an allow bank needs the scope 'banks:write'")
        allow = ctx.store.get_bank(body.allow_bank, tenant=principal.tenant)
        if allow.kind != "allow":
            raise RempartError(
                f"bank {allow.name!r} is a {allow.kind} bank, not an allow bank",
                code="not_an_allow_bank",
                hint="create one with kind=allow for known false positives",
            )
    queue = ReviewQueue(ctx.store)
    claimed = earlier = None
    if scan.verdict == "review":  # the same atomic claim as a moderator's decision
        earlier = queue.decision(principal.tenant, scan_id)
        claimed = queue.decide(
            principal.tenant,
            scan_id,
            "confirm" if body.label == "true_positive" else "reject",
            actor=principal.actor,
            bank=allow.name if allow else None,
            note=body.note,
        )
    out: dict[str, Any] = {"scan_id": scan_id, "label": body.label}
    try:
        out["matches_labelled"] = ctx.scans.add_feedback(
            principal.tenant, scan_id, body.label, body.note
        )
        if allow is not None:
            values = {"pdq": [scan.pdq] if scan.pdq else [], "md5": [scan.md5] if scan.md5 else []}
            added = ctx.store.add_entries(
                allow.name,
                entries_for_values(values, source=f"feedback:{scan_id}"),
                tenant=principal.tenant,
            )
            out["allow_bank"] = {"bank": allow.name, "added": added.added}
    except BaseException:
        if claimed is not None:  # back in the queue, as it was
            queue.undo(principal.tenant, claimed, earlier)
        raise
    if claimed is not None:
        delete_preview(ctx.store, principal.tenant, scan_id)  # it has done its job
    if body.label == "true_positive":
        confirm_scan(ctx.store, ctx.settings, principal.tenant, scan_id)
    else:
        dismiss_scan(ctx.store, principal.tenant, scan_id)
    ctx.audit.append(
        tenant=principal.tenant,
        actor=principal.actor,
        action="scan.feedback",
        target=scan_id,
        details={"label": body.label, "allow_bank": body.allow_bank},
    )
    return out
