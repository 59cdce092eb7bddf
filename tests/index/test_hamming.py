"""PDQIndex against a brute-force numpy reference.

Every search result is compared, pair for pair and in order, with what a plain popcount over
all live codes says. The multi-index path is exercised on small data by forcing tables
(``chunks=`` and ``strategy="tables"``), and the rebuild path by shrinking the delta bounds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rempart.errors import HashFormatError, RempartError
from rempart.index import IndexInputError, PDQIndex, codes_from_hex, hamming, hex_from_codes
from rempart.signals import PDQ

Codes = npt.NDArray[np.uint8]
Result = list[list[tuple[int, int]]]

# ---------------------------------------------------------------------------------------------
# Reference and data


def brute_force(model: dict[int, Codes], queries: Codes, threshold: int) -> Result:
    """Every (id, distance) within threshold, sorted by distance then id, by plain numpy."""
    return brute_force_many(model, queries, [threshold])[threshold]


def brute_force_many(
    model: dict[int, Codes], queries: Codes, thresholds: list[int]
) -> dict[int, Result]:
    """:func:`brute_force` for several thresholds, computing each distance once."""
    m = queries.shape[0]
    thresholds = sorted(set(thresholds))
    if not model:
        return {t: [[] for _ in range(m)] for t in thresholds}
    ids = np.array(list(model.keys()), dtype=np.int64)
    words = np.stack(list(model.values())).view(np.uint64)
    top = max(thresholds)
    out: dict[int, Result] = {t: [] for t in thresholds}
    q_words = queries.view(np.uint64)
    step = max(1, 4_000_000 // words.shape[0])  # bounds the (step, n, 4) temporary
    for lo in range(0, m, step):
        dist = np.bitwise_count(q_words[lo : lo + step, None, :] ^ words[None, :, :]).sum(
            axis=2, dtype=np.int64
        )
        for row in dist:
            near = np.flatnonzero(row <= top)
            pairs = sorted(
                zip(ids[near].tolist(), row[near].tolist(), strict=True),
                key=lambda p: (p[1], p[0]),
            )
            for t in thresholds:
                out[t].append([p for p in pairs if p[1] <= t])
    return out


def flip(code: Codes, nbits: int, rng: np.random.Generator) -> Codes:
    """A copy of ``code`` with ``nbits`` distinct random bits flipped."""
    out = code.copy()
    for b in rng.choice(256, size=nbits, replace=False):
        out[b >> 3] ^= np.uint8(1 << (b & 7))
    return out


def families(n: int, rng: np.random.Generator, spread: int = 24, size: int = 20) -> Codes:
    """Near-duplicate families: random centres, members 0..spread bits away."""
    centres = rng.integers(0, 256, size=((n + size - 1) // size, 32), dtype=np.uint8)
    codes = np.repeat(centres, size, axis=0)[:n].copy()
    for i in range(n):
        codes[i] = flip(codes[i], int(rng.integers(0, spread + 1)), rng)
    return codes


def queries_near(codes: Codes, k: int, rng: np.random.Generator, max_flips: int = 40) -> Codes:
    """Stored codes with 0..max_flips bits flipped, plus exact copies and random codes."""
    if codes.shape[0] == 0:
        return rng.integers(0, 256, size=(k, 32), dtype=np.uint8)
    rows = rng.integers(0, codes.shape[0], size=k)
    out = np.stack([flip(codes[r], int(rng.integers(0, max_flips + 1)), rng) for r in rows])
    out[: k // 4] = codes[rows[: k // 4]]  # identical to a stored code
    n_random = k // 8
    if n_random:
        out[-n_random:] = rng.integers(0, 256, size=(n_random, 32), dtype=np.uint8)
    return out


def build(model: dict[int, Codes], chunks: int | None = None) -> PDQIndex:
    ids = np.array(list(model.keys()), dtype=np.int64)
    codes = np.stack(list(model.values())) if model else np.zeros((0, 32), np.uint8)
    return PDQIndex.from_arrays(ids, codes, chunks=chunks)


@contextmanager
def tiny_bounds() -> Iterator[None]:
    """Tiny delta and table bounds, so a few operations cross every rebuild path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hamming, "_DELTA_MIN", 8)
        mp.setattr(hamming, "_DELTA_CAP", 16)
        mp.setattr(hamming, "_MIN_TABLE_ROWS", 24)
        yield


