"""Fixtures for the HTTP service: an app on a real store, keys, generated images."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rempart.service.app import create_app
from rempart.settings import load_settings
from rempart.store import Store
from rempart.store.keys import KeyRepository


@dataclass
class Service:
    """A running app (lifespan started) with its store and a key factory."""

    client: TestClient
    store: Store
    settings: Any

    def key(self, scopes: str = "admin", tenant: str = "default") -> dict[str, str]:
        """Headers with a new API key of ``tenant`` with ``scopes``."""
        _, key = KeyRepository(self.store).create(tenant, scopes.split(","))
        return {"Authorization": f"Bearer {key}"}

    @property
    def ctx(self) -> Any:
        return self.client.app.state.ctx  # type: ignore[attr-defined]


@pytest.fixture
def make_service(db_url: str) -> Iterator[Callable[..., Service]]:
    """``make_service(**settings)``: a service on the test's store (SQLite or PostgreSQL)."""
    started: list[tuple[TestClient, Store]] = []

    def make(**overrides: Any) -> Service:
        service_overrides = overrides.pop("service", {})
        settings = load_settings(database_url=db_url, **overrides)
        settings.service = settings.service.model_copy(
            update={"background_jobs": False, **service_overrides}
        )
        store = Store.open(db_url)
        client = TestClient(create_app(settings, store=store))
        client.__enter__()
        started.append((client, store))
        return Service(client, store, settings)

    yield make
    for client, store in started:
        client.__exit__(None, None, None)
        store.close()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    """One service with default settings."""
    return make_service()
