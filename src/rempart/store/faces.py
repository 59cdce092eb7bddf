"""Face templates of people who enrolled themselves for protection, encrypted at rest.

A template is one 128-d embedding (``rempart.evidence.faces``). It is biometric data, so:

- every row is sealed with AES-256-GCM under a 32-byte key the operator supplies (from
  settings, never stored in the database), with a fresh random 96-bit nonce per row and the
  tenant and person id as associated data: a sealed vector copied onto another person's or
  tenant's row fails to open instead of silently matching the wrong person;
- vectors are decrypted only in memory, for an exact search (:meth:`FaceTemplates.load_all`);
  listing shows person ids and counts, never vectors;
- removal deletes the rows (no soft delete, no change log holding the vector);
- the key can be rotated: rows name the key that sealed them, old keys stay readable while
  they are configured as previous keys, and :meth:`FaceTemplates.rotate` re-seals every row
  under the current key (see docs/faces.md, "Rotating the key").

``cryptography`` is imported on first use, so the rest of the store works without it.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
from pydantic import SecretStr
from sqlalchemy import (
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import ConfigError, NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import Base, UTCDateTime

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from rempart.store.repository import Store

#: Embedding length (dlib's ResNet); kept here so the store never imports dlib.
EMBEDDING_DIM: Final = 128
KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
#: Domain separation for the associated data, versioned with the sealed format.
_AAD_PREFIX: Final = b"rempart/face-template/v1\x00"
#: Templates accepted per enrolment call (a person gives a few photos, not an album).
MAX_TEMPLATES_PER_ENROL: Final = 64
#: Rows re-sealed per write transaction by :meth:`FaceTemplates.rotate`: writers are
#: serialised, so a batch must be short enough not to hold up enrolments and case writes.
ROTATE_BATCH: Final = 500
_PREVIOUS_KEYS_HINT: Final = (
    "add the key these templates were sealed with to face_template_previous_keys "
    "(REMPART_FACE_TEMPLATE_PREVIOUS_KEYS, a JSON list) and restart; "
    "`rempart faces key-status` lists every key fingerprint in use"
)


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


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """Which keys the stored templates are sealed with: what an operator checks during a
    rotation (no row left under a previous key: that key can be removed from settings)."""

    #: Fingerprint of the current key (``face_template_key``).
    current: str
    #: Fingerprints of the configured previous keys, in settings order.
    previous: tuple[str, ...]
    #: Template rows per key fingerprint, for every fingerprint in the table.
    rows: dict[str, int]

    def role(self, fingerprint: str) -> str:
        """``current``, ``previous`` (configured, readable) or ``unknown`` (unreadable)."""
        if fingerprint == self.current:
            return "current"
        return "previous" if fingerprint in self.previous else "unknown"

    @property
    def to_reseal(self) -> int:
        """Rows not sealed with the current key (what :meth:`FaceTemplates.rotate` does)."""
        return sum(n for fp, n in self.rows.items() if fp != self.current)

    @property
    def unknown(self) -> int:
        """Rows sealed with a key that is not configured: they cannot be opened."""
        return sum(n for fp, n in self.rows.items() if self.role(fp) == "unknown")

    def to_dict(self) -> dict[str, object]:
        """JSON shape for the CLI: every configured key (even with no rows), then any
        unknown fingerprint, each with its role and row count."""
        order = [self.current, *self.previous]
        order += sorted(fp for fp in self.rows if fp not in order)
        return {
            "current": self.current,
            "keys": [
                {"fingerprint": fp, "role": self.role(fp), "rows": self.rows.get(fp, 0)}
                for fp in dict.fromkeys(order)
            ],
            "rows": sum(self.rows.values()),
            "to_reseal": self.to_reseal,
            "unknown": self.unknown,
        }


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What :meth:`FaceTemplates.rotate` did: counts only, never template data."""

    #: Fingerprint of the key every row is now sealed with.
    key_fp: str
    resealed: int
    #: Rows that were already sealed with the current key when the rotation started.
    already_current: int
    #: Re-sealed rows per tenant.
    tenants: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        """JSON shape for the CLI and the audit log."""
        return {
            "key_fp": self.key_fp,
            "resealed": self.resealed,
            "already_current": self.already_current,
            "tenants": dict(sorted(self.tenants.items())),
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


def parse_previous_keys(values: Iterable[SecretStr | str | bytes]) -> tuple[bytes, ...]:
    """The raw keys of ``face_template_previous_keys``; a bad entry is named by its index."""
    keys = []
    for i, value in enumerate(values):
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        try:
            keys.append(parse_key(text))
        except ConfigError as e:
            raise ConfigError(
                f"face_template_previous_keys[{i}]: {e.message}", code=e.code, hint=e.hint
            ) from None
    return tuple(keys)


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
    database: whoever has both can read every template. ``previous_keys`` are keys being
    rotated out (:func:`parse_previous_keys`): rows sealed with them still open, so matching
    goes on during a rotation; new rows are always sealed with ``key``.
    """

    def __init__(self, store: Store, key: bytes, previous_keys: Iterable[bytes] = ()) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        previous = tuple(previous_keys)
        for i, k in enumerate((key, *previous)):
            if not isinstance(k, bytes) or len(k) != KEY_BYTES:
                raise ConfigError(
                    f"the face template key must be exactly {KEY_BYTES} bytes"
                    + ("" if i == 0 else f" (previous key {i - 1})"),
                    code="bad_face_key",
                    hint="decode it from settings with rempart.store.faces.parse_key",
                )
        self._engine = store.engine
        self._aead = AESGCM(key)
        self._key_fp = _key_fingerprint(key)
        #: Every key that opens rows, by fingerprint (the current one first).
        self._keys: dict[str, AESGCM] = {self._key_fp: self._aead}
        for k in previous:
            self._keys.setdefault(_key_fingerprint(k), AESGCM(k))

    @property
    def key_fingerprint(self) -> str:
        """Fingerprint of the current key, as stored in each row's ``key_fp``."""
        return self._key_fp

    @property
    def previous_fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of the previous keys (a repeat of the current key left out)."""
        return tuple(fp for fp in self._keys if fp != self._key_fp)

    def _seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def _open(self, row_id: int, tenant: str, person: str, key_fp: str, sealed: bytes) -> bytes:
        """The plaintext of one row, with the key its fingerprint names."""
        from cryptography.exceptions import InvalidTag

        aead = self._keys.get(key_fp)
        if aead is None:
            raise FaceKeyError(
                f"face templates of tenant {tenant!r} were sealed with another key "
                f"(fingerprint {key_fp}), neither face_template_key ({self._key_fp}) nor one "
                "of face_template_previous_keys",
                hint=_PREVIOUS_KEYS_HINT,
            )
        try:
            return aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(tenant, person))
        except InvalidTag:
            raise FaceKeyError(
                f"face template {row_id} does not open: altered or moved between rows",
                code="face_template_corrupt",
                hint="remove the person and enrol again",
            ) from None

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
            rows.append(
                {
                    "tenant": tenant,
                    "person_id": person_id,
                    "key_fp": self._key_fp,
                    "sealed": self._seal(vector.astype("<f4").tobytes(), aad),
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
        times). Each row opens with the key (current or previous) its fingerprint names.
        Raises :class:`FaceKeyError` if a row was sealed with a key not configured
        (``face_key_mismatch``) or does not open (``face_template_corrupt``).
        """
        query = (
            select(T.id, T.person_id, T.key_fp, T.sealed).where(T.tenant == tenant).order_by(T.id)
        )
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        people: builtins.list[str] = []
        matrix = np.empty((len(rows), EMBEDDING_DIM), dtype=np.float32)
        for i, (row_id, person, key_fp, sealed) in enumerate(rows):
            plain = self._open(row_id, tenant, person, key_fp, bytes(sealed))
            matrix[i] = np.frombuffer(plain, dtype="<f4")
            people.append(person)
        return people, matrix

    def key_status(self) -> KeyStatus:
        """Template rows per key fingerprint, across tenants (no row is decrypted)."""
        query = select(T.key_fp, func.count()).group_by(T.key_fp)
        with db.read_transaction(self._engine) as conn:
            rows = {fp: int(n) for fp, n in conn.execute(query).all()}
        return KeyStatus(self._key_fp, self.previous_fingerprints, rows)

    def rotate(
        self, batch: int = ROTATE_BATCH, *, on_progress: Callable[[int], None] | None = None
    ) -> RotationResult:
        """Re-seal every row not sealed with the current key, ``batch`` rows per transaction.

        Each row is opened with its previous key and sealed again under the current one with
        a fresh nonce and the same associated data (tenant, person). Committed batches stay
        done, so the rotation is safe to interrupt: running it again finishes the job, and
        running it when nothing is left re-seals nothing. ``on_progress(resealed)`` is called
        after each committed batch.

        Raises :class:`FaceKeyError` before changing anything if some rows were sealed with a
        key that is not configured (``face_key_mismatch``, naming its fingerprint); a row that
        does not open (``face_template_corrupt``) stops the rotation with its batch rolled
        back, so no row is ever changed without having been opened.
        """
        if batch < 1:
            raise RempartError("the rotation batch must be at least 1 row", code="bad_batch")
        status = self.key_status()
        unknown = {fp: n for fp, n in sorted(status.rows.items()) if status.role(fp) == "unknown"}
        if unknown:
            listed = ", ".join(f"{fp} ({n} rows)" for fp, n in unknown.items())
            raise FaceKeyError(
                f"cannot rotate: face templates were sealed with keys that are configured "
                f"neither as face_template_key nor in face_template_previous_keys: {listed}; "
                "nothing was changed",
                hint=_PREVIOUS_KEYS_HINT,
            )
        resealed = 0
        tenants: dict[str, int] = {}
        last_id = 0
        reseal = (
            update(face_templates_table)
            .where(T.id == bindparam("row_id"))
            .values(sealed=bindparam("new_sealed"), key_fp=bindparam("new_fp"))
        )
        while True:
            # Read and rewrite the batch in one write transaction: writers are serialised, so
            # a row removed or re-enrolled meanwhile is never written back.
            with db.write_transaction(self._engine) as conn:
                rows = conn.execute(
                    select(T.id, T.tenant, T.person_id, T.key_fp, T.sealed)
                    .where(T.key_fp != self._key_fp, T.id > last_id)
                    .order_by(T.id)
                    .limit(batch)
                ).all()
                if not rows:
                    break
                updates = []
                for row_id, tenant, person, key_fp, sealed in rows:
                    plain = self._open(row_id, tenant, person, key_fp, bytes(sealed))
                    updates.append(
                        {
                            "row_id": row_id,
                            "new_sealed": self._seal(plain, _aad(tenant, person)),
                            "new_fp": self._key_fp,
                        }
                    )
                conn.execute(reseal, updates)
            last_id = rows[-1][0]
            resealed += len(rows)
            for row in rows:
                tenants[row[1]] = tenants.get(row[1], 0) + 1
            if on_progress is not None:
                on_progress(resealed)
        return RotationResult(
            key_fp=self._key_fp,
            resealed=resealed,
            already_current=status.rows.get(self._key_fp, 0),
            tenants=tenants,
        )


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