@contextmanager
def bounds_format(fmt: str) -> Iterator[None]:
    """Force where bucket bounds go: ``directory``, plain ``csr`` offsets, or ``auto``.

    Left to itself the index uses directories only for big, sparse tables, which small
    test data never are.
    """
    load = {"directory": float("inf"), "csr": -1.0, "auto": hamming._DIRECTORY_MAX_LOAD}[fmt]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hamming, "_DIRECTORY_MAX_LOAD", load)
        yield


FORMATS = ("auto", "directory", "csr")


@pytest.fixture
def small_bounds() -> Iterator[None]:
    """:func:`tiny_bounds` for one test."""
    with tiny_bounds():
        yield


STRATEGIES = ("auto", "tables", "scan")
# Cheap layouts for tiny data: 4- to 16-bit chunks keep offsets tables small.
CHUNKS = (None, 16, 20, 32, 64)

# ---------------------------------------------------------------------------------------------
# Property tests


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    chunks=st.sampled_from(CHUNKS),
    threshold=st.one_of(st.integers(0, 64), st.integers(65, 256)),
    clustered=st.booleans(),
    fmt=st.sampled_from(FORMATS),
)
def test_matches_brute_force(
    seed: int, n: int, chunks: int | None, threshold: int, clustered: bool, fmt: str
) -> None:
    rng = np.random.default_rng(seed)
    codes = families(n, rng) if clustered else rng.integers(0, 256, (n, 32), dtype=np.uint8)
    ids = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    model = dict(zip(ids.tolist(), codes, strict=True))
    with bounds_format(fmt):
        idx = build(model, chunks)
    queries = queries_near(codes, 24, rng)
    expected = brute_force(model, queries, threshold)
    for strategy in STRATEGIES:
        assert idx.search(queries, threshold, strategy=strategy) == expected, strategy
    assert len(idx) == n


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "remove", "upsert", "search"]), st.integers(1, 12)),
        min_size=1,
        max_size=30,
    ),
    start=st.integers(0, 80),
    chunks=st.sampled_from((None, 20, 32)),
    fmt=st.sampled_from(FORMATS),
)
def test_interleaved_changes_match_brute_force(
    seed: int, ops: list[tuple[str, int]], start: int, chunks: int | None, fmt: str
) -> None:
    rng = np.random.default_rng(seed)
    # Hypothesis runs many examples per test call, so no function-scoped fixture here.
    with tiny_bounds(), bounds_format(fmt):
        codes = families(start, rng, spread=12, size=5)
        model = {i: codes[i] for i in range(start)}
        idx = build(model, chunks)
        next_id = start
        for op, k in ops:
            if op == "add":
                new = families(k, rng, spread=12, size=5)
                ids = np.arange(next_id, next_id + k)
                next_id += k
                idx.add(ids, new)
                model.update(zip(ids.tolist(), new, strict=True))
            elif op == "upsert" and model:
                ids = rng.choice(list(model), size=min(k, len(model)), replace=False)
                new = np.stack([flip(model[int(i)], int(rng.integers(0, 40)), rng) for i in ids])
                idx.add(ids, new)
                model.update(zip(ids.tolist(), new, strict=True))
            elif op == "remove":
                pool = [*model, *range(next_id, next_id + 5)]  # some unknown ids too
                ids = rng.choice(pool, size=min(k, len(pool)), replace=False)
                expected_removed = sum(1 for i in set(ids.tolist()) if i in model)
                assert idx.remove(ids) == expected_removed
                for i in ids.tolist():
                    model.pop(i, None)
            stored = np.stack(list(model.values())) if model else np.zeros((0, 32), np.uint8)
            queries = queries_near(stored, 8, rng)
            thresholds = [0, 31, int(rng.integers(0, 90))]
            reference = brute_force_many(model, queries, thresholds)
            for threshold in thresholds:
                expected = reference[threshold]
                assert idx.search(queries, threshold) == expected
                assert idx.search(queries, threshold, strategy="tables") == expected
            assert len(idx) == len(model)


