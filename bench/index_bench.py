"""Benchmark Rempart's PDQ index against the FAISS indexes HMA uses.

    python bench/index_bench.py [--sizes 1000000,10000000] [--queries 1000] [--quick]

For each size and dataset (``uniform`` random codes; ``families`` of near-duplicates: n/20
random centres with 20 members each at 0-24 flipped bits, which looks more like real banks),
it builds, one at a time and freeing the previous one:

* ``rempart``: :class:`rempart.index.PDQIndex` (exact);
* ``faiss_flat``: FAISS ``IndexBinaryFlat`` with ``range_search`` (exact, brute force);
* ``faiss_hma``: FAISS ``IndexBinaryMultiHash(256, 16, 16)`` behind ``IndexBinaryIDMap2``,
  searched with ``nflip = 31 // 16 = 1`` -- what python-threatexchange's PDQIndex, and so
  HMA, does by default. (With 16 sub-hashes and ``nflip = threshold // 16`` it is exact by
  the pigeonhole principle -- 16 sub-hashes each 2+ bits away is 32+ bits -- so its recall
  should read 1.0; the comparison is speed and memory.)

and reports build time, memory (RSS increase), queries/s one query at a time (as a service
answers them) and in one batch, and recall against a brute-force ground truth. Queries are
stored codes with 0..31 random bits flipped, plus 10% random codes. The slow FAISS loops are
time-limited and their rate extrapolated from the queries that ran (the count is recorded).

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from rempart.index import PDQIndex

Codes = npt.NDArray[np.uint8]
Pairs = set[tuple[int, int]]  # (query number, stored id)


def log(msg: str) -> None:
    """Progress to stderr, so stdout stays one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def trim() -> None:
    """Collect garbage and return free heap pages to the OS (glibc ``malloc_trim``).

    FAISS's hash maps live in small heap blocks that stay mapped after the index is freed;
    without a trim the next index reuses them and its RSS increase reads near zero.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_freed_memory_to_os() -> None:
    """Make glibc hand freed large blocks back to the OS, so RSS deltas measure an index.

    glibc raises its mmap threshold after large frees (up to 32 MiB), after which freed index
    arrays stay in the heap and the next index's RSS increase reads near zero. Pinning the
    threshold keeps every large array in its own mapping.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold = -3
        libc.mallopt(m_mmap_threshold, 128 * 1024)
    except (OSError, AttributeError):
        pass


