"""Hash feeds: remote hash lists (JSONL/CSV/HMA URLs, StopNCII) pulled into banks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from rempart.egress import check_url
from rempart.exchanges.feeds import add_feed, delete_feed, sync_feed, update_feed
from rempart.service.auth import Principal, require_scope
from rempart.service.context import ServiceContext, get_context
from rempart.store.feeds import FeedRepository

router = APIRouter(prefix="/v1/feeds", tags=["feeds"])

Reader = Annotated[Principal, Depends(require_scope("banks:read"))]
Writer = Annotated[Principal, Depends(require_scope("banks:write"))]
Ctx = Annotated[ServiceContext, Depends(get_context)]
FeedId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The feed's id")]


class FeedIn(BaseModel):
    """A feed to create. Secrets go in ``config`` (e.g. ``subscription_key``, ``headers``)."""

    bank: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["jsonl", "csv", "hma", "stopncii"]
    url: str = Field(min_length=1, max_length=2048)
    interval_s: int = Field(default=3600, ge=10, le=7 * 86400)
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class FeedPatch(BaseModel):
    """Fields to change (``config`` replaces the whole config)."""

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    interval_s: int | None = Field(default=None, ge=10, le=7 * 86400)
    config: dict[str, Any] | None = None
    enabled: bool | None = None
    reset_cursor: bool = False


def _audit(ctx: ServiceContext, p: Principal, action: str, target: str, **details: Any) -> None:
    ctx.audit.append(tenant=p.tenant, actor=p.actor, action=action, target=target, details=details)


@router.get("", summary="List feeds")
def list_feeds(p: Reader, ctx: Ctx) -> dict[str, Any]:
    """The tenant's feeds (secrets masked)."""
    return {"feeds": [f.to_dict() for f in FeedRepository(ctx.store).list(p.tenant)]}


@router.post("", status_code=201, summary="Create a feed")
def create_feed(body: FeedIn, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Define a feed; the scheduler runs it every ``interval_s`` (or POST .../sync)."""
    check_url(body.url, allow_private=ctx.settings.service.egress_allow_private)
    info = add_feed(
        ctx.store,
        bank=body.bank,
        name=body.name,
        kind=body.kind,
        url=body.url,
        tenant=p.tenant,
        interval_s=body.interval_s,
        config=body.config,
        enabled=body.enabled,
    )
    _audit(ctx, p, "feed.create", info.name, kind=info.kind, bank=body.bank)
    return info.to_dict()


@router.get("/{feed_id}", summary="Get a feed")
def get_feed(feed_id: FeedId, p: Reader, ctx: Ctx) -> dict[str, Any]:
    """One feed, with its last run and error."""
    return FeedRepository(ctx.store).get(feed_id, p.tenant).to_dict()


@router.patch("/{feed_id}", summary="Update a feed")
def patch_feed(feed_id: FeedId, body: FeedPatch, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Change URL, interval, config or enabled; ``reset_cursor`` restarts from scratch."""
    if body.url is not None:
        check_url(body.url, allow_private=ctx.settings.service.egress_allow_private)
    info = update_feed(
        ctx.store,
        feed_id,
        tenant=p.tenant,
        url=body.url,
        interval_s=body.interval_s,
        config=body.config,
        enabled=body.enabled,
        reset_cursor=body.reset_cursor,
    )
    _audit(ctx, p, "feed.update", info.name)
    return info.to_dict()


@router.delete("/{feed_id}", summary="Delete a feed")
def remove_feed(
    feed_id: FeedId,
    p: Writer,
    ctx: Ctx,
    keep_entries: Annotated[bool, Query(description="Keep the hashes it added")] = False,
) -> dict[str, Any]:
    """Delete the feed and (unless ``keep_entries``) the hashes it added."""
    info, removed = delete_feed(ctx.store, feed_id, tenant=p.tenant, keep_entries=keep_entries)
    _audit(ctx, p, "feed.delete", info.name, entries_removed=removed)
    return {"deleted": info.name, "entries_removed": removed}


@router.post("/{feed_id}/sync", summary="Run a feed now")
async def run_feed(feed_id: FeedId, p: Writer, ctx: Ctx) -> dict[str, Any]:
    """Pull the feed now and apply it; returns what was added and removed."""
    report = await run_in_threadpool(
        sync_feed,
        ctx.store,
        feed_id,
        tenant=p.tenant,
        allow_private=ctx.settings.service.egress_allow_private,
    )
    _audit(ctx, p, "feed.sync", str(feed_id), added=report.added, removed=report.removed)
    return report.to_dict()
