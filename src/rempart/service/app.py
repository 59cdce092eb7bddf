"""The FastAPI application: ``create_app(settings)``.

Role-based route groups in one app (like HMA's hasher/matcher/curator): scanning and lookup,
bank curation, webhooks, HMA-compatible routes, and health/metrics for orchestrators.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from rempart import __version__
from rempart.service import problems
from rempart.service.context import ServiceContext
from rempart.service.metrics import LATENCY, REQUESTS, render
from rempart.settings import Settings, load_settings
from rempart.store import Store

log = logging.getLogger("rempart.service")


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """The service, on ``settings`` (from the environment when None)."""
    settings = settings or load_settings()
    ctx_holder: dict[str, ServiceContext] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = ServiceContext(settings, store=store)
        app.state.ctx = ctx
        ctx_holder["ctx"] = ctx
        ctx.start()
        if settings.ui.enabled:  # purges expired review previews now, then periodically
            from rempart.service.ui.state import start_ui

            start_ui(app)
        try:
            yield
        finally:
            if settings.ui.enabled:
                from rempart.service.ui.state import stop_ui

                stop_ui(app)
            ctx.stop()

    app = FastAPI(
        title="Rempart",
        version=__version__,
        description=(
            "Hash matching against non-consensual intimate imagery. Every match is a lead "
            "for a human to review, never an identification. Uploaded bytes are processed in "
            "memory and never stored (the one exception: a small, blurred, greyscale, "
            "encrypted preview of an item sent to review, deleted within days; see docs/ui.md)."
        ),
        lifespan=lifespan,
    )
    problems.install(app)

    app.add_middleware(_Measure)

    from rempart.service.api import banks, scan

    app.include_router(scan.router)
    app.include_router(banks.router)
    for optional in (
        "rempart.service.api.webhooks",
        "rempart.service.api.feeds",
        "rempart.service.api.cases",
        "rempart.service.api.evidence",
        "rempart.service.hma",
    ):
        try:
            module = __import__(optional, fromlist=["router"])
        except ImportError:
            continue
        app.include_router(module.router)

    if settings.ui.enabled:  # the moderators' web UI at /ui (docs/ui.md)
        from rempart.service.ui import mount as mount_ui

        mount_ui(app)

    @app.get("/status/live", tags=["health"], summary="Alive")
    def live() -> dict[str, str]:
        """The process is up (for liveness probes)."""
        return {"status": "alive"}

    @app.get(
        "/status", tags=["health"], summary="Ready", responses={503: {"description": "not ready"}}
    )
    def ready(request: Request) -> Any:
        """Ready: the store answers and the index is loaded (for readiness probes)."""
        ctx: ServiceContext | None = getattr(request.app.state, "ctx", None)
        checks: dict[str, Any] = {"index_loaded": bool(ctx and ctx.ready)}
        try:
            assert ctx is not None
            with ctx.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["store"] = "ok"
        except Exception as e:
            checks["store"] = f"unreachable: {type(e).__name__}"
        ok = checks["store"] == "ok" and checks["index_loaded"]
        if ctx is not None:
            checks["index_entries"] = ctx.index_size()
        # The worker process's id: behind one port, it tells which worker answered.
        checks["worker"] = os.getpid()
        body = {"status": "ready" if ok else "not ready", "version": __version__, **checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        """Requests, latencies, matches by bank, index size."""
        data, content_type = render()
        return Response(data, media_type=content_type)

    return app


class _Measure:
    """Request count and latency per route, as a plain ASGI middleware.

    (``@app.middleware("http")`` would wrap every request in a task group and memory
    streams; at thousands of lookups a second that costs more than the lookup.)
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(path).observe(time.perf_counter() - t0)
            REQUESTS.labels(scope["method"], path, str(status)).inc()


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker runs (settings from REMPART_*)."""
    return create_app(load_settings())