# Plain offsets for 11 or 12 chunks would allocate 128-470 MB per case; directories are small.
LAYOUTS = [
    (11, "directory"),
    (12, "directory"),
    (14, "csr"),
    (14, "directory"),
    (16, "csr"),
    (20, "csr"),
    (32, "csr"),
    (32, "directory"),
]


@pytest.mark.parametrize(("chunks", "fmt"), LAYOUTS)
@pytest.mark.parametrize("threshold", [0, 1, 15, 31, 32, 47, 48, 63])
def test_spread_differences_at_the_pigeonhole_bound(chunks: int, threshold: int, fmt: str) -> None:
    """Codes whose differing bits are spread evenly over the chunks, the layout where a
    multi-index search with too small a radius would miss them."""
    rng = np.random.default_rng(threshold * 100 + chunks)
    base = rng.integers(0, 256, size=32, dtype=np.uint8)
    layout = hamming._Layout.even(chunks, 503)
    variants = []
    for d in (threshold, threshold + 1):
        # Bit positions in the index's chunk order: round-robin over chunks. The index
        # reads codes as little-endian uint64 words, so bit i of word w is byte 8w + i//8.
        per = [
            list(range(int(s), int(s + b))) for s, b in zip(layout.starts, layout.bits, strict=True)
        ]
        chosen = [per[i % chunks][i // chunks] for i in range(min(d, 256))]
        code = base.copy().view(np.uint64)
        for bit in chosen:
            code[bit >> 6] ^= np.uint64(1) << np.uint64(bit & 63)
        variants.append(code.view(np.uint8))
    stored = np.stack([base, *variants])
    # pad with random codes so the tables are not trivially tiny
    stored = np.concatenate([stored, rng.integers(0, 256, (500, 32), dtype=np.uint8)])
    model = dict(enumerate(stored))
    with bounds_format(fmt):
        idx = build(model, chunks)
    assert idx._snap.static.directory == (fmt == "directory")
    q = base[None, :]
    got = idx.search(q, threshold, strategy="tables")
    assert got == brute_force(model, q, threshold)
    assert (1, threshold) in got[0]  # exactly at the threshold: included
    assert all(i != 2 for i, _ in got[0])  # one bit beyond: excluded


def test_moderate_size_is_exact() -> None:
    """200k clustered codes with the layout the index picks itself (bucket tables)."""
    rng = np.random.default_rng(11)
    n = 200_000
    centres = rng.integers(0, 256, size=(n // 20, 32), dtype=np.uint8)
    codes = np.repeat(centres, 20, axis=0)
    bits = np.unpackbits(codes, axis=1)
    mask = rng.random(bits.shape) < 0.04  # ~10 bits flipped per member
    codes = np.packbits(bits ^ mask, axis=1)
    ids = rng.permutation(n).astype(np.int64) * 3 + 5
    model = dict(zip(ids.tolist(), codes, strict=True))
    idx = PDQIndex.from_arrays(ids, codes)
    assert idx._snap.static.bits.shape[0] > 0  # it did build tables
    queries = queries_near(codes, 200, rng, max_flips=31)
    thresholds = [0, 10, 31, 48, 80]
    reference = brute_force_many(model, queries, thresholds)
    for threshold in thresholds:
        expected = reference[threshold]
        assert idx.search(queries, threshold) == expected
        if threshold <= 31:
            assert idx._snap.static.plan(threshold).use_tables
            assert idx.search(queries[:20], threshold, strategy="scan") == expected[:20]
    # changes on a tabled index: removal, upsert, add, all visible at once
    gone = ids[:100]
    assert idx.remove(gone) == 100
    moved = ids[100:150]
    new_codes = queries[:50]
    idx.add(moved, new_codes)
    for i in gone.tolist():
        del model[i]
    model.update(zip(moved.tolist(), new_codes, strict=True))
    expected = brute_force(model, queries, 31)
    assert idx.search(queries, 31) == expected
    assert idx.search(queries, 31, threads=1) == expected
    assert len(idx) == n - 100


@pytest.mark.parametrize(
    ("chunks", "crowd", "others"),
    # 4-bit chunks put every row in one directory group: 256 and 280 rows are just past
    # what a group's byte counts can hold.
    [(64, 200, 56), (64, 200, 80), (16, 700, 2000), (11, 700, 2000)],
)
def test_crowded_buckets_overflow_the_directory(chunks: int, crowd: int, others: int) -> None:
    """Hundreds of near-identical codes share buckets: a directory group then holds more than
    255 rows and its offsets move to the overflow array."""
    rng = np.random.default_rng(chunks + crowd + others)
    base = rng.integers(0, 256, size=32, dtype=np.uint8)
    near = np.stack([flip(base, int(rng.integers(0, 4)), rng) for _ in range(crowd)])
    far = rng.integers(0, 256, size=(others, 32), dtype=np.uint8)
    codes = np.concatenate([near, far])
    model = dict(enumerate(codes))
    with bounds_format("directory"):
        idx = build(model, chunks)
    assert idx._snap.static.overflow.shape[0] > 0
    queries = np.concatenate([queries_near(near, 10, rng, 40), queries_near(far, 10, rng)])
    reference = brute_force_many(model, queries, [0, 5, 31, 70])
    for t, expected in reference.items():
        assert idx.search(queries, t, strategy="tables") == expected


def test_planner_scans_for_huge_thresholds() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(50_000, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.arange(50_000), codes)
    static = idx._snap.static
    assert static.plan(31).use_tables
    assert not static.plan(200).use_tables
    got = idx.search(codes[:2], 256)
    assert [len(r) for r in got] == [50_000, 50_000]
    assert got[0][0] == (0, 0)


# ---------------------------------------------------------------------------------------------
# Semantics


def test_empty_index() -> None:
    idx = PDQIndex()
    q = np.zeros((3, 32), dtype=np.uint8)
    assert len(idx) == 0
    assert idx.search(q, 256) == [[], [], []]
    assert idx.search(np.zeros((0, 32), np.uint8)) == []
    assert idx.remove([1, 2]) == 0
    assert PDQIndex.from_arrays(np.zeros(0, np.int64), np.zeros((0, 32), np.uint8)).search(q) == [
        [],
        [],
        [],
    ]


def test_duplicate_ids_last_code_wins() -> None:
    a = np.zeros(32, np.uint8)
    b = np.full(32, 255, np.uint8)
    idx = PDQIndex.from_arrays(np.array([7, 7]), np.stack([a, b]))
    assert len(idx) == 1
    assert idx.search(b[None], 0) == [[(7, 0)]]
    assert idx.search(a[None], 0) == [[]]
    idx.add(np.array([9, 9, 7]), np.stack([a, b, a]))
    assert len(idx) == 2
    assert idx.search(a[None], 0) == [[(7, 0)]]
    assert idx.search(b[None], 0) == [[(9, 0)]]


def test_upsert_replaces_the_code(small_bounds: None) -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, size=(100, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.arange(100), codes, chunks=16)
    new = flip(codes[3], 100, rng)
    idx.add(np.array([3]), new[None])
    assert idx.search(codes[3:4], 0) == [[]]
    assert idx.search(new[None], 0) == [[(3, 0)]]
    assert len(idx) == 100


def test_removed_then_added_again(small_bounds: None) -> None:
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 256, size=(64, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.arange(64), codes)
    assert idx.remove(np.array([5, 5, 1000])) == 1
    assert idx.remove(np.array([5])) == 0
    assert idx.search(codes[5:6], 0) == [[]]
    idx.add(np.array([5]), codes[5:6])
    assert idx.search(codes[5:6], 0) == [[(5, 0)]]
    assert idx.remove(np.array([5])) == 1
    assert len(idx) == 63


def test_results_sorted_by_distance_then_id() -> None:
    base = np.zeros(32, np.uint8)
    one = base.copy()
    one[0] = 1
    codes = np.stack([one, base, one, base])
    idx = PDQIndex.from_arrays(np.array([40, 30, 20, 10]), codes)
    assert idx.search(base[None], 1) == [[(10, 0), (30, 0), (20, 1), (40, 1)]]


def test_ids_beyond_uint32_and_negative() -> None:
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8)
    ids = np.arange(40_000, dtype=np.int64) * (2**40) - 2**50
    idx = PDQIndex.from_arrays(ids, codes)
    assert idx._snap.static.ids.dtype == np.int64
    assert idx.search(codes[7:8], 0) == [[(int(ids[7]), 0)]]
    assert idx.remove(ids[7:8]) == 1
    assert idx.search(codes[7:8], 0) == [[]]


@pytest.mark.parametrize("count", [5, 33, 3000])
def test_many_hits_sorted_across_the_whole_id_range(count: int) -> None:
    """Many hits take the radix-sort path; ids at both ends of int64 must still order."""
    rng = np.random.default_rng(count)
    base = rng.integers(0, 256, size=32, dtype=np.uint8)
    codes = np.stack([flip(base, int(rng.integers(0, 6)), rng) for _ in range(count)])
    ids = rng.choice(2**62, size=count, replace=False).astype(np.int64) * 2 - 2**62
    ids[0], ids[-1] = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    model = dict(zip(ids.tolist(), codes, strict=True))
    idx = PDQIndex.from_arrays(ids, codes)
    half = count // 2
    idx.add(ids[:half], codes[:half])  # the same rows again, now in the delta
    q = base[None, :]
    assert idx.search(q, 8) == brute_force(model, q, 8)
    assert len(idx.search(q, 8)[0]) == count


def test_len_and_nbytes() -> None:
    rng = np.random.default_rng(9)
    n = 100_000
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.arange(n), codes)
    assert len(idx) == n
    raw = codes.nbytes
    # codes + uint32 ids + tables; small indexes pay a fixed table floor of ~16 MiB
    assert raw + 4 * n < idx.nbytes < raw + 4 * n + 60 * n + (17 << 20)
    before = idx.nbytes
    idx.add(np.array([n + 1]), codes[:1])
    assert idx.nbytes == before + 32 + 8
    assert idx.remove(np.arange(10)) == 10
    assert len(idx) == n + 1 - 10
    empty = PDQIndex()
    assert len(empty) == 0 and empty.nbytes < 64


def test_dead_rows_are_compacted(small_bounds: None) -> None:
    rng = np.random.default_rng(10)
    codes = rng.integers(0, 256, size=(200, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.arange(200), codes)
    idx.remove(np.arange(0, 120))
    assert idx._snap.static.n == 80  # rebuilt without the removed rows
    assert idx._snap.n_dead == 0
    model = {i: codes[i] for i in range(120, 200)}
    assert idx.search(codes, 20) == brute_force(model, codes, 20)


# ---------------------------------------------------------------------------------------------
# Hex helpers


def test_hex_round_trip_and_bit_order() -> None:
    h = "8" + "0" * 63
    codes = codes_from_hex([h, "f" * 64])
    assert codes[0, 0] == 0x80 and not codes[0, 1:].any()
    assert hex_from_codes(codes) == [h, "f" * 64]
    rng = np.random.default_rng(12)
    a, b = (bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(2))
    idx = PDQIndex.from_arrays(np.array([1]), codes_from_hex([a]))
    assert idx.search(codes_from_hex([b]), 256) == [[(1, PDQ.distance(a, b))]]


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "0" * 66, 12])
def test_codes_from_hex_rejects_malformed(bad: object) -> None:
    with pytest.raises(HashFormatError, match="#1"):
        codes_from_hex(["0" * 64, bad])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# Input validation


GOOD = np.zeros((2, 32), dtype=np.uint8)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.zeros((2, 32), dtype=np.int64), "uint8"),
        (np.zeros((2, 31), dtype=np.uint8), r"shape \(n, 32\)"),
        (np.zeros(32, dtype=np.uint8), "single code"),
        (np.zeros((2, 4, 8), dtype=np.uint8), r"shape \(n, 32\)"),
        ([[0] * 32], "uint8"),
    ],
)
def test_bad_codes(codes: object, message: str) -> None:
    idx = PDQIndex()
    for call in (
        lambda: idx.search(codes),
        lambda: idx.add([1] * len(np.atleast_2d(codes)), codes),
        lambda: PDQIndex.from_arrays([1], codes),
    ):
        with pytest.raises(IndexInputError, match=message) as err:
            call()
        assert err.value.code == "bad_index_input"
        assert isinstance(err.value, RempartError) and isinstance(err.value, ValueError)
        assert err.value.hint


