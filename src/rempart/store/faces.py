"""Face templates of people who enrolled themselves for protection, encrypted at rest.

A template is one 128-d embedding (``rempart.evidence.faces``). It is biometric data, so:

- every row is sealed with AES-256-GCM under a 32-byte key the operator supplies (from
  settings, never stored in the database), with a fresh random 96-bit nonce per row and the
  tenant and person id as associated data: a sealed vector copied onto another person's or
  tenant's row fails to open instead of silently matching the wrong person;
- vectors are decrypted only in memory, for an exact search (:meth:`FaceTemplates.load_all`);
  listing shows person ids and counts, never vectors;
- removal deletes the rows (no soft delete, no change log holding the vector).

``cryptography`` is imported on first use, so the rest of the store works without it.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
from sqlalchemy import (
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import ConfigError, NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import Base, UTCDateTime

if TYPE_CHECKING:
    from rempart.store.repository import Store

#: Embedding length (dlib's ResNet); kept here so the store never imports dlib.
EMBEDDING_DIM: Final = 128
KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
#: Domain separation for the associated data, versioned with the sealed format.
_AAD_PREFIX: Final = b"rempart/face-template/v1\x00"
#: Templates accepted per enrolment call (a person gives a few photos, not an album).
MAX_TEMPLATES_PER_ENROL: Final = 64


class FaceTemplate(Base):
    """One sealed embedding of one enrolled person.

    ``sealed`` is ``nonce (12 bytes) || AES-GCM(ciphertext || tag)`` of the float32
    little-endian vector. ``key_fp`` (the first 8 bytes of SHA-256 of the key, hex) tells a
    wrong key from a corrupted row; the key has 256 random bits, so its digest reveals
    nothing usable.
    """

    __tablename__ = "face_templates"
    __table_args__ = (Index(None, "tenant", "person_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(128))
    key_fp: Mapped[str] = mapped_column(String(16))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


face_templates_table = cast(Table, FaceTemplate.__table__)
T = face_templates_table.c


class FaceKeyError(RempartError):
    """Templates cannot be opened with the key given (``face_key_mismatch``,
    ``face_template_corrupt``)."""

    code = "face_key_mismatch"
    status = 500


@dataclass(frozen=True, slots=True)
class EnrolledPerson:
    """An enrolled person as listed: id and template count, never the vectors."""

    person_id: str
    templates: int
    enrolled_at: datetime

    def to_dict(self) -> dict[str, object]:
        """JSON shape for the CLI and API."""
        return {
            "person_id": self.person_id,
            "templates": self.templates,
            "enrolled_at": self.enrolled_at.isoformat(),
        }


def parse_key(text: str | bytes) -> bytes:
    """A 32-byte key from settings: base64 (44 chars) or hex (64 chars).

    Generate one with
    ``python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())"``.
    """
    raw = text.encode() if isinstance(text, str) else text
    raw = raw.strip()
    for decode in (binascii.unhexlify, lambda s: base64.b64decode(s, validate=True)):
        try:
            key = decode(raw)
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise ConfigError(
        "the face template key must be 32 random bytes, base64 or hex encoded",
        code="bad_face_key",
        hint='generate one with: python -c "import os,base64;'
        'print(base64.b64encode(os.urandom(32)).decode())"',
    )


def _key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"rempart/face-key-fp\x00" + key).hexdigest()[:16]


def _aad(tenant: str, person_id: str) -> bytes:
    return _AAD_PREFIX + tenant.encode() + b"\x00" + person_id.encode()


def _check_id(kind: str, value: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or "\x00" in value:
        raise RempartError(
            f"{kind} must be a non-empty string of at most {limit} characters",
            code=f"bad_{kind.replace(' ', '_')}",
        )
    return value


def _as_matrix(embeddings: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != EMBEDDING_DIM or matrix.shape[0] == 0:
        raise RempartError(
            f"embeddings must be one or more vectors of {EMBEDDING_DIM}, got shape "
            f"{np.shape(embeddings)}",
            code="bad_embedding",
            hint="use rempart.evidence.faces.FaceAnalyzer to compute them",
        )
    if matrix.shape[0] > MAX_TEMPLATES_PER_ENROL:
        raise RempartError(
            f"at most {MAX_TEMPLATES_PER_ENROL} templates per enrolment",
            code="too_many_templates",
        )
    if not np.all(np.isfinite(matrix)):
        raise RempartError("embeddings contain NaN or infinity", code="bad_embedding")
    return matrix


class FaceTemplates:
    """The encrypted template repository of a :class:`~rempart.store.Store`.

    ``key`` is the raw 32-byte AES key (see :func:`parse_key`). Keep it outside the
    database: whoever has both can read every template.
    """

    def __init__(self, store: Store, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigError(
                f"the face template key must be exactly {KEY_BYTES} bytes",
                code="bad_face_key",
                hint="decode it from settings with rempart.store.faces.parse_key",
            )
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._engine = store.engine
        self._aead = AESGCM(key)
        self._key_fp = _key_fingerprint(key)

    def enrol(
        self, person_id: str, tenant: str, embeddings: Any, *, conn: Connection | None = None
    ) -> int:
        """Store one person's templates (one row per vector); returns how many were added.

        Only for people who enrolled themselves. Enrolling again adds templates. ``conn``:
        write inside the caller's write transaction (a victim's case is stored all at once).
        """
        _check_id("person id", person_id, 128)
        _check_id("tenant", tenant, 64)
        matrix = _as_matrix(embeddings)
        aad = _aad(tenant, person_id)
        now = datetime.now(UTC)
        rows = []
        for vector in matrix:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = nonce + self._aead.encrypt(nonce, vector.astype("<f4").tobytes(), aad)
            rows.append(
                {
                    "tenant": tenant,
                    "person_id": person_id,
                    "key_fp": self._key_fp,
                    "sealed": sealed,
                    "created_at": now,
                }
            )
        if conn is not None:
            conn.execute(insert(face_templates_table), rows)
            return len(rows)
        with db.write_transaction(self._engine) as own:
            own.execute(insert(face_templates_table), rows)
        return len(rows)

    def list(self, tenant: str) -> list[EnrolledPerson]:
        """Enrolled people of a tenant, by person id, with template counts."""
        query = (
            select(T.person_id, func.count(), func.min(T.created_at))
            .where(T.tenant == tenant)
            .group_by(T.person_id)
            .order_by(T.person_id)
        )
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        # min() keeps the column's type, so ``at`` comes back as an aware UTC datetime.
        return [EnrolledPerson(person, int(count), at) for person, count, at in rows]

    def remove(self, person_id: str, tenant: str) -> int:
        """Hard-delete every template of a person; returns how many rows went.

        Raises :class:`NotFoundError` (``person_not_found``) if there were none.
        """
        with db.write_transaction(self._engine) as conn:
            removed = conn.execute(
                delete(face_templates_table).where(T.tenant == tenant, T.person_id == person_id)
            ).rowcount
        if not removed:
            raise NotFoundError(
                f"no face templates for {person_id!r} in tenant {tenant!r}",
                code="person_not_found",
            )
        return int(removed)

    def load_all(
        self, tenant: str
    ) -> tuple[builtins.list[str], np.ndarray[Any, np.dtype[np.float32]]]:
        """Every template of a tenant, decrypted in memory: ``(person_ids, matrix[n, 128])``.

        ``person_ids[i]`` owns row ``i`` (a person with several templates appears several
        times). Raises :class:`FaceKeyError` if the key is not the one they were sealed with.
        """
        from cryptography.exceptions import InvalidTag

        query = (
            select(T.id, T.person_id, T.key_fp, T.sealed).where(T.tenant == tenant).order_by(T.id)
        )
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        people: builtins.list[str] = []
        matrix = np.empty((len(rows), EMBEDDING_DIM), dtype=np.float32)
        for i, (row_id, person, key_fp, sealed) in enumerate(rows):
            sealed = bytes(sealed)
            try:
                plain = self._aead.decrypt(
                    sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(tenant, person)
                )
            except InvalidTag:
                if key_fp != self._key_fp:
                    raise FaceKeyError(
                        f"face templates of tenant {tenant!r} were sealed with another key",
                        hint="set the face template key these templates were enrolled with",
                    ) from None
                raise FaceKeyError(
                    f"face template {row_id} does not open: altered or moved between rows",
                    code="face_template_corrupt",
                    hint="remove the person and enrol again",
                ) from None
            matrix[i] = np.frombuffer(plain, dtype="<f4")
            people.append(person)
        return people, matrix


def match(
    embedding: Any,
    templates: tuple[Sequence[str], np.ndarray[Any, Any]],
    threshold: float,
) -> list[tuple[str, float]]:
    """Enrolled people within ``threshold`` of ``embedding``: ``[(person_id, distance)]``.

    Exact (brute-force Euclidean) search, nearest first, one entry per person (their
    closest template). A result is a lead for a human reviewer, not an identification.
    """
    people, matrix = templates
    if len(people) == 0:
        return []
    query = np.asarray(embedding, dtype=np.float32).reshape(1, EMBEDDING_DIM)
    distances = np.linalg.norm(np.asarray(matrix, np.float32) - query, axis=1)
    best: dict[str, float] = {}
    for person, dist in zip(people, distances.tolist(), strict=True):
        if dist <= threshold and dist < best.get(person, np.inf):
            best[person] = dist
    return sorted(best.items(), key=lambda item: (item[1], item[0]))
