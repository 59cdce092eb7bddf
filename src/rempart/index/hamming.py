"""Exact Hamming range search over 256-bit PDQ codes.

:class:`PDQIndex` answers "every stored code within ``threshold`` bits of this one" and never
misses one, at any threshold from 0 to 256. Meta's HMA uses FAISS ``IndexBinaryMultiHash``
(16 hash maps of 16-bit keys, one flipped bit per map at threshold 31), which is exact too by
the pigeonhole argument below, but at 10M codes answers ~200 queries/s a core in ~3 GB; this
index answers ~8,000-10,000 in 2.8x the raw codes' memory (bench/index_bench.py), and takes
adds and removals without a rebuild.

How it works
------------
*Multi-index hashing* (Norouzi, Punjani & Fleet, "Fast exact search in Hamming space with
multi-index hashing", 2014). The 256 bits are cut into ``m`` chunks of ``b`` or ``b + 1``
bits, and each chunk has a bucket table: a ``uint32`` row list sorted by chunk key, and the
bounds of every key's bucket in it. By the generalised pigeonhole principle, if two codes
differ in at most ``r = m * r' + a`` bits, then one of ``a + 1`` chosen chunks differs in at
most ``r'`` bits or one of the other chunks differs in at most ``r' - 1`` bits. So a query
probes every key within that radius in each chunk and verifies the rows it finds with a
full 256-bit popcount; nothing within ``r`` can hide. The time goes into cache misses (one
for a bucket's bounds, one for its row list, one per candidate row), so the kernels work in
flat passes with software prefetch.

Memory at 10M codes (11 chunks of 23-24 bits, chosen by a cost model from ``n``): codes
32 B/row, stored in chunk 0's key order so chunk 0 needs no row list; ids 4 B/row (``uint32``
when every id fits, else ``int64``); 10 row lists of 4 B/row; bucket bounds in compact
directories (1.14 bytes a bucket, 134 MB) where plain offsets would take 448 MB. About 2.8x
the raw codes. There is no dict of ids: the rare upsert and removal scan the id array in
compiled code.

When the probe count explodes (large thresholds, or an index too small for tables to pay),
the planner, which estimates both costs per threshold from the real bucket sizes, scans
all codes linearly instead; both paths are exact.

Changes without rebuilding
--------------------------
The index is an immutable snapshot swapped atomically under a writer lock: a bulk-built
*static* part, a bitset of its removed rows, and a small *delta* of recent additions that
every query scans linearly. When the delta grows past a bound, or removed rows pile up,
the writer rebuilds the static part from the live rows (amortised O(1) per change) while
searches keep using the previous snapshot. A search therefore always sees one consistent
state, and every add and remove is visible to the next query.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from rempart.errors import HashFormatError, RempartError

#: Bits in a PDQ code and bytes it occupies.
CODE_BITS: Final = 256
CODE_BYTES: Final = 32

#: The PDQ match threshold Meta recommends (distance <= 31 of 256 bits).
DEFAULT_THRESHOLD: Final = 31

# Bounds of a layout's chunk count: fewer chunks than 8 would need chunks over 32 bits.
_MIN_CHUNKS: Final = 8
_MAX_CHUNKS: Final = 64

# Below this many rows the static part keeps no bucket tables: a linear scan of 32k codes
# takes ~20 µs, as fast as probing, and the tables would cost more memory than the codes.
_MIN_TABLE_ROWS: Final = 32_768

# Delta bounds. Every query scans the delta linearly (~1 ns a row), so the cap keeps that
# under ~35 µs, a fraction of a multi-index query at 10M. Folding the delta in rebuilds the
# static part (O(n)); the bound grows with n (n/8) so small indexes rebuild rarely, and at the
# cap a rebuild every 32k additions (a few seconds at 10M) costs ~0.1 ms per added row.
_DELTA_MIN: Final = 4_096
_DELTA_CAP: Final = 32_768
_DELTA_FRACTION: Final = 8

# A chunk's bucket bounds are kept in a directory (see _Layout) when its 56-bucket groups hold
# at most this many rows on average: a group of more than 255 rows costs an extra lookup, and
# the margin absorbs clustered data (families of near-duplicates share keys).
_DIRECTORY_MAX_LOAD: Final = 100.0

# Removed rows still cost memory and verification time; compact once they are a quarter.
_DEAD_FRACTION: Final = 4

# Planner cost model, in nanoseconds on one core, fitted to measurements on a 2-core AMD
# EPYC VM at 10M codes with 11 to 14 chunks (only the ratios matter; the VM is noisy, so
# these are rounded). A probe costs a cache miss in the bucket bounds and one in the row
# list; a candidate is a (prefetched) miss on its 32-byte code; a linear-scan row is
# streamed from memory.
_COST_PROBE: Final = 30.0
_COST_CANDIDATE: Final = 12.0
_COST_LINEAR: Final = 1.1

# Query batches at least this large are split across threads.
_MIN_ROWS_PER_THREAD: Final = 32

# A plan probing more keys than this per query is never chosen, even when forced: its probe
# list alone would take hundreds of MB (e.g. threshold 256 with 22-bit chunks).
_MAX_PROBES: Final = 1 << 22

#: How a search is answered: ``auto`` picks the cheaper; ``tables`` prefers the bucket tables
#: and ``scan`` a linear scan (both exact; for tests and benchmarks).
Strategy = Literal["auto", "tables", "scan"]

_IdArray = npt.NDArray[np.int64]
_CodeArray = npt.NDArray[np.uint8]


class IndexInputError(RempartError, ValueError):
    """Arrays given to :class:`PDQIndex` have the wrong type, shape or range."""

    code = "bad_index_input"
    status = 422


def _kernels() -> ModuleType:
    # Imported on first use, not at module import: loading numba and the compiled kernels
    # takes a second or more, which every CLI command importing rempart would otherwise pay.
    from rempart.index import _kernels as k

    return k


@dataclass(frozen=True)
class _Layout:
    """How the 256 bits are cut into chunks, and how their bucket bounds are stored.

    Bucket bounds are plain CSR offsets (4 bytes a bucket) or, for sparse chunks, a bucket
    directory (1.14 bytes a bucket; see ``_kernels._bucket_ranges``). The directory is what makes
    11 chunks of 23-24 bits fit in memory at 10M codes.
    """

    starts: npt.NDArray[np.int64]
    bits: npt.NDArray[np.int64]
    directory: bool

    @property
    def sizes(self) -> npt.NDArray[np.int64]:
        """Entries of each chunk's bounds: offsets, or 64-byte directory records."""
        if self.directory:
            group = int(_kernels().GROUP)
            return ((np.int64(1) << self.bits) + group - 1) // group
        return (np.int64(1) << self.bits) + 1

    @property
    def bases(self) -> npt.NDArray[np.int64]:
        """Where each chunk's bounds begin in the shared offsets or directory array."""
        return np.concatenate(([0], np.cumsum(self.sizes)[:-1])).astype(np.int64)

    def table_bytes(self, n: int) -> int:
        """Bytes of bucket bounds and row lists for ``n`` rows (directory overflow aside)."""
        per_entry = 64 if self.directory else 4
        return per_entry * int(self.sizes.sum()) + 4 * n * (len(self.bits) - 1)

    @staticmethod
    def even(m: int, n: int) -> _Layout:
        """``m`` chunks of consecutive bits, the longer ones first, for ``n`` rows.

        Bounds go in directories when every group of buckets holds few enough rows on
        average to leave room for clustered data, else in plain offsets.
        """
        q, rem = divmod(CODE_BITS, m)
        bits = np.array([q + 1] * rem + [q] * (m - rem), dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(bits)[:-1])).astype(np.int64)
        load = n * int(_kernels().GROUP) / 2.0 ** int(bits.min())
        return _Layout(starts=starts, bits=bits, directory=load <= _DIRECTORY_MAX_LOAD)