@pytest.mark.parametrize("threshold", [-1, 257, 31.0, True, "31", None])
def test_bad_threshold(threshold: object) -> None:
    with pytest.raises(IndexInputError, match="threshold"):
        PDQIndex().search(GOOD, threshold)  # type: ignore[arg-type]


def test_threshold_bounds_accepted() -> None:
    idx = PDQIndex.from_arrays(np.array([1, 2]), np.stack([GOOD[0], ~GOOD[0]]))
    assert idx.search(GOOD[:1], 0) == [[(1, 0)]]
    assert idx.search(GOOD[:1], np.int64(256)) == [[(1, 0), (2, 256)]]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([1, 2, 3]), "3 ids for 2 codes"),
        (np.array([[1, 2]]), "1-D"),
        (np.array([1.0, 2.0]), "integers"),
        (np.array([2**64 - 1, 1], dtype=np.uint64), "64-bit"),
    ],
)
def test_bad_ids(ids: object, message: str) -> None:
    with pytest.raises(IndexInputError, match=message):
        PDQIndex.from_arrays(ids, GOOD)
    with pytest.raises(IndexInputError, match=message):
        PDQIndex().add(ids, GOOD)


def test_bad_options() -> None:
    with pytest.raises(IndexInputError, match="chunks"):
        PDQIndex.from_arrays([1, 2], GOOD, chunks=4)
    with pytest.raises(IndexInputError, match="strategy"):
        PDQIndex().search(GOOD, strategy="fast")  # type: ignore[arg-type]


