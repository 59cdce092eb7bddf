"""Property-based tests of the whole API from its own OpenAPI document (schemathesis).

Every operation in ``/openapi.json`` gets a bounded number of generated requests, valid and
invalid, sent in-process to the ASGI app (no network) with an admin key. Each answer must not
be a server error and, where the document describes it, must match its response schema.

SQLite only, deterministic (``derandomize``), bounded so that it runs in well under two
minutes on two cores.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from rempart.entries import entries_for_values  # noqa: E402
from rempart.service.app import create_app  # noqa: E402
from rempart.settings import load_settings  # noqa: E402
from rempart.store import Store  # noqa: E402
from rempart.store.keys import KeyRepository  # noqa: E402

#: Generated requests per operation: enough to find crashes on edge inputs, few enough for CI.
#: Raise it for a deeper run: ``REMPART_SCHEMATHESIS_EXAMPLES=200 pytest tests/service/...``.
MAX_EXAMPLES = int(os.environ.get("REMPART_SCHEMATHESIS_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def _app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    db = Path(tmp_path_factory.mktemp("schemathesis")) / "rempart.db"
    url = f"sqlite:///{db}"
    store = Store.open(url)
    # A bank under the name the schema's examples use, with a few hashes, so the explicit
    # examples reach past "bank not found".
    store.create_bank("reported")
    rng = random.Random(0)
    store.add_entries(
        "reported",
        entries_for_values({"pdq": [f"{rng.getrandbits(256):064x}" for _ in range(20)]}),
    )
    _, key = KeyRepository(store).create("default", ["admin"])
    settings_ = load_settings(database_url=url)
    settings_.service = settings_.service.model_copy(
        # No rate limit (hundreds of requests a second), no background jobs (nothing may
        # leave the process).
        update={"background_jobs": False, "rate_limit_per_s": 0.0}
    )
    app = create_app(settings_, store=store)
    yield app, {"Authorization": f"Bearer {key}"}
    try:  # schemathesis keeps the app's lifespan running until exit; stop it with the store
        from schemathesis.python.asgi import shutdown_lifespans

        shutdown_lifespans()
    except ImportError:  # pragma: no cover - a later schemathesis
        pass
    store.close()


@pytest.fixture(scope="module")
def real_app(_app: tuple[Any, dict[str, str]]) -> Any:
    return _app[0]


@pytest.fixture(scope="module")
def admin_headers(_app: tuple[Any, dict[str, str]]) -> dict[str, str]:
    return _app[1]


# The document comes from an app that is built but never started (``create_app`` touches no
# database): the schema must exist at collection, to give one test per operation. Requests
# go to the seeded app of the fixture above.
schema = schemathesis.openapi.from_dict(
    create_app(load_settings(database_url="sqlite://")).openapi()
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
def test_api_conforms(case: Any, real_app: Any, admin_headers: dict[str, str]) -> None:
    """No 500s; documented responses match their schema."""
    case.call_and_validate(
        app=real_app,
        headers=admin_headers,
        checks=[not_a_server_error, response_schema_conformance],
    )
