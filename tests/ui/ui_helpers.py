"""Helpers for the UI tests: the service wrapper, users, logins, generated (never intimate)
test images, and a policy that sends bank matches to review."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from rempart.store import Store
from rempart.store.keys import KeyRepository
from rempart.store.users import UserRepository

PASSWORD = "correct horse battery staple"

#: Bank matches go to a human (review) rather than being blocked outright.
REVIEW_POLICY = """\
[[rules]]
name = "review-bank-match"
when = ["hash_match"]
unless = ["allow_match"]
action = "review"
priority = "high"
"""


def checkerboard(cells: int = 16, cell: int = 16) -> bytes:
    """A PNG of sharp black and white squares: any blur shows."""
    board = np.kron((np.indices((cells, cells)).sum(0) % 2) * 255, np.ones((cell, cell)))
    buf = io.BytesIO()
    Image.fromarray(board.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_image(seed: int = 0, size: int = 256) -> bytes:
    """A PNG of smooth random shapes (good PDQ quality), drawn with numpy and Pillow."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@dataclass
class UI:
    """A running service with the UI, its store and helpers."""

    client: TestClient
    store: Store
    settings: Any

    @property
    def ctx(self) -> Any:
        return self.client.app.state.ctx  # type: ignore[attr-defined]

    def user(self, name: str = "mod", role: str = "moderator", tenant: str = "default") -> Any:
        return UserRepository(self.store).create(name, PASSWORD, tenant=tenant, role=role)

    def api_key(self, tenant: str = "default") -> dict[str, str]:
        _, key = KeyRepository(self.store).create(tenant, ["admin"])
        return {"Authorization": f"Bearer {key}"}

    def login(self, name: str, password: str = PASSWORD, client: TestClient | None = None) -> Any:
        c = client or self.client
        page = c.get("/ui/login")
        token = csrf_of(page.text)
        return c.post(
            "/ui/login",
            data={"username": name, "password": password, "csrf": token, "next": "/ui/queue"},
            follow_redirects=False,
        )

    def scan(self, data: bytes, tenant: str = "default") -> dict[str, Any]:
        r = self.client.post("/v1/scan", content=data, headers=self.api_key(tenant))
        assert r.status_code == 200, r.text
        self.ctx.flush()
        body: dict[str, Any] = r.json()
        return body

    def reviewed(
        self, seed: int = 0, bank: str = "reported", data: bytes | None = None
    ) -> dict[str, Any]:
        """Scan an image whose hashes are in ``bank`` so that it lands in the queue."""
        data = data or make_image(seed)
        names = [b.name for b in self.store.list_banks(tenant="default")]
        if bank not in names:
            self.store.create_bank(bank)
        import hashlib

        from rempart.entries import entries_for_values

        md5 = hashlib.md5(data).hexdigest()
        self.store.add_entries(bank, entries_for_values({"md5": [md5]}))
        self.ctx.scanner.matcher.refresh()
        body = self.scan(data)
        assert body["verdict"] == "review", body
        return body


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)
