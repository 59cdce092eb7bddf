"""Shared fixtures: a ``store`` on SQLite and on PostgreSQL, generated hashes and media,
and Meta's PDQ reference data (read in place).

PostgreSQL comes from ``REMPART_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema (through the
connection's ``search_path``), dropped afterwards, so tests never see each other's rows.
When the server cannot be reached the PostgreSQL cases are skipped, except under CI
(``CI`` set), where they fail: in CI the PostgreSQL path must really run.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from sqlalchemy.engine import make_url

from rempart.store import Store

POSTGRES_URL = os.environ.get(
    "REMPART_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _libpq_url(url: str) -> str:
    """The URL as libpq/psycopg takes it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server URL, once it has been seen to answer."""
    import psycopg

    try:
        with psycopg.connect(_libpq_url(POSTGRES_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to connect means "no server here"
        message = (
            f"PostgreSQL is not reachable at {make_url(POSTGRES_URL)!r} ({exc}); "
            "set REMPART_TEST_POSTGRES_URL or start the server"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message} -- PostgreSQL tests must run in CI", pytrace=False)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections work in a fresh, private schema (dropped after the test)."""
    import psycopg

    schema = f"rempart_test_{uuid.uuid4().hex[:12]}"
    admin = _libpq_url(postgres_server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(postgres_server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'rempart.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated, empty store on each database."""
    s = Store.open(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def hex_hashes() -> Callable[..., list[str]]:
    """``hex_hashes(n, nbytes=32, seed=0)``: distinct random hashes as lowercase hex."""

    def make(n: int, nbytes: int = 32, seed: int = 0) -> list[str]:
        rng = np.random.default_rng(seed)
        raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
        raw[:, 0] |= 1  # never the all-zero hash (rejected for PDQ)
        out = list(dict.fromkeys(row.tobytes().hex() for row in raw))
        assert len(out) == n
        return out

    return make


#: The shared reference data, next to the repository (CI always has it).
REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pdq-reference"


@pytest.fixture(scope="session")
def pdq_ref() -> Path:
    """Meta's PDQ reference images; tests using it skip when the shared data is absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"PDQ reference data not found at {REFERENCE} (the shared data directory)")
    return REFERENCE


@pytest.fixture(scope="session")
def photo() -> Callable[[str], np.ndarray]:
    """A photograph from scikit-image's bundled samples, as RGB uint8 (coffee, chelsea...)."""

    def load(name: str = "coffee") -> np.ndarray:
        return np.ascontiguousarray(getattr(skdata, name)()[..., :3])

    return load


def _encode(rgb: np.ndarray | Image.Image, fmt: str, **options: object) -> bytes:
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """``encode(rgb_or_image, "PNG", **options)``: the bytes Pillow writes."""
    return _encode


def _make_video(
    frames: list[np.ndarray],
    *,
    fps: int = 10,
    container: str = "mp4",
    codec: str = "libx264",
) -> bytes:
    """Encode RGB frames (all the same size, even sides) into a video, in memory."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="session")
def make_video() -> Callable[..., bytes]:
    """``make_video(frames, fps=10, container="mp4", codec="libx264")``: video bytes."""
    return _make_video
