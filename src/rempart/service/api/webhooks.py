"""Webhooks: subscribe a URL to scan events, read the delivery log, redeliver dead letters.

Every route needs the ``webhooks`` scope (or ``admin``) and sees only the caller's tenant.
Sending happens in the background (:class:`rempart.service.webhooks.WebhookDispatcher`).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from rempart.egress import check_url
from rempart.service.auth import Principal, require_scope
from rempart.service.context import ServiceContext, get_context
from rempart.store.webhooks import EVENTS, Delivery, WebhookInfo, WebhookRepository

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Caller = Annotated[Principal, Depends(require_scope("webhooks"))]
Ctx = Annotated[ServiceContext, Depends(get_context)]


class WebhookIn(BaseModel):
    """A new subscription. The URL and events are checked by the store, which explains
    what is wrong (``bad_url``, ``unknown_event``) rather than a generic schema error."""

    url: str = Field(examples=["https://trust-safety.example.org/rempart"])
    events: list[str] = Field(examples=[["match", "verdict.block"]], description=", ".join(EVENTS))
    description: str = ""


def _repo(ctx: ServiceContext) -> WebhookRepository:
    return cast(WebhookRepository, ctx.webhooks)


def webhook_dict(w: WebhookInfo) -> dict[str, Any]:
    """A webhook as the API shows it (never with its secret)."""
    return {
        "id": w.id,
        "url": w.url,
        "events": list(w.events),
        "description": w.description,
        "enabled": w.enabled,
        "created_at": w.created_at.isoformat(),
    }


def delivery_dict(d: Delivery) -> dict[str, Any]:
    """A delivery-log row as the API shows it."""
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event": d.event,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat() if d.status == "pending" else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
        "data": d.payload,
    }


def _audit(ctx: ServiceContext, p: Principal, action: str, target: str, **details: Any) -> None:
    ctx.audit.append(tenant=p.tenant, actor=p.actor, action=action, target=target, details=details)


@router.post("", status_code=201, summary="Create a webhook")
def create_webhook(body: WebhookIn, p: Caller, ctx: Ctx) -> dict[str, Any]:
    """Subscribe a URL to events. The response holds the signing ``secret``: it is shown
    this once, so store it where the receiver can read it."""
    check_url(body.url, allow_private=ctx.settings.service.egress_allow_private)
    hook, secret = _repo(ctx).create(p.tenant, body.url, body.events, body.description)
    _audit(ctx, p, "webhook.create", f"webhook:{hook.id}", url=hook.url, events=list(hook.events))
    return {**webhook_dict(hook), "secret": secret}


@router.get("", summary="List webhooks")
def list_webhooks(p: Caller, ctx: Ctx) -> dict[str, Any]:
    """The tenant's webhooks."""
    return {"webhooks": [webhook_dict(w) for w in _repo(ctx).list(p.tenant)]}


@router.get("/deliveries/{delivery_id}", summary="Get a delivery")
def get_delivery(delivery_id: int, p: Caller, ctx: Ctx) -> dict[str, Any]:
    """One delivery: its status, attempts and last error."""
    return delivery_dict(_repo(ctx).get_delivery(p.tenant, delivery_id))


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, summary="Redeliver")
def redeliver(delivery_id: int, p: Caller, ctx: Ctx) -> dict[str, Any]:
    """Queue a dead (or delivered) delivery again, with a fresh retry schedule."""
    d = _repo(ctx).redeliver(p.tenant, delivery_id)
    _audit(ctx, p, "webhook.redeliver", f"delivery:{d.id}", webhook_id=d.webhook_id)
    return delivery_dict(d)


@router.get("/{webhook_id}", summary="Get a webhook")
def get_webhook(webhook_id: int, p: Caller, ctx: Ctx) -> dict[str, Any]:
    """One webhook."""
    return webhook_dict(_repo(ctx).get(p.tenant, webhook_id))


@router.delete("/{webhook_id}", summary="Delete a webhook")
def delete_webhook(webhook_id: int, p: Caller, ctx: Ctx) -> dict[str, Any]:
    """Unsubscribe; the webhook's pending deliveries and log go with it."""
    hook = _repo(ctx).delete(p.tenant, webhook_id)
    _audit(ctx, p, "webhook.delete", f"webhook:{hook.id}", url=hook.url)
    return {"deleted": hook.id}


@router.get("/{webhook_id}/deliveries", summary="Delivery log")
def list_deliveries(
    webhook_id: int,
    p: Caller,
    ctx: Ctx,
    status: Annotated[
        str | None, Query(description="pending, delivered or dead (default: all)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """A webhook's deliveries, newest first."""
    rows = _repo(ctx).deliveries(p.tenant, webhook_id, status=status, limit=limit)
    return {"deliveries": [delivery_dict(d) for d in rows]}
