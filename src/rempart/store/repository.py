"""The store: banks of hashes, their entries, and the change log that keeps indexes current.

Everything goes through :class:`Store`. It speaks in records (:mod:`rempart.store.records`),
never ORM objects, and behaves the same on SQLite and PostgreSQL.

How a matcher process stays current without rebuilding::

    arrays = store.load_signal_arrays("pdq")      # snapshot + the change-log position
    index = build(arrays)
    seq = arrays.seq
    while True:                                   # e.g. every 250 ms
        for change in store.changes_since(seq):
            index.apply(change)                   # add / remove / bank_* (idempotent)
            seq = change.seq
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from types import TracebackType
from typing import Any, Final, Self, TypeAlias

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from rempart.errors import ConflictError, NotFoundError, RempartError
from rempart.settings import Settings
from rempart.signals import MD5, get_signal
from rempart.store import db
from rempart.store.cases import CASES_BANK, CASES_TENANT
from rempart.store.models import UTCDateTime, banks_table, changes_table, entries_table
from rempart.store.records import (
    VIDEO_SIGNAL,
    AddResult,
    BankInfo,
    BankKind,
    Change,
    EntryInfo,
    NewEntry,
    RemoveResult,
    SignalArrays,
    canonical_signal,
    validate_kind,
    validate_name,
    validate_threshold,
)

#: A bank named in the ``tenant`` given alongside, its id, or a :class:`BankInfo`.
BankRef: TypeAlias = str | int | BankInfo

B = banks_table.c
E = entries_table.c
C = changes_table.c

#: Rows per INSERT batch: large enough to amortise round trips, small enough that a batch's
#: parameters stay well inside SQLite's and PostgreSQL's limits.
_BATCH: Final = 5000
#: Rows per fetch when loading arrays (about 10 MB of Python objects per chunk for PDQ).
_LOAD_CHUNK: Final = 100_000
_ID_CHUNK: Final = 500
_CHANGE_COLUMNS: Final = ["op", "bank_id", "entry_id", "signal", "value", "at"]


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any, empty: str) -> str:
    return json.dumps(value, ensure_ascii=False) if value else empty


def _tags_json(cache: dict[tuple[str, ...], str], tags: tuple[str, ...]) -> str:
    text = _json(tags, "[]")
    if len(cache) < 4096:
        cache[tags] = text
    return text


def _bind(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as the driver receives it for ``column`` (type processors applied)."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor is not None else value


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class _BankKey:
    """The little we need about a resolved bank inside a transaction."""

    __slots__ = ("id", "name", "tenant")

    def __init__(self, id: int, name: str, tenant: str) -> None:
        self.id = id
        self.name = name
        self.tenant = tenant


class Store:
    """Banks and hashes in SQLite or PostgreSQL.

    Thread-safe (share one per process), except on an in-memory SQLite database
    (``sqlite://``), which is one shared connection, for tests and one-off scripts.
    Writes are serialised across processes (see :mod:`rempart.store.db`): a big import
    makes other writers wait, readers never.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | URL, *, migrate: bool = True, busy_timeout_s: float = 30.0) -> Self:
        """Connect to ``url``, migrate the schema to the newest revision, and return a store.

        ``sqlite:///path/to/file.db`` (the directory is created), ``sqlite://`` (in memory),
        or ``postgresql://user:password@host/db``. Raises :class:`~rempart.errors.ConfigError`
        when the URL is malformed or the database cannot be reached.
        """
        engine = db.create_store_engine(url, busy_timeout_s=busy_timeout_s)
        try:
            db.check_connection(engine)
            if migrate:
                db.upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Open the database named by ``settings.database_url``."""
        return cls.open(settings.database_url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tools and tests; the API above is the interface)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return db.shown(self._engine.url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # -- banks ---------------------------------------------------------------------------------

    def create_bank(
        self,
        name: str,
        *,
        tenant: str = "default",
        threshold: int = 31,
        kind: BankKind = "block",
        description: str = "",
        enabled: bool = True,
    ) -> BankInfo:
        """Create a bank. Raises ConflictError ``bank_exists`` if the tenant already has it."""
        validate_name(name)
        validate_name(tenant, "tenant name")
        validate_threshold(threshold)
        validate_kind(kind)
        if name == CASES_BANK and tenant != CASES_TENANT:
            # Every tenant's scans match victims' ``cases`` bank under that name; a tenant's
            # own bank called so would hide it from them and make results ambiguous.
            raise ConflictError(
                f"the bank name {CASES_BANK!r} is reserved for victims' cases",
                code="reserved_bank_name",
                hint="choose another name for this bank",
            )
        now = _now()
        with db.write_transaction(self._engine) as conn:
            if self._find_bank(conn, name, tenant) is not None:
                raise self._exists(name, tenant)
            try:
                bank_id = conn.execute(
                    insert(banks_table).returning(B.id),
                    {
                        "tenant": tenant,
                        "name": name,
                        "description": str(description or ""),
                        "threshold": threshold,
                        "kind": kind,
                        "enabled": bool(enabled),
                        "created_at": now,
                        "updated_at": now,
                    },
                ).scalar_one()
            except IntegrityError:  # pragma: no cover - the write lock makes this a race-free
                raise self._exists(name, tenant) from None
            self._log_bank(conn, "bank_created", bank_id, now)
            return self._bank_info(conn, bank_id)

    def list_banks(self, tenant: str | None = None) -> list[BankInfo]:
        """Every bank (of ``tenant``, or of all tenants), with entry counts per signal."""
        with db.read_transaction(self._engine) as conn:
            query = select(banks_table).order_by(B.tenant, B.name)
            if tenant is not None:
                query = query.where(B.tenant == tenant)
            rows = conn.execute(query).all()
            counts = self._counts(conn, None if tenant is None else [r.id for r in rows])
            return [self._to_bank(r, counts.get(r.id, {})) for r in rows]

    def get_bank(self, name: str, tenant: str = "default") -> BankInfo:
        """The bank ``name`` of ``tenant``; NotFoundError ``bank_not_found`` if there is none."""
        with db.read_transaction(self._engine) as conn:
            key = self._resolve(conn, name, tenant)
            return self._bank_info(conn, key.id)

    def get_bank_by_id(self, bank_id: int) -> BankInfo:
        """The bank with id ``bank_id`` (as found in index arrays and change-log rows)."""
        with db.read_transaction(self._engine) as conn:
            key = self._resolve(conn, bank_id, "default")
            return self._bank_info(conn, key.id)

    def update_bank(
        self,
        name: str,
        tenant: str = "default",
        *,
        threshold: int | None = None,
        kind: BankKind | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> BankInfo:
        """Change the fields given (``None`` leaves a field alone); returns the new state."""
        values: dict[str, Any] = {}
        if threshold is not None:
            values["threshold"] = validate_threshold(threshold)
        if kind is not None:
            values["kind"] = validate_kind(kind)
        if enabled is not None:
            values["enabled"] = bool(enabled)
        if description is not None:
            values["description"] = str(description)
        with db.write_transaction(self._engine) as conn:
            key = self._resolve(conn, name, tenant)
            if values:
                now = _now()
                conn.execute(
                    update(banks_table).where(B.id == key.id).values(updated_at=now, **values)
                )
                self._log_bank(conn, "bank_updated", key.id, now)
            return self._bank_info(conn, key.id)

    def delete_bank(self, name: str, tenant: str = "default") -> BankInfo:
        """Delete a bank and all its entries (hard delete); returns the bank as it was.

        One ``bank_deleted`` change is logged, not one ``remove`` per entry.
        """
        with db.write_transaction(self._engine) as conn:
            key = self._resolve(conn, name, tenant)
            info = self._bank_info(conn, key.id)
            # Entries go by ON DELETE CASCADE; deleting them explicitly first keeps this
            # independent of whether the connection enforces foreign keys.
            conn.execute(delete(entries_table).where(E.bank_id == key.id))
            conn.execute(delete(banks_table).where(B.id == key.id))
            self._log_bank(conn, "bank_deleted", key.id, _now())
            return info

    # -- entries -------------------------------------------------------------------------------

    def add_entries(
        self,
        bank: BankRef,
        entries: Iterable[NewEntry],
        *,
        tenant: str = "default",
        return_ids: bool = True,
        batch_size: int = _BATCH,
    ) -> AddResult:
        """Add hashes to a bank in one transaction; entries already there are duplicates.

        ``entries`` is consumed lazily in batches, so it can be a generator over a huge file;
        if it raises, nothing is written. Pass ``return_ids=False`` for bulk imports that do
        not need the new ids (saves memory at millions of rows).
        """
        added = duplicates = 0
        ids: list[int] = []
        with db.write_transaction(self._engine) as conn:
            key = self._resolve(conn, bank, tenant)
            now = _now()
            # Writers are serialised (db.write_transaction) and ids only grow, so every entry
            # with an id above today's maximum is one this transaction inserted: the change
            # log and the returned ids are then one INSERT ... SELECT / SELECT at the end,
            # instead of a RETURNING round trip per batch.
            max_before = int(conn.execute(select(func.coalesce(func.max(E.id), 0))).scalar_one())
            cursor = conn.connection.cursor()
            try:
                writer = self._batch_writer(conn, cursor, key.id, now)
                # Lists tend to repeat the same few tag sets; encode each once.
                tag_json: dict[tuple[str, ...], str] = {}
                for batch in _chunks(entries, batch_size):
                    rows: list[tuple[Any, ...]] = []
                    seen: set[tuple[str, str]] = set()
                    for e in batch:
                        if not isinstance(e, NewEntry):
                            raise TypeError(f"add_entries takes NewEntry objects, got {e!r}")
                        k = (e.signal, e.value)
                        if k in seen:
                            duplicates += 1
                            continue
                        seen.add(k)
                        rows.append(
                            (
                                e.signal,
                                e.value,
                                e.quality,
                                e.source,
                                tag_json.get(e.tags) or _tags_json(tag_json, e.tags),
                                _json(e.meta, "{}"),
                                json.dumps(e.frames) if e.frames else None,
                            )
                        )
                    if rows:
                        with db.driver_errors(conn):
                            n = writer(rows)
                        added += n
                        duplicates += len(rows) - n
            finally:
                cursor.close()
            if added:
                conn.execute(
                    insert(changes_table).from_select(
                        _CHANGE_COLUMNS,
                        select(
                            literal("add"),
                            E.bank_id,
                            E.id,
                            E.signal,
                            E.value,
                            literal(now, UTCDateTime()),
                        )
                        .where(E.id > max_before)
                        .order_by(E.id),
                    )
                )
                if return_ids:
                    query = select(E.id).where(E.id > max_before).order_by(E.id)
                    ids = list(conn.execute(query).scalars())
        return AddResult(ids=ids, added=added, duplicates=duplicates)

    def _batch_writer(
        self, conn: Connection, cursor: Any, bank_id: int, now: datetime
    ) -> Callable[[list[tuple[Any, ...]]], int]:
        """A function that inserts rows ``(signal, value, quality, source, tags, metadata,
        frames)`` (JSON as text) into ``bank_id``, skips duplicates, and returns how many
        went in."""
        if self._dialect == "postgresql":
            return _pg_writer(conn, cursor, bank_id, now)
        added_at = _bind(conn, E.added_at, now)
        sql = (
            "INSERT INTO entries (bank_id, signal, value, quality, source, tags, metadata, "
            "frames, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (bank_id, signal, value) DO NOTHING"
        )

        def write(rows: list[tuple[Any, ...]]) -> int:
            # Plain executemany: sqlite3 runs it in C, about a microsecond a row.
            cursor.executemany(sql, [(bank_id, *r, added_at) for r in rows])
            return int(cursor.rowcount)

        return write

    def add_entry(self, bank: BankRef, entry: NewEntry, *, tenant: str = "default") -> int | None:
        """Add one hash; its new id, or ``None`` if the bank already had it."""
        result = self.add_entries(bank, [entry], tenant=tenant)
        return result.ids[0] if result.ids else None

    def remove_entries(
        self, bank: BankRef, entry_ids: Iterable[int], *, tenant: str = "default"
    ) -> RemoveResult:
        """Delete entries of ``bank`` by id (hard delete), in one transaction.

        Ids that are not in that bank (never were, already removed, or in another bank) are
        reported in ``not_found`` rather than raised, so a retried withdrawal is harmless; the
        caller decides whether a miss is an error.
        """
        wanted = list(dict.fromkeys(int(i) for i in entry_ids))
        removed: list[int] = []
        with db.write_transaction(self._engine) as conn:
            key = self._resolve(conn, bank, tenant)
            now = _now()
            for chunk in _chunks(wanted, _ID_CHUNK):
                removed += delete_entries(conn, and_(E.bank_id == key.id, E.id.in_(chunk)), now)
        gone = set(removed)
        return RemoveResult(removed=removed, not_found=[i for i in wanted if i not in gone])

    def get_entry(self, entry_id: int) -> EntryInfo:
        """One entry by id; NotFoundError ``entry_not_found`` if there is none."""
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(self._entry_query().where(E.id == entry_id)).first()
        if row is None:
            raise NotFoundError(
                f"no entry with id {entry_id}",
                code="entry_not_found",
                hint="it may have been removed; list a bank's entries to see current ids",
            )
        return self._to_entry(row)

    def iter_entries(
        self,
        bank: BankRef,
        signal: str | None = None,
        *,
        tenant: str = "default",
        chunk_size: int = 1000,
    ) -> Iterator[EntryInfo]:
        """Stream a bank's entries in id order from one consistent read (for exports).

        The bank is looked up when this is called (so a missing bank raises at once); rows are
        then fetched ``chunk_size`` at a time while you iterate.
        """
        sig = canonical_signal(signal) if signal is not None else None
        with db.read_transaction(self._engine) as conn:
            key = self._resolve(conn, bank, tenant)
        return self._iter_entries(key.id, sig, chunk_size)

    def iter_video_entries(
        self, bank: BankRef | None = None, *, tenant: str = "default", chunk_size: int = 200
    ) -> Iterator[EntryInfo]:
        """Stream the ``vpdq`` (video) entries, with their frames: of one bank, or of all."""
        if bank is None:
            return self._iter_entries(None, VIDEO_SIGNAL, chunk_size)
        return self.iter_entries(bank, VIDEO_SIGNAL, tenant=tenant, chunk_size=chunk_size)

    def _iter_entries(
        self, bank_id: int | None, sig: str | None, chunk_size: int
    ) -> Iterator[EntryInfo]:
        with db.read_transaction(self._engine, snapshot=True) as conn:
            query = self._entry_query().order_by(E.id)
            if bank_id is not None:
                query = query.where(E.bank_id == bank_id)
            if sig is not None:
                query = query.where(E.signal == sig)
            result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
                query
            )
            for row in result:
                yield self._to_entry(row)

    def lookup_exact(
        self,
        signal: str,
        value: str,
        banks: Collection[BankRef] | None = None,
        *,
        bank_ids: Collection[int] | None = None,
        tenant: str | None = None,
        enabled_only: bool = False,
    ) -> list[EntryInfo]:
        """Entries whose hash equals ``value`` exactly (any signal, typically MD5/SHA-256;
        for ``vpdq``, the video's MD5).

        ``banks`` (names resolved in ``tenant``, default ``"default"``) or ``bank_ids``
        restrict the search; ``tenant`` alone restricts it to that tenant's banks;
        ``enabled_only`` skips disabled banks. Raises HashFormatError for a malformed value.
        """
        sig = canonical_signal(signal)
        canonical = (MD5.validate if sig == VIDEO_SIGNAL else get_signal(sig).validate)(value)
        with db.read_transaction(self._engine) as conn:
            query = self._entry_query().where(E.signal == sig, E.value == canonical)
            if banks is not None or bank_ids is not None:
                wanted = [self._resolve(conn, b, tenant or "default").id for b in banks or ()]
                wanted += [int(i) for i in bank_ids or ()]
                query = query.where(E.bank_id.in_(wanted))
            elif tenant is not None:
                query = query.where(B.tenant == tenant)
            if enabled_only:
                query = query.where(B.enabled.is_(True))
            rows = conn.execute(query.order_by(E.id)).all()
        return [self._to_entry(r) for r in rows]

    def exact_hits(self, values: Mapping[str, str]) -> list[tuple[int, int, str]]:
        """``(entry_id, bank_id, signal)`` of every entry equal to one of ``values``
        (signal -> canonical hex), in every bank: the scan path's one round trip for its
        exact hashes (the caller filters banks). Values must already be canonical."""
        pairs = [(s, v) for s, v in values.items() if v]
        if not pairs:
            return []
        with self._engine.connect() as conn:
            query = select(E.id, E.bank_id, E.signal).where(
                or_(*(and_(E.signal == s, E.value == v) for s, v in pairs))
            )
            return [(int(i), int(b), str(sig)) for i, b, sig in conn.execute(query)]

    def count_entries(self, signal: str | None = None) -> int:
        """How many entries the store holds (of one signal type, or all)."""
        with db.read_transaction(self._engine) as conn:
            query = select(func.count()).select_from(entries_table)
            if signal is not None:
                query = query.where(E.signal == canonical_signal(signal))
            return int(conn.execute(query).scalar_one())

    def get_entries(self, entry_ids: Iterable[int]) -> list[EntryInfo]:
        """The entries with these ids, in id order; ids that do not exist are left out."""
        wanted = sorted({int(i) for i in entry_ids})
        out: list[EntryInfo] = []
        with db.read_transaction(self._engine) as conn:
            for chunk in _chunks(wanted, _ID_CHUNK):
                rows = conn.execute(self._entry_query().where(E.id.in_(chunk)).order_by(E.id))
                out.extend(self._to_entry(r) for r in rows)
        return out

    # -- bulk load for indexes -----------------------------------------------------------------

    def load_signal_arrays(
        self, signal: str, *, on_progress: Callable[[int], None] | None = None
    ) -> SignalArrays:
        """Every entry of ``signal`` as numpy arrays, plus the change-log position they match.

        This is the start-up path of every matcher process (10M PDQ rows load in seconds), so
        no Python object is made per row: SQLite formats each row as one fixed-width hex
        string that numpy decodes a chunk at a time, PostgreSQL streams ``COPY ... (FORMAT
        BINARY)``, whose fixed-width rows numpy reads directly. All banks are included
        (disabled ones too): filter with ``bank_ids`` and the bank records.
        """
        if canonical_signal(signal) == VIDEO_SIGNAL:
            raise RempartError(
                "video entries have many hashes each and do not load as arrays",
                code="unsupported_signal",
                hint="use Store.iter_video_entries() for vpdq entries",
            )
        sig = get_signal(signal)
        with db.read_transaction(self._engine, snapshot=True) as conn:
            seq = self._latest_seq(conn)
            n = int(
                conn.execute(
                    select(func.count()).select_from(entries_table).where(E.signal == sig.name)
                ).scalar_one()
            )
            entry_ids = np.empty(n, dtype=np.int64)
            bank_ids = np.empty(n, dtype=np.int64)
            codes = np.empty((n, sig.nbytes), dtype=np.uint8)
            quality = np.empty(n, dtype=np.int16)
            chunks = (
                _pg_signal_rows(conn, sig.name, sig.nbytes)
                if self._dialect == "postgresql"
                else _sqlite_signal_rows(conn, sig.name, sig.nbytes)
            )
            pos = 0
            for chunk in db.driver_errored(conn, chunks):
                k = len(chunk)
                if pos + k > n:  # pragma: no cover - impossible inside one snapshot
                    raise RuntimeError("entries changed during a snapshot read")
                entry_ids[pos : pos + k] = chunk["id"]
                bank_ids[pos : pos + k] = chunk["bank"]
                quality[pos : pos + k] = chunk["quality"]
                codes[pos : pos + k] = chunk["code"]
                pos += k
                if on_progress is not None:
                    on_progress(pos)
        if pos != n:  # pragma: no cover - see above
            raise RuntimeError("entries changed during a snapshot read")
        return SignalArrays.of(entry_ids, bank_ids, codes, quality, seq)

    # -- change log ----------------------------------------------------------------------------

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """Changes after position ``seq``, oldest first (at most ``limit``).

        Poll with the ``seq`` of the last change applied (or ``SignalArrays.seq``); positions
        only grow, in commit order. Gaps in ``seq`` are normal (rolled-back transactions).
        """
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(C.seq, C.op, C.bank_id, C.entry_id, C.signal, C.value, E.quality, C.at)
                .select_from(
                    changes_table.outerjoin(entries_table, and_(E.id == C.entry_id, C.op == "add"))
                )
                .where(C.seq > seq)
                .order_by(C.seq)
                .limit(limit)
            ).all()
        return [
            Change(
                seq=r.seq,
                op=r.op,
                bank_id=r.bank_id,
                entry_id=r.entry_id,
                signal=r.signal,
                value=r.value,
                quality=r.quality,
                at=r.at,
            )
            for r in rows
        ]

    def latest_seq(self) -> int:
        """The newest change-log position (0 for a store that has never changed)."""
        with db.read_transaction(self._engine) as conn:
            return self._latest_seq(conn)

    def prune_changes(self, before_seq: int) -> int:
        """Delete change-log rows older than ``before_seq``; returns how many went.

        The newest row is always kept, so ``latest_seq`` stays right. A worker whose position
        is older than what remains has missed changes and must reload its arrays.
        """
        with db.write_transaction(self._engine) as conn:
            newest = self._latest_seq(conn)
            result = conn.execute(delete(changes_table).where(C.seq < min(before_seq, newest)))
            return int(result.rowcount or 0)

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _latest_seq(conn: Connection) -> int:
        return int(conn.execute(select(func.coalesce(func.max(C.seq), 0))).scalar_one())

    @staticmethod
    def _log_bank(conn: Connection, op: str, bank_id: int, at: datetime) -> None:
        conn.execute(insert(changes_table), {"op": op, "bank_id": bank_id, "at": at})

    @staticmethod
    def _find_bank(conn: Connection, name: str, tenant: str) -> _BankKey | None:
        row = conn.execute(
            select(B.id, B.name, B.tenant).where(B.tenant == tenant, B.name == name)
        ).first()
        return None if row is None else _BankKey(row.id, row.name, row.tenant)

    @staticmethod
    def _exists(name: str, tenant: str) -> ConflictError:
        where = "" if tenant == "default" else f" for tenant {tenant!r}"
        return ConflictError(
            f"a bank named {name!r} already exists{where}",
            code="bank_exists",
            hint="choose another name, or add entries to the existing bank",
        )

    def _resolve(self, conn: Connection, bank: BankRef, tenant: str) -> _BankKey:
        if isinstance(bank, BankInfo):
            bank = bank.id
        if isinstance(bank, bool) or not isinstance(bank, (int, str)):
            raise TypeError(f"a bank is a name, an id or a BankInfo, got {bank!r}")
        if isinstance(bank, int):
            row = conn.execute(select(B.id, B.name, B.tenant).where(B.id == bank)).first()
            if row is None:
                raise NotFoundError(
                    f"no bank with id {bank}",
                    code="bank_not_found",
                    hint="it may have been deleted; list banks to see current ids",
                )
            return _BankKey(row.id, row.name, row.tenant)
        found = self._find_bank(conn, bank, tenant)
        if found is None:
            names = (
                conn.execute(select(B.name).where(B.tenant == tenant).order_by(B.name).limit(21))
                .scalars()
                .all()
            )
            if not names:
                hint = "there are no banks yet; create one first"
            else:
                shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
                hint = f"existing banks: {shown}"
            where = "" if tenant == "default" else f" for tenant {tenant!r}"
            raise NotFoundError(f"no bank named {bank!r}{where}", code="bank_not_found", hint=hint)
        return found

    @staticmethod
    def _counts(conn: Connection, bank_ids: Sequence[int] | None) -> dict[int, dict[str, int]]:
        query = select(E.bank_id, E.signal, func.count()).group_by(E.bank_id, E.signal)
        if bank_ids is not None:
            if not bank_ids:
                return {}
            query = query.where(E.bank_id.in_(bank_ids))
        counts: dict[int, dict[str, int]] = {}
        for bank_id, signal, count in conn.execute(query):
            counts.setdefault(bank_id, {})[signal] = int(count)
        return counts

    def _bank_info(self, conn: Connection, bank_id: int) -> BankInfo:
        row = conn.execute(select(banks_table).where(B.id == bank_id)).one()
        return self._to_bank(row, self._counts(conn, [bank_id]).get(bank_id, {}))

    @staticmethod
    def _to_bank(row: Row[Any], counts: dict[str, int]) -> BankInfo:
        return BankInfo(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            description=row.description,
            threshold=row.threshold,
            kind=row.kind,
            enabled=bool(row.enabled),
            created_at=row.created_at,
            updated_at=row.updated_at,
            counts=dict(sorted(counts.items())),
        )

    @staticmethod
    def _entry_query() -> Any:
        return select(
            E.id,
            E.bank_id,
            B.name.label("bank"),
            B.tenant,
            E.signal,
            E.value,
            E.quality,
            E.source,
            E.tags,
            E["metadata"].label("meta"),
            E.frames,
            E.added_at,
        ).select_from(entries_table.join(banks_table, B.id == E.bank_id))

    @staticmethod
    def _to_entry(row: Row[Any]) -> EntryInfo:
        return EntryInfo(
            id=row.id,
            bank_id=row.bank_id,
            bank=row.bank,
            tenant=row.tenant,
            signal=row.signal,
            value=row.value,
            quality=row.quality,
            source=row.source,
            tags=tuple(row.tags or ()),
            meta=dict(row.meta or {}),
            added_at=row.added_at,
            frames=tuple(row.frames or ()),
        )


# -- bulk readers for load_signal_arrays -----------------------------------------------------

_LOAD_BYTES: Final = 8 * 1024 * 1024


def _sqlite_signal_rows(conn: Connection, signal: str, nbytes: int) -> Iterator[np.ndarray]:
    # One hex string per row: id (16 digits), bank id (16), quality (4; -1 is ffff), hash.
    dtype = np.dtype(
        [("id", ">i8"), ("bank", ">i8"), ("quality", ">i2"), ("code", "u1", (nbytes,))]
    )
    cursor = conn.connection.cursor()
    try:
        # "+signal" keeps SQLite off the (signal, value) index: walking it would visit the
        # table in hash order, one random page read per row; a plain scan is sequential.
        cursor.execute(
            "SELECT printf('%016x%016x%04x', id, bank_id, COALESCE(quality, -1) & 65535)"
            " || value FROM entries WHERE +signal = ?",
            (signal,),
        )
        while rows := cursor.fetchmany(_LOAD_CHUNK):
            text = "".join([r[0] for r in rows])
            yield np.frombuffer(bytes.fromhex(text), dtype=dtype)
    finally:
        cursor.close()


def _pg_signal_rows(conn: Connection, signal: str, nbytes: int) -> Iterator[np.ndarray]:
    # Binary COPY rows are: int16 field count, then per field int32 length + big-endian value.
    # Every field here has a fixed width, so a row is a fixed-size numpy record.
    dtype = np.dtype(
        [
            ("nfields", ">i2"),
            ("len_id", ">i4"),
            ("id", ">i8"),
            ("len_bank", ">i4"),
            ("bank", ">i8"),
            ("len_code", ">i4"),
            ("code", "u1", (nbytes,)),
            ("len_quality", ">i4"),
            ("quality", ">i2"),
        ]
    )
    size = dtype.itemsize
    cursor = conn.connection.cursor()
    sql = (
        "COPY (SELECT id::int8, bank_id::int8, decode(value, 'hex'),"
        " COALESCE(quality, -1)::int2 FROM entries WHERE signal = {}) TO STDOUT (FORMAT BINARY)"
    )
    try:
        from psycopg import sql as pgsql

        query = pgsql.SQL(sql).format(pgsql.Literal(signal))
        with cursor.copy(query) as copy:
            pending: list[bytes] = []
            held = 0
            header_done = False
            rest = b""
            for data in _copy_blocks(copy):
                pending.append(data)
                held += len(data)
                if held < _LOAD_BYTES:
                    continue
                buf = rest + b"".join(pending)
                pending, held = [], 0
                if not header_done:
                    buf, header_done = _skip_copy_header(buf), True
                whole = len(buf) // size * size
                if whole:
                    yield _check_copy_rows(np.frombuffer(buf[:whole], dtype=dtype), nbytes)
                rest = buf[whole:]
            buf = rest + b"".join(pending)
            if not header_done:
                buf = _skip_copy_header(buf)
            if buf[-2:] == b"\xff\xff":  # the trailer: a field count of -1
                buf = buf[:-2]
            if len(buf) % size:  # pragma: no cover - would mean a malformed stream
                raise RuntimeError("unexpected COPY stream layout")
            if buf:
                yield _check_copy_rows(np.frombuffer(buf, dtype=dtype), nbytes)
    finally:
        cursor.close()


def _copy_blocks(copy: Any) -> Iterator[bytes]:
    for block in copy:
        yield bytes(block)


def _skip_copy_header(buf: bytes) -> bytes:
    # 11-byte signature, int32 flags, int32 header-extension length, extension.
    if not buf.startswith(b"PGCOPY\n\xff\r\n\x00"):  # pragma: no cover
        raise RuntimeError("unexpected COPY header")
    ext = int.from_bytes(buf[15:19], "big")
    return buf[19 + ext :]


def _check_copy_rows(rows: np.ndarray, nbytes: int) -> np.ndarray:
    # Values are validated hex on the way in, so this only fails on a corrupted database.
    if (
        not (rows["nfields"] == 4).all()
        or not (rows["len_code"] == nbytes).all()
        or not (rows["len_id"] == 8).all()
    ):  # pragma: no cover
        raise RuntimeError("an entry's stored hash has the wrong length; check the database")
    return rows


# -- bulk writer for PostgreSQL ----------------------------------------------------------------

#: Below this many rows a batch goes in as a plain INSERT: a temporary table per call would
#: cost more than it saves (and churn the catalog under many small API adds).
_COPY_MIN_ROWS: Final = 200

_PG_INSERT: Final = (
    "INSERT INTO entries (bank_id, signal, value, quality, source, tags, metadata, frames,"
    " added_at) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s)"
    " ON CONFLICT (bank_id, signal, value) DO NOTHING"
)


def _pg_writer(
    conn: Connection, cursor: Any, bank_id: int, now: datetime
) -> Callable[[list[tuple[Any, ...]]], int]:
    # Big batches: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT DO
    # NOTHING, several times faster than row-by-row INSERTs through the driver.
    staging = False

    def write(rows: list[tuple[Any, ...]]) -> int:
        nonlocal staging
        if len(rows) < _COPY_MIN_ROWS:
            cursor.executemany(_PG_INSERT, [(bank_id, *r, now) for r in rows])
            return int(cursor.rowcount)
        if not staging:
            cursor.execute(
                "CREATE TEMPORARY TABLE rempart_staging (ord bigint, signal varchar(16),"
                " value varchar(128), quality smallint, source text, tags jsonb,"
                " metadata jsonb, frames jsonb) ON COMMIT DROP"
            )
            staging = True
        with cursor.copy(
            "COPY rempart_staging (ord, signal, value, quality, source, tags, metadata, frames)"
            " FROM STDIN"
        ) as copy:
            for i, r in enumerate(rows):
                copy.write_row((i, *r))
        cursor.execute(
            "INSERT INTO entries (bank_id, signal, value, quality, source, tags, metadata,"
            " frames, added_at) SELECT %s, signal, value, quality, source, tags, metadata,"
            " frames, %s"
            " FROM rempart_staging ORDER BY ord"
            " ON CONFLICT (bank_id, signal, value) DO NOTHING",
            (bank_id, now),
        )
        n = int(cursor.rowcount)
        cursor.execute("TRUNCATE rempart_staging")
        return n

    return write


def delete_entries(
    conn: Connection, condition: ColumnElement[bool], now: datetime, *, erase: bool = False
) -> list[int]:
    """Hard-delete the entries matching ``condition`` in the caller's transaction, logging a
    ``remove`` change for each so every worker drops it from its index; returns their ids.

    ``erase`` keeps the hashes out of the change log as well: the ``remove`` rows carry no
    value and the earlier rows of these entries lose theirs (a victim's withdrawal, where no
    copy of her hashes may stay in the database).
    """
    found = list(conn.execute(select(E.id).where(condition).order_by(E.id)).scalars())
    if not found:
        return []
    value = null() if erase else E.value
    conn.execute(
        insert(changes_table).from_select(
            _CHANGE_COLUMNS,
            select(literal("remove"), E.bank_id, E.id, E.signal, value, literal(now, UTCDateTime()))
            .where(condition)
            .order_by(E.id),
        )
    )
    conn.execute(delete(entries_table).where(condition))
    if erase:
        conn.execute(update(changes_table).where(C.entry_id.in_(found)).values(value=None))
    return found