def _radii(
    bits: npt.NDArray[np.int64], bucket: npt.NDArray[np.float64], r: int
) -> npt.NDArray[np.int64]:
    """Per-chunk search radius for threshold ``r`` (generalised pigeonhole).

    With ``m`` chunks and ``r = m * r1 + a``, searching ``a + 1`` chunks at radius ``r1`` and
    the rest at ``r1 - 1`` is exact. Which ``a + 1`` chunks get the larger radius is free; we
    pick those where it costs least.
    """
    m = len(bits)
    r1, a = divmod(r, m)
    low = np.array(
        [_chunk_cost(int(b), r1 - 1, float(s)) for b, s in zip(bits, bucket, strict=True)]
    )
    high = np.array([_chunk_cost(int(b), r1, float(s)) for b, s in zip(bits, bucket, strict=True)])
    radii = np.full(m, r1 - 1, dtype=np.int64)
    radii[np.argsort(high - low, kind="stable")[: a + 1]] = r1
    return radii


def _probes(bits: int, radius: int) -> int:
    """Keys within ``radius`` bits of a ``bits``-bit key."""
    return sum(math.comb(bits, d) for d in range(min(radius, bits) + 1)) if radius >= 0 else 0


def _chunk_cost(bits: int, radius: int, bucket: float) -> float:
    """Estimated nanoseconds to probe one chunk at ``radius`` with mean bucket ``bucket``."""
    return _probes(bits, radius) * (_COST_PROBE + _COST_CANDIDATE * bucket)


