"""The moderators' web UI at ``/ui``: server-rendered pages (Jinja2), a little plain
JavaScript served from ``/ui/static``, no CDN.

``mount(app)`` adds it to the service; the pages call the same library functions as the
JSON API. See docs/ui.md. (Nothing is imported here at module level, so ``rempart users``
in the CLI does not load the web stack.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the UI (pages, static files, its error pages) to ``app``."""
    from rempart.service.ui.routes import mount as _mount

    _mount(app)
