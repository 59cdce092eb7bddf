"""The UI's routes in one router, its static files, and its error pages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from rempart.service.ui import audit, banks, cases, dashboard, login, queue
from rempart.service.ui.render import redirect, render, translator
from rempart.service.ui.security import CsrfFailed, Forbidden, LoginRequired

STATIC = Path(__file__).with_name("static")

router = APIRouter(prefix="/ui", include_in_schema=False)
for _module in (login, queue, banks, dashboard, audit, cases):
    router.include_router(_module.router)


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    """The queue is the home page."""
    return redirect(request, "/ui/queue")


def mount(app: FastAPI) -> None:
    """Add the UI to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return redirect(request, f"/ui/login?next={quote(exc.next_url)}")

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        t = translator(request)
        return render(request, "error.html", status_code=403, message=t("error.forbidden"))

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        t = translator(request)
        return render(request, "error.html", status_code=403, message=t("error.csrf"))