def _choose_layout(n: int) -> _Layout | None:
    """The chunking with the cheapest estimated query at the default threshold.

    Longer chunks mean smaller buckets but more probes and bigger offset tables; the choice
    is bounded so that tables take at most ~60 bytes a row (the whole index then stays within
    3x the raw codes at 10M rows) or 16 MiB for small indexes.
    """
    if n < _MIN_TABLE_ROWS:
        return None
    budget = max(60 * n, 16 << 20)
    best: tuple[float, _Layout] | None = None
    smallest: tuple[int, _Layout] | None = None
    for m in range(8, 33):
        layout = _Layout.even(m, n)
        if int(layout.bits.max()) > 26:
            continue
        size = layout.table_bytes(n)
        if smallest is None or size < smallest[0]:
            smallest = (size, layout)
        if size > budget:
            continue
        bucket = n / np.exp2(layout.bits.astype(np.float64))
        radii = _radii(layout.bits, bucket, DEFAULT_THRESHOLD)
        cost = sum(
            _chunk_cost(int(b), int(r), float(s))
            for b, r, s in zip(layout.bits, radii, bucket, strict=True)
        )
        if best is None or cost < best[0]:
            best = (cost, layout)
    if best is not None:
        return best[1]
    assert smallest is not None
    return smallest[1]


@dataclass(frozen=True, eq=False)
class _Plan:
    """How to answer one threshold: probe the tables with these radii, or scan."""

    use_tables: bool
    radii: npt.NDArray[np.int64]
    #: Keys probed per query (sizes the kernel's probe list).
    probes: int