def test_inputs_are_copied() -> None:
    codes = np.zeros((2, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.array([1, 2]), codes)
    idx.add(np.array([3]), codes[:1])
    codes[:] = 255
    assert idx.search(np.zeros((1, 32), np.uint8), 0) == [[(1, 0), (2, 0), (3, 0)]]


def test_non_contiguous_inputs() -> None:
    rng = np.random.default_rng(13)
    big = rng.integers(0, 256, size=(40, 64), dtype=np.uint8)
    codes = big[::2, 16:48]  # strided view
    idx = PDQIndex.from_arrays(np.arange(20)[::-1], codes)
    model = dict(zip(range(19, -1, -1), np.ascontiguousarray(codes), strict=True))
    assert idx.search(codes, 100) == brute_force(model, np.ascontiguousarray(codes), 100)


# ---------------------------------------------------------------------------------------------
# Concurrency


def test_search_while_another_thread_writes() -> None:
    """Readers always see the stable ids with exact distances, and flapping ids either
    absent or with their one code's exact distance; nothing raises."""
    rng = np.random.default_rng(14)
    n = 60_000
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    stable = np.arange(n // 2)
    flapping = np.arange(n // 2, n)
    idx = PDQIndex.from_arrays(stable, codes[: n // 2])
    queries = np.concatenate([codes[:20], codes[n // 2 : n // 2 + 20]])
    stable_model = {i: codes[i] for i in range(n // 2)}
    expected_stable = brute_force(stable_model, queries, 31)
    full_model = {i: codes[i] for i in range(n)}
    expected_full = brute_force(full_model, queries, 31)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            w = np.random.default_rng(15)
            while not stop.is_set():
                chosen = w.choice(flapping, size=int(w.integers(1, 3000)), replace=False)
                idx.add(chosen, codes[chosen])
                idx.remove(w.choice(flapping, size=int(w.integers(1, 3000)), replace=False))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(60):
                for strategy in ("auto", "scan"):
                    got = idx.search(queries, 31, strategy=strategy)
                    for g, es, ef in zip(got, expected_stable, expected_full, strict=True):
                        allowed = set(ef)
                        assert set(es) <= set(g) <= allowed
                        assert g == sorted(g, key=lambda p: (p[1], p[0]))
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=writer),
        *(threading.Thread(target=reader) for _ in range(2)),
    ]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert not errors, errors[0]


def test_unaligned_codes() -> None:
    rng = np.random.default_rng(16)
    codes = rng.integers(0, 256, size=(10, 32), dtype=np.uint8)
    raw = b"x" + codes.tobytes()
    unaligned = np.frombuffer(raw, dtype=np.uint8, offset=1).reshape(10, 32)
    idx = PDQIndex.from_arrays(np.arange(10), unaligned)
    assert idx.search(unaligned, 0) == [[(i, 0)] for i in range(10)]