def warm_up() -> None:
    """Load numba kernels and FAISS before any measurement (their code is not index memory)."""
    import faiss  # type: ignore[import-untyped]

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8)
    idx = PDQIndex.from_arrays(np.arange(40_000), codes)
    idx.search(codes[:4])
    idx.add(np.array([10**6]), codes[:1])
    idx.remove(np.array([10**6]))
    small = PDQIndex.from_arrays(np.arange(100), codes[:100])
    small.search(codes[:4])
    small.add(np.array([10**6]), codes[:1])
    small.remove(np.array([10**6]))
    flat = faiss.IndexBinaryFlat(256)
    flat.add(codes)
    flat.range_search(codes[:4], 32)
    mih = faiss.IndexBinaryMultiHash(256, 16, 16)
    mih.add(codes)
    mih.range_search(codes[:4], 32)
    gc.collect()


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (psutil is not a dependency)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def flip_bits(
    codes: Codes,
    rows: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> None:
    """Flip ``counts[i]`` distinct random bits of ``codes[rows[i]]``, in place."""
    for r, k in zip(rows.tolist(), counts.tolist(), strict=True):
        if k:
            bits = rng.choice(256, size=k, replace=False)
            np.bitwise_xor.at(codes[r], bits >> 3, (1 << (bits & 7)).astype(np.uint8))


def make_dataset(kind: str, n: int, rng: np.random.Generator) -> Codes:
    """``n`` codes: uniform random, or families of near-duplicates around random centres."""
    if kind == "uniform":
        return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    family = 20
    centres = rng.integers(0, 256, size=((n + family - 1) // family, 32), dtype=np.uint8)
    codes = np.repeat(centres, family, axis=0)[:n]
    del centres
    # Up to 24 flips per member, drawn as bit positions with replacement (a repeat flips a
    # bit back, so a few members end up slightly closer to their centre). In blocks, so the
    # temporaries stay small at 10M codes.
    flat = codes.reshape(-1)
    block = 1 << 20
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        flips = rng.integers(0, 25, size=hi - lo)
        rows = np.repeat(np.arange(lo, hi, dtype=np.int64), flips)
        pos = rng.integers(0, 256, size=rows.shape[0])
        np.bitwise_xor.at(flat, rows * 32 + (pos >> 3), (1 << (pos & 7)).astype(np.uint8))
    return codes


def make_queries(codes: Codes, nq: int, threshold: int, rng: np.random.Generator) -> Codes:
    """Stored codes with 0..threshold bits flipped (90%) and random codes (10%)."""
    n_member = nq - nq // 10
    src = rng.integers(0, codes.shape[0], size=n_member)
    members = codes[src].copy()
    flip_bits(
        members,
        np.arange(n_member, dtype=np.int64),
        rng.integers(0, threshold + 1, size=n_member),
        rng,
    )
    others = rng.integers(0, 256, size=(nq - n_member, 32), dtype=np.uint8)
    q = np.concatenate((members, others))
    return q[rng.permutation(nq)]


def brute_force(codes: Codes, queries: Codes, threshold: int) -> Pairs:
    """Exact matches by numpy popcount over every code (slow; used on a sample)."""
    words = codes.view(np.uint64)
    out: Pairs = set()
    for qi, q in enumerate(queries.view(np.uint64)):
        dist = np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int64)
        for i in np.flatnonzero(dist <= threshold).tolist():
            out.add((qi, i))
    return out


def exact_matches(codes: Codes, queries: Codes, threshold: int) -> Pairs:
    """Exact matches of every query by FAISS's brute-force flat index."""
    import faiss  # type: ignore[import-untyped]

    index = faiss.IndexBinaryFlat(256)
    index.add(codes)
    lims, _, labels = index.range_search(queries, threshold + 1)
    out = faiss_pairs(lims, labels)
    del index
    trim()
    return out


def timed_single(
    search: Callable[[Codes], Pairs], queries: Codes, limit_s: float
) -> tuple[float, int, Pairs]:
    """Queries one at a time until done or ``limit_s``; (queries/s, queries run, pairs).

    The first 100 queries run untimed first, for every index alike: right after a build the
    first queries pay for cold caches and page-table setup, not for the index's design.
    """
    warm_until = time.perf_counter() + limit_s / 10
    for i in range(min(100, queries.shape[0])):
        search(queries[i : i + 1])
        if time.perf_counter() > warm_until:
            break
    pairs: Pairs = set()
    t0 = time.perf_counter()
    done = 0
    for i in range(queries.shape[0]):
        for _, j in search(queries[i : i + 1]):
            pairs.add((i, j))
        done += 1
        if time.perf_counter() - t0 > limit_s:
            break
    return done / (time.perf_counter() - t0), done, pairs


def recall(found: Pairs, truth: Pairs, queries_run: int | None = None) -> float:
    """Fraction of true (query, id) pairs found, over the queries that ran."""
    if queries_run is not None:
        truth = {p for p in truth if p[0] < queries_run}
    return 1.0 if not truth else len(found & truth) / len(truth)


def faiss_pairs(lims: Any, labels: Any, offset: int = 0) -> Pairs:
    """(query, id) pairs from a FAISS range_search answer."""
    out: Pairs = set()
    for qi in range(len(lims) - 1):
        for j in labels[lims[qi] : lims[qi + 1]].tolist():
            out.add((qi + offset, int(j)))
    return out


def bench_rempart(codes: Codes, queries: Codes, threshold: int, limit_s: float) -> dict[str, Any]:
    """Build and query Rempart's PDQIndex; also time single adds and removals."""
    ids = np.arange(codes.shape[0], dtype=np.int64)
    trim()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    idx = PDQIndex.from_arrays(ids, codes)
    build_s = time.perf_counter() - t0
    trim()
    mem = rss_bytes() - rss0

    def one(q: Codes) -> Pairs:
        return {(0, i) for i, _ in idx.search(q, threshold)[0]}

    t0 = time.perf_counter()
    one(queries[:1])  # the first call loads (or compiles) the numba kernels
    first_s = time.perf_counter() - t0
    qps_single, ran, found = timed_single(lambda q: one(q), queries, limit_s)
    t0 = time.perf_counter()
    batch = idx.search(queries, threshold)
    qps_batch = queries.shape[0] / (time.perf_counter() - t0)
    batch_pairs = {(qi, i) for qi, hits in enumerate(batch) for i, _ in hits}

    # Writes: 100 single adds (new ids) then 100 single removals, each visible at once.
    rng = np.random.default_rng(7)
    new = rng.integers(0, 256, size=(100, 32), dtype=np.uint8)
    t0 = time.perf_counter()
    for k in range(100):
        idx.add(np.array([codes.shape[0] + k]), new[k : k + 1])
    add_ms = (time.perf_counter() - t0) * 10
    t0 = time.perf_counter()
    for k in range(100):
        idx.remove(np.array([k]))
    remove_ms = (time.perf_counter() - t0) * 10
    return {
        "build_s": round(build_s, 3),
        "rss_increase_bytes": mem,
        "nbytes": idx.nbytes,
        "first_query_s": round(first_s, 3),
        "qps_single": round(qps_single, 1),
        "single_queries_run": ran,
        "qps_batch": round(qps_batch, 1),
        "found_single": found,
        "found_batch": batch_pairs,
        "add_one_ms": round(add_ms, 3),
        "remove_one_ms": round(remove_ms, 3),
    }


def bench_faiss(
    kind: str, codes: Codes, queries: Codes, threshold: int, limit_s: float
) -> dict[str, Any]:
    """Build and query a FAISS binary index (``flat`` or HMA's ``multihash``)."""
    import faiss  # type: ignore[import-untyped]

    trim()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexBinaryFlat(256)
        index.add(codes)
        mih = None
    else:
        mih = faiss.IndexBinaryMultiHash(256, 16, 16)
        index = faiss.IndexBinaryIDMap2(mih)
        index.add_with_ids(codes, np.arange(codes.shape[0], dtype=np.int64))
        # python-threatexchange: nflip = threshold // nhash
        mih.nflip = threshold // 16
    build_s = time.perf_counter() - t0
    trim()
    mem = rss_bytes() - rss0

    def one(q: Codes) -> Pairs:
        # FAISS's range is strict (distance < radius), hence + 1, as threatexchange does.
        lims, _, labels = index.range_search(q, threshold + 1)
        return faiss_pairs(lims, labels)

    # One OpenMP thread for single queries, as Rempart uses one thread per query: a lone
    # query gains little from a team, and on a machine shared with other work a spinning
    # OpenMP team slows FAISS down by up to 10x (seen here), which would flatter Rempart.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        qps_single, ran, found = timed_single(one, queries, limit_s)
    finally:
        faiss.omp_set_num_threads(threads)
    # Batch: also time-limited, in slices, so 10M multihash cannot run for minutes.
    batch_pairs: Pairs = set()
    t0 = time.perf_counter()
    done = 0
    step = 100
    while done < queries.shape[0] and time.perf_counter() - t0 <= limit_s:
        lims, _, labels = index.range_search(queries[done : done + step], threshold + 1)
        batch_pairs |= faiss_pairs(lims, labels, done)
        done = min(done + step, queries.shape[0])
    qps_batch = done / (time.perf_counter() - t0)
    out = {
        "build_s": round(build_s, 3),
        "rss_increase_bytes": mem,
        "qps_single": round(qps_single, 1),
        "single_queries_run": ran,
        "qps_batch": round(qps_batch, 1),
        "batch_queries_run": done,
        "found_single": found,
        "found_batch": batch_pairs,
    }
    return out


def run_case(
    kind: str, n: int, nq: int, threshold: int, limit_s: float, check: int, seed: int
) -> dict[str, Any]:
    """One size x dataset: every index, recall against the exact answer."""
    rng = np.random.default_rng(seed)
    log(f"{kind} n={n:,}: generating")
    codes = make_dataset(kind, n, rng)
    queries = make_queries(codes, nq, threshold, rng)
    raw = codes.nbytes

    log(f"{kind} n={n:,}: rempart")
    rem = bench_rempart(codes, queries, threshold, limit_s)
    trim()
    log(f"{kind} n={n:,}: faiss flat")
    flat = bench_faiss("flat", codes, queries, threshold, limit_s)
    log(f"{kind} n={n:,}: faiss multihash (HMA default)")
    hma = bench_faiss("multihash", codes, queries, threshold, limit_s)

    # Ground truth: FAISS's flat index is exact (an independent implementation), run on
    # every query without a time limit; checked on a sample against plain numpy.
    log(f"{kind} n={n:,}: ground truth")
    truth = exact_matches(codes, queries, threshold)
    log(f"{kind} n={n:,}: checking the ground truth on {check} queries with numpy")
    sample = brute_force(codes, queries[:check], threshold)
    truth_ok = {p for p in truth if p[0] < check} == sample
    if not truth_ok:
        log("ground truth disagrees with numpy brute force; using brute force everywhere")
        truth = brute_force(codes, queries, threshold)

    def summary(r: dict[str, Any], exact_batch: bool) -> dict[str, Any]:
        s = {k: v for k, v in r.items() if not k.startswith("found_")}
        s["recall_single"] = round(recall(r["found_single"], truth, r["single_queries_run"]), 6)
        s["recall_batch"] = round(recall(r["found_batch"], truth, r.get("batch_queries_run")), 6)
        s["memory_ratio_vs_raw"] = round(r["rss_increase_bytes"] / raw, 3)
        if exact_batch:
            s["false_positives"] = len(r["found_batch"] - truth)
        return s

    out: dict[str, Any] = {
        "dataset": kind,
        "n": n,
        "queries": nq,
        "threshold": threshold,
        "raw_bytes": raw,
        "true_matches": len(truth),
        "ground_truth_checked_on": check,
        "ground_truth_agrees": truth_ok,
        "rempart": summary(rem, True),
        "faiss_flat": summary(flat, True),
        "faiss_hma": summary(hma, True),
    }
    r, f, h = out["rempart"], out["faiss_flat"], out["faiss_hma"]
    out["ratio_qps_vs_hma"] = round(r["qps_single"] / h["qps_single"], 1)
    out["ratio_qps_vs_flat"] = round(r["qps_single"] / f["qps_single"], 1)
    out["ratio_qps_batch_vs_hma"] = round(r["qps_batch"] / h["qps_batch"], 1)
    out["ratio_qps_batch_vs_flat"] = round(r["qps_batch"] / f["qps_batch"], 1)
    out["memory_ratio_vs_raw"] = r["memory_ratio_vs_raw"]
    out["nbytes_ratio_vs_raw"] = round(r["nbytes"] / raw, 3)
    log(
        f"{kind} n={n:,}: rempart {r['qps_single']:.0f} q/s single, {r['qps_batch']:.0f} batch, "
        f"recall {r['recall_batch']}; hma {h['qps_single']:.0f} q/s recall "
        f"{h['recall_single']}; flat {f['qps_single']:.0f} q/s"
    )
    del codes, queries
    trim()
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every case, print the JSON report."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="1000000", help="comma-separated index sizes")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threshold", type=int, default=31)
    p.add_argument("--datasets", default="uniform,families")
    p.add_argument(
        "--time-limit",
        type=float,
        default=30.0,
        help="seconds allowed per single-query loop and per FAISS batch",
    )
    p.add_argument(
        "--check", type=int, default=50, help="queries whose ground truth is re-checked with numpy"
    )
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--quick", action="store_true", help="100k codes, 200 queries, 5 s limits")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes, a.queries, a.time_limit, a.check = "100000", 200, 5.0, 20
    sizes = [int(s) for s in a.sizes.split(",") if s]
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    release_freed_memory_to_os()
    t0 = time.perf_counter()
    warm_up()
    warm_s = time.perf_counter() - t0
    cases = []
    for n in sizes:
        for kind in a.datasets.split(","):
            cases.append(run_case(kind, n, a.queries, a.threshold, a.time_limit, a.check, a.seed))
    import faiss  # type: ignore[import-untyped]
    import numba

    largest = [c for c in cases if c["n"] == max(sizes)]
    summary = {
        "n": max(sizes),
        "ratio_qps_vs_hma": min(c["ratio_qps_vs_hma"] for c in largest),
        "ratio_qps_vs_flat": min(c["ratio_qps_vs_flat"] for c in largest),
        "ratio_qps_batch_vs_hma": min(c["ratio_qps_batch_vs_hma"] for c in largest),
        "memory_ratio_vs_raw": max(c["memory_ratio_vs_raw"] for c in largest),
        "rempart_recall": min(c["rempart"]["recall_batch"] for c in largest),
        "rempart_build_s": max(c["rempart"]["build_s"] for c in largest),
    }
    report = {
        "benchmark": "rempart.index.PDQIndex vs FAISS (HMA default multihash, flat)",
        "summary": summary,
        "machine": {
            # Other work on the machine skews qps; the load average says how busy it was.
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "faiss": faiss.__version__,
        },
        "warm_up_s": round(warm_s, 3),
        "cases": cases,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