_NO_RADII: Final = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class _Static:
    """The bulk-built part of the index. Never mutated after construction."""

    words: npt.NDArray[np.uint64]  # (n, 4), rows in chunk-0 key order
    ids: npt.NDArray[np.uint32] | npt.NDArray[np.int64]  # (n,)
    starts: npt.NDArray[np.int64]  # (m,)
    bits: npt.NDArray[np.int64]  # (m,)
    directory: bool  # bucket bounds in `records` (else in `offsets`)
    offsets: npt.NDArray[np.uint32]  # CSR offsets of every chunk, concatenated
    records: npt.NDArray[np.uint32]  # (groups, 16) bucket directories of every chunk
    overflow: npt.NDArray[np.uint32]  # offsets of crowded directory groups
    bases: npt.NDArray[np.int64]  # (m,) first offset or record of each chunk
    overflow_bases: npt.NDArray[np.int64]  # (m,) first overflow entry of each chunk
    positions: npt.NDArray[np.uint32]  # (m - 1, n) row lists of chunks 1..m-1
    #: Mean size of the bucket a stored code falls in, per chunk (sum of squares / n).
    collision: npt.NDArray[np.float64]
    _plans: dict[tuple[int, str], _Plan] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Rows, removed ones included."""
        return int(self.words.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(
            self.words.nbytes
            + self.ids.nbytes
            + self.offsets.nbytes
            + self.records.nbytes
            + self.overflow.nbytes
            + self.positions.nbytes
        )

    def plan(self, threshold: int, strategy: Strategy = "auto") -> _Plan:
        """The cheaper exact way to answer ``threshold`` (memoised; plans are immutable)."""
        cached = self._plans.get((threshold, strategy))
        if cached is not None:
            return cached
        linear = self.n * _COST_LINEAR
        plan = _Plan(use_tables=False, radii=_NO_RADII, probes=1)
        m = len(self.bits)
        if m and strategy != "scan":
            uniform = self.n / np.exp2(self.bits.astype(np.float64))
            radii = _radii(self.bits, uniform, threshold)
            cost = 0.0
            total_probes = 0
            for b, r, u, c in zip(self.bits, radii, uniform, self.collision, strict=True):
                if r < 0:
                    continue
                # The query's own key tends to land in a crowded bucket on clustered data;
                # its neighbours are closer to the uniform size.
                probes = _probes(int(b), int(r))
                total_probes += probes
                cost += probes * _COST_PROBE + _COST_CANDIDATE * (c + (probes - 1) * u)
            if total_probes <= _MAX_PROBES and (cost < linear or strategy == "tables"):
                plan = _Plan(use_tables=True, radii=radii, probes=total_probes)
        self._plans[(threshold, strategy)] = plan
        return plan


def _empty_static() -> _Static:
    return _Static(
        words=np.zeros((0, 4), dtype=np.uint64),
        ids=np.zeros(0, dtype=np.uint32),
        starts=np.zeros(0, dtype=np.int64),
        bits=np.zeros(0, dtype=np.int64),
        directory=False,
        offsets=np.zeros(0, dtype=np.uint32),
        records=np.zeros((0, 16), dtype=np.uint32),
        overflow=np.zeros(0, dtype=np.uint32),
        bases=np.zeros(0, dtype=np.int64),
        overflow_bases=np.zeros(0, dtype=np.int64),
        positions=np.zeros((0, 0), dtype=np.uint32),
        collision=np.zeros(0, dtype=np.float64),
    )


def _build_static(ids: _IdArray, words: npt.NDArray[np.uint64], layout: _Layout | None) -> _Static:
    """Bulk-build the static part from unique ids and their codes (as uint64 words)."""
    n = int(words.shape[0])
    if n >= 2**32 - 1:
        raise IndexInputError(
            f"an index holds at most {2**32 - 2} codes, got {n}",
            code="bad_index_input",
            hint="shard the hashes across several indexes",
        )
    if n and int(ids.min()) >= 0 and int(ids.max()) < 2**32:
        stored_ids: npt.NDArray[np.uint32] | npt.NDArray[np.int64] = ids.astype(np.uint32)
    else:
        stored_ids = ids.astype(np.int64, copy=True)
    if layout is None:
        return dataclasses.replace(
            _empty_static(), words=np.array(words, dtype=np.uint64, order="C"), ids=stored_ids
        )

    k = _kernels()
    m = len(layout.bits)
    sizes = layout.sizes
    bases = layout.bases
    total = int(sizes.sum())
    if layout.directory:
        records = _aligned_records(total)
        offsets = np.zeros(0, dtype=np.uint32)
    else:
        records = np.zeros((0, 16), dtype=np.uint32)
        offsets = np.empty(total, dtype=np.uint32)
    overflows: list[npt.NDArray[np.uint32]] = [np.zeros(0, np.uint32)] * m
    collision = np.zeros(m, dtype=np.float64)

    def table(c: int, chunk_words: npt.NDArray[np.uint64], rows: npt.NDArray[np.uint32]) -> None:
        """Bucket bounds of chunk ``c``, and its row list into ``rows``."""
        start, bits = int(layout.starts[c]), int(layout.bits[c])
        lo, hi = int(bases[c]), int(bases[c] + sizes[c])
        counts, collision[c] = k.key_counts(chunk_words, start, bits)
        if layout.directory:
            overflows[c] = k.fill_directory(counts, records[lo:hi])
        else:
            offsets[lo:hi] = counts
        k.fill_positions(chunk_words, start, bits, counts, rows)

    # Chunk 0: sort the rows themselves by key, so its table needs no row list.
    order = np.empty(n, dtype=np.uint32)
    table(0, words, order)
    sorted_words = k.gather_rows(words, order)
    sorted_ids = stored_ids[order]
    del order
    positions = np.empty((m - 1, n), dtype=np.uint32)
    # The kernels release the GIL, so threads build chunks side by side.
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        list(pool.map(lambda c: table(c, sorted_words, positions[c - 1]), range(1, m)))
    lengths = np.array([o.shape[0] for o in overflows], dtype=np.int64)
    return _Static(
        words=sorted_words,
        ids=sorted_ids,
        starts=layout.starts,
        bits=layout.bits,
        directory=layout.directory,
        offsets=offsets,
        records=records,
        overflow=np.concatenate(overflows),
        bases=bases,
        overflow_bases=np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64),
        positions=positions,
        collision=collision,
    )


def _aligned_records(count: int) -> npt.NDArray[np.uint32]:
    """``uint32[count, 16]`` starting on a 64-byte boundary, so a record is one cache line."""
    buf = np.empty(count * 64 + 64, dtype=np.uint8)
    skip = -buf.ctypes.data % 64
    return buf[skip : skip + count * 64].view(np.uint32).reshape(count, 16)


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Everything a search reads. Replaced whole, never changed in place."""

    static: _Static
    dead: npt.NDArray[np.uint8]  # bitset over static rows: 1 = removed or replaced
    n_dead: int
    delta_words: npt.NDArray[np.uint64]  # (d, 4)
    delta_ids: _IdArray  # (d,)

    def __len__(self) -> int:
        return self.static.n - self.n_dead + int(self.delta_ids.shape[0])


