"""Fixtures for the moderator UI tests (helpers in ui_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ui_helpers import REVIEW_POLICY, UI

from rempart.service.app import create_app
from rempart.settings import load_settings
from rempart.store import Store


@pytest.fixture
def make_ui(db_url: str, tmp_path: Path) -> Iterator[Callable[..., UI]]:
    """``make_ui(**ui_settings)``: a service with the UI on the test's store."""
    started: list[tuple[TestClient, Store]] = []
    policy = tmp_path / "policy.toml"
    policy.write_text(REVIEW_POLICY)

    def make(
        base_url: str = "http://testserver", *, cases: dict[str, Any] | None = None, **ui: Any
    ) -> UI:
        """``session_secret=None`` leaves the secret unset (the store's generated one)."""
        ui = {k: v for k, v in {"session_secret": "s" * 32, **ui}.items() if v is not None}
        settings = load_settings(
            database_url=db_url,
            policies={"default": str(policy)},
            ui=ui,
            **({"cases": cases} if cases else {}),
        )
        settings.service = settings.service.model_copy(update={"background_jobs": False})
        store = Store.open(db_url)
        client = TestClient(create_app(settings, store=store), base_url=base_url)
        client.__enter__()
        started.append((client, store))
        return UI(client, store, settings)

    yield make
    for client, store in started:
        client.__exit__(None, None, None)
        store.close()


@pytest.fixture
def ui(make_ui: Callable[..., UI]) -> UI:
    """A UI service with default settings."""
    return make_ui()