def _snapshot(static: _Static) -> _Snapshot:
    return _Snapshot(
        static=static,
        dead=np.zeros((static.n + 7) // 8, dtype=np.uint8),
        n_dead=0,
        delta_words=np.zeros((0, 4), dtype=np.uint64),
        delta_ids=np.zeros(0, dtype=np.int64),
    )


# ---------------------------------------------------------------------------------------------
# Input checking


def _check_ids(ids: object, what: str = "ids") -> _IdArray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise IndexInputError(
            f"{what} must be a 1-D array, got shape {arr.shape}",
            hint="pass one integer id per code, e.g. np.array([1, 2, 3], dtype=np.int64)",
        )
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise IndexInputError(
            f"{what} must be integers, got dtype {arr.dtype}",
            hint="use np.int64 ids (the store's primary keys)",
        )
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise IndexInputError(
            f"{what} must fit in a signed 64-bit integer",
            hint="ids above 2**63 - 1 are not supported",
        )
    return arr.astype(np.int64, copy=False)


def _check_codes(codes: object, what: str = "codes") -> npt.NDArray[np.uint64]:
    """Validated ``uint8[n, 32]`` codes, returned as contiguous ``uint64[n, 4]`` words."""
    arr = np.asarray(codes)
    if arr.dtype != np.uint8:
        raise IndexInputError(
            f"{what} must be a uint8 array, got dtype {arr.dtype}",
            hint="PDQ codes are 32 bytes each: codes_from_hex() converts hex strings",
        )
    if arr.ndim == 1 and arr.shape[0] == CODE_BYTES:
        raise IndexInputError(
            f"{what} must be 2-D (n, 32); got a single code of shape (32,)",
            hint="wrap it: codes[None, :] or np.atleast_2d(code)",
        )
    if arr.ndim != 2 or arr.shape[1] != CODE_BYTES:
        raise IndexInputError(
            f"{what} must have shape (n, {CODE_BYTES}), got {arr.shape}",
            hint="one row of 32 bytes (256 bits) per PDQ code",
        )
    words = np.ascontiguousarray(arr).view(np.uint64)
    if not words.flags.aligned:
        # e.g. np.frombuffer at an odd offset; the kernels want aligned words (and would
        # be compiled a second time for an unaligned array type).
        words = words.copy()
    return words


def _check_threshold(threshold: object) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        raise IndexInputError(
            f"threshold must be an integer, got {type(threshold).__name__}",
            hint=f"a Hamming distance in bits, 0..{CODE_BITS} (PDQ's default is 31)",
        )
    t = int(threshold)
    if not 0 <= t <= CODE_BITS:
        raise IndexInputError(
            f"threshold must be between 0 and {CODE_BITS}, got {t}",
            hint="a Hamming distance in bits; PDQ's default is 31",
        )
    return t


def _last_wins(
    ids: _IdArray, words: npt.NDArray[np.uint64]
) -> tuple[_IdArray, npt.NDArray[np.uint64]]:
    """Drop all but the last occurrence of each id (upsert order within one call)."""
    if ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids, words  # the store hands ids in ascending order: nothing to do
    _, rev_index = np.unique(ids[::-1], return_index=True)
    keep = np.sort(ids.shape[0] - 1 - rev_index)
    return ids[keep], words[keep]


# ---------------------------------------------------------------------------------------------


class PDQIndex:
    """Exact Hamming range index for PDQ codes, with adds and removals visible at once.

    Thread-safe: any number of threads may search while other threads add or remove.
    Writers are serialised by a lock; a search never waits for them and sees the state
    either before or after each change, never a mix.
    """

    def __init__(self) -> None:
        """An empty index. Use :meth:`from_arrays` to load many codes at once."""
        self._lock = threading.Lock()
        self._snap = _snapshot(_empty_static())
        self._chunks: int | None = None

    @classmethod
    def from_arrays(cls, ids: object, codes: object, *, chunks: int | None = None) -> PDQIndex:
        """Build an index from ``int64[n]`` ids and ``uint8[n, 32]`` codes in one pass.

        The fast path to load a whole bank: 10M codes in a few seconds. If an id repeats,
        its last code wins, as with :meth:`add`. ``chunks`` (8..64) overrides the number of
        bucket tables, normally chosen from ``n`` for speed within ~3x the raw codes'
        memory; it also forces tables on an index small enough to be scanned.
        """
        id_arr = _check_ids(ids)
        words = _check_codes(codes)
        _check_same_length(id_arr, words)
        if chunks is not None and not (
            isinstance(chunks, int) and _MIN_CHUNKS <= chunks <= _MAX_CHUNKS
        ):
            raise IndexInputError(
                f"chunks must be an integer from {_MIN_CHUNKS} to {_MAX_CHUNKS}, got {chunks!r}",
                hint="leave it unset to let the index choose",
            )
        id_arr, words = _last_wins(id_arr, words)
        index = cls()
        index._chunks = chunks
        index._snap = _snapshot(_build_static(id_arr, words, index._layout(words.shape[0])))
        return index

    def __len__(self) -> int:
        """Live entries (added and not removed)."""
        return len(self._snap)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (codes, ids, tables, delta, removal bitset)."""
        s = self._snap
        return int(s.static.nbytes + s.dead.nbytes + s.delta_words.nbytes + s.delta_ids.nbytes)

    def add(self, ids: object, codes: object) -> None:
        """Add ``codes`` under ``ids``; an id already present gets the new code (upsert).

        Visible to the next search. New rows go to a small delta that queries scan; once it
        passes a bound (at most 32k rows) this call rebuilds the tables from the live rows,
        a few seconds at 10M codes, while searches carry on with the previous state. A batch
        larger than the bound is folded in by one rebuild.
        """
        id_arr = _check_ids(ids)
        words = _check_codes(codes)
        _check_same_length(id_arr, words)
        if id_arr.shape[0] == 0:
            return
        id_arr, words = _last_wins(id_arr, words)
        with self._lock:
            snap = self._snap
            dead, n_dead = _mark_dead(snap, id_arr)
            keep = ~np.isin(snap.delta_ids, id_arr)
            delta_ids = np.concatenate((snap.delta_ids[keep], id_arr))
            delta_words = np.concatenate((snap.delta_words[keep], words))
            self._publish(snap.static, dead, n_dead, delta_words, delta_ids)

    def remove(self, ids: object) -> int:
        """Remove these ids; returns how many were present. Unknown ids are ignored."""
        id_arr = _check_ids(ids)
        if id_arr.shape[0] == 0:
            return 0
        id_arr = np.unique(id_arr)
        with self._lock:
            snap = self._snap
            dead, n_dead = _mark_dead(snap, id_arr)
            keep = ~np.isin(snap.delta_ids, id_arr)
            removed = (n_dead - snap.n_dead) + int(keep.shape[0] - np.count_nonzero(keep))
            if removed:
                self._publish(
                    snap.static, dead, n_dead, snap.delta_words[keep], snap.delta_ids[keep]
                )
            return removed

    def search(
        self,
        codes: object,
        threshold: int = DEFAULT_THRESHOLD,
        *,
        threads: int | None = None,
        strategy: Strategy = "auto",
    ) -> list[list[tuple[int, int]]]:
        """For each query code, every ``(id, distance)`` with ``distance <= threshold``.

        ``codes`` is ``uint8[m, 32]``; each answer is sorted by distance, then id. Exact for
        every threshold 0..256. A batch is split across ``threads`` (default: every core the
        process may use). ``strategy`` forces the bucket tables or a linear scan; the
        default picks whichever is estimated cheaper for this threshold.
        """
        queries = _check_codes(codes, "query codes")
        t = _check_threshold(threshold)
        if strategy not in ("auto", "tables", "scan"):
            raise IndexInputError(
                f"strategy must be 'auto', 'tables' or 'scan', got {strategy!r}",
                hint="leave it unset unless you are benchmarking",
            )
        snap = self._snap  # one consistent state for the whole call
        st = snap.static
        plan = st.plan(t, strategy)
        k = _kernels()

        def run(part: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.int64], ...]:
            return k.search_batch(  # type: ignore[no-any-return]
                part, t, plan.use_tables, plan.probes,
                st.words, st.ids, snap.dead, st.starts, st.bits, plan.radii,
                st.directory, st.offsets, st.records, st.overflow, st.bases,
                st.overflow_bases, st.positions,
                snap.delta_words, snap.delta_ids,
            )  # fmt: skip

        m = int(queries.shape[0])
        workers = min(threads or _threads(), max(1, m // _MIN_ROWS_PER_THREAD))
        if workers <= 1:
            parts = [run(queries)]
        else:
            # Interleaved slices share out queries that land in a crowded neighbourhood.
            slices = [np.ascontiguousarray(queries[w::workers]) for w in range(workers)]
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(run, slices))
        out: list[list[tuple[int, int]]] = [[] for _ in range(m)]
        for w, (bounds, found, dist) in enumerate(parts):
            b = bounds.tolist()
            pairs = list(zip(found.tolist(), dist.tolist(), strict=True))
            for j in range(len(b) - 1):
                out[w + j * len(parts)] = pairs[b[j] : b[j + 1]]
        return out

    # -- writer side (called with the lock held) -------------------------------------------

    def _layout(self, n: int) -> _Layout | None:
        if self._chunks is not None:
            return _Layout.even(self._chunks, n)
        return _choose_layout(n)

    def _publish(
        self,
        static: _Static,
        dead: npt.NDArray[np.uint8],
        n_dead: int,
        delta_words: npt.NDArray[np.uint64],
        delta_ids: _IdArray,
    ) -> None:
        """Install the next state, rebuilding the static part when the delta or the
        removed rows have grown past their bounds."""
        d = int(delta_ids.shape[0])
        delta_limit = min(_DELTA_CAP, max(_DELTA_MIN, static.n // _DELTA_FRACTION))
        if d > delta_limit or n_dead * _DEAD_FRACTION > max(static.n, _DELTA_MIN):
            alive = np.unpackbits(dead, bitorder="little", count=static.n) == 0
            ids = np.concatenate((static.ids[alive].astype(np.int64), delta_ids))
            words = np.concatenate((static.words[alive], delta_words))
            del alive
            self._snap = _snapshot(_build_static(ids, words, self._layout(ids.shape[0])))
            return
        self._snap = _Snapshot(
            static=static,
            dead=dead,
            n_dead=n_dead,
            delta_words=np.ascontiguousarray(delta_words),
            delta_ids=np.ascontiguousarray(delta_ids),
        )


def _mark_dead(snap: _Snapshot, ids: _IdArray) -> tuple[npt.NDArray[np.uint8], int]:
    """A copy of the removal bitset with the static rows holding ``ids`` marked, and the new
    count of removed rows. The snapshot's own bitset is never written: searches read it."""
    if snap.static.n == 0:
        return snap.dead, snap.n_dead
    rows = _kernels().rows_of_ids(snap.static.ids, np.sort(ids))
    if rows.shape[0] == 0:
        return snap.dead, snap.n_dead
    byte = rows >> 3
    bit = np.left_shift(np.uint8(1), (rows & 7).astype(np.uint8))
    newly = int(np.count_nonzero((snap.dead[byte] & bit) == 0))
    dead = snap.dead.copy()
    np.bitwise_or.at(dead, byte, bit)
    return dead, snap.n_dead + newly


def _check_same_length(ids: _IdArray, words: npt.NDArray[np.uint64]) -> None:
    if ids.shape[0] != words.shape[0]:
        raise IndexInputError(
            f"got {ids.shape[0]} ids for {words.shape[0]} codes",
            hint="pass exactly one id per code row",
        )


def codes_from_hex(hashes: Sequence[str]) -> _CodeArray:
    """PDQ hex strings (64 digits each) as ``uint8[n, 32]`` codes.

    Byte order is ``bytes.fromhex``'s: the first two hex digits are the first byte, so the
    first digit holds the code's first four bits. Raises :class:`HashFormatError` naming
    the first malformed hash.
    """
    out = np.empty((len(hashes), CODE_BYTES), dtype=np.uint8)
    for i, h in enumerate(hashes):
        raw = b""
        if isinstance(h, str):
            with contextlib.suppress(ValueError):
                raw = bytes.fromhex(h)
        if len(raw) != CODE_BYTES:
            shown = repr(h) if not isinstance(h, str) or len(h) <= 80 else repr(h[:77] + "...")
            raise HashFormatError(
                f"hash #{i} {shown} is not a PDQ hash",
                hint="a PDQ hash is 64 hexadecimal digits",
            )
        out[i] = np.frombuffer(raw, dtype=np.uint8)
    return out


def hex_from_codes(codes: object) -> list[str]:
    """``uint8[n, 32]`` codes as lowercase 64-digit hex strings (inverse of codes_from_hex)."""
    words = _check_codes(codes)
    return [row.tobytes().hex() for row in words.view(np.uint8)]
