"""Numba kernels behind :mod:`rempart.index.hamming`.

Private: the arguments are raw arrays whose shapes the caller guarantees. Every kernel is
``cache=True`` (the machine code is written next to this file's ``__pycache__`` and reused by
later processes) and ``nogil=True`` (a web service searches from several threads at once and
a batch is split across threads by the caller), and none uses ``prange``: numba's default
"workqueue" threading layer aborts when two Python threads enter a parallel kernel at the
same time, which is exactly what a threaded service does.

Codes are handled as four native-endian ``uint64`` words (the ``uint8[32]`` code viewed as
``uint64[4]``); a chunk is a run of consecutive bits in that 256-bit word order. Which bits
form a chunk does not matter for exactness, only that queries and stored codes agree.
"""

# Numba types these functions from the arrays they receive when they are compiled; Python
# annotations would be ignored by numba and mypy cannot see through @njit or @intrinsic.
# The typed boundary is hamming.py, which validates every array before it gets here.
# mypy: ignore-errors

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Hit buffers start this large and double when a query matches more.
_INITIAL_HITS = 256
CODE_BITS = 256

# How far ahead the search prefetches: far enough to cover a DRAM miss (~100 ns) with the
# work of the rows in between, near enough that the lines are still cached when used.
# Measured on 1M and 10M codes: 64 rows ahead verifies a random row in ~5 ns instead of ~12.
_PREFETCH_ROWS = 64
_PREFETCH_BUCKETS = 16

# Bucket directory (see _bucket_ranges): buckets per 64-byte record, and the "no overflow"
# mark.
GROUP = 56
NO_OVERFLOW = np.uint32(0xFFFFFFFF)


@intrinsic
def _popcount(typingctx, x):
    """The CPU's population count (LLVM ``ctpop``) on a uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _prefetch(typingctx, arr, row):
    """Hint the CPU to fetch ``arr[row]`` (first element of that row) into cache."""
    sig = types.void(arr, types.int64)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(
            context,
            builder,
            aryty,
            ary,
            [args[1]] + [zero] * (aryty.ndim - 1),
            wraparound=False,
        )
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        builder.call(
            fn,
            [
                builder.bitcast(ptr, i8p),
                ir.Constant(i32, 0),
                ir.Constant(i32, 3),
                ir.Constant(i32, 1),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _distance(c0, c1, c2, c3, q0, q1, q2, q3):
    return np.int64(
        _popcount(c0 ^ q0) + _popcount(c1 ^ q1) + _popcount(c2 ^ q2) + _popcount(c3 ^ q3)
    )


@njit(cache=True, nogil=True)
def _chunk_of(w0, w1, w2, w3, start, bits):
    """Bits ``start .. start+bits-1`` (bits <= 32) of a 256-bit code, as an int64."""
    word = start >> 6
    off = np.uint64(start & 63)
    if word == 0:
        lo, hi = w0, w1
    elif word == 1:
        lo, hi = w1, w2
    elif word == 2:
        lo, hi = w2, w3
    else:
        lo, hi = w3, np.uint64(0)
    v = lo >> off
    if (start & 63) + bits > 64:
        v |= hi << (np.uint64(64) - off)
    return np.int64(v & ((np.uint64(1) << np.uint64(bits)) - np.uint64(1)))


@njit(cache=True, nogil=True)
def key_counts(words, start, bits):
    """Counting-sort prefix sums of one chunk's keys, and their collision mean.

    ``counts[k]`` is the number of rows whose key is below ``k`` (``2**bits + 1`` entries),
    i.e. the CSR offsets. The collision mean is the mean size of the bucket a stored row
    falls in (sum of squared sizes over n); the planner uses it as the expected size of a
    query's own bucket, which on clustered data is far above ``n / 2**bits``.
    """
    n = words.shape[0]
    nbuckets = np.int64(1) << bits
    counts = np.zeros(nbuckets + 1, dtype=np.int64)
    for i in range(n):
        k = _chunk_of(words[i, 0], words[i, 1], words[i, 2], words[i, 3], start, bits)
        counts[k + 1] += 1
    sq = 0.0
    for k in range(nbuckets):
        c = float(counts[k + 1])
        sq += c * c
        counts[k + 1] += counts[k]
    return counts, (sq / n if n else 0.0)


@njit(cache=True, nogil=True)
def fill_positions(words, start, bits, counts, positions):
    """Row numbers bucket by bucket (ascending within a bucket): the CSR row list.

    Consumes ``counts`` (from :func:`key_counts`). The key is recomputed rather than kept
    from the first pass: a key array would cost 8 bytes a row of transient memory.
    """
    for i in range(words.shape[0]):
        k = _chunk_of(words[i, 0], words[i, 1], words[i, 2], words[i, 3], start, bits)
        positions[counts[k]] = i
        counts[k] += 1


@njit(cache=True, nogil=True)
def fill_directory(counts, records):
    """Write a chunk's bucket directory from its CSR offsets.

    Returns the chunk's overflow offsets: 57 per group holding more than 255 rows. The
    record format is described where it is read, in :func:`_bucket_ranges`.
    """
    nbuckets = counts.shape[0] - 1
    bytes8 = records.view(np.uint8)
    overflow = np.empty(0, dtype=np.uint32)
    n_overflow = 0
    for g in range(records.shape[0]):
        first = g * GROUP
        base = counts[min(first, nbuckets)]
        records[g, 0] = base
        if counts[min(first + GROUP, nbuckets)] - base <= 255:
            records[g, 1] = NO_OVERFLOW
            for j in range(GROUP):
                bytes8[g, 8 + j] = counts[min(first + j + 1, nbuckets)] - base
        else:
            if (n_overflow + 1) * (GROUP + 1) > overflow.shape[0]:
                bigger = np.empty(max(2 * overflow.shape[0], 16 * (GROUP + 1)), dtype=np.uint32)
                for i in range(n_overflow * (GROUP + 1)):
                    bigger[i] = overflow[i]
                overflow = bigger
            records[g, 1] = n_overflow
            for j in range(GROUP + 1):
                overflow[n_overflow * (GROUP + 1) + j] = counts[min(first + j, nbuckets)]
            n_overflow += 1
    return overflow[: n_overflow * (GROUP + 1)].copy()


@njit(cache=True, nogil=True)
def gather_rows(words, order):
    """``words[order]`` without numpy's fancy-indexing temporaries."""
    n = order.shape[0]
    out = np.empty((n, 4), dtype=np.uint64)
    for i in range(n):
        r = order[i]
        out[i, 0] = words[r, 0]
        out[i, 1] = words[r, 1]
        out[i, 2] = words[r, 2]
        out[i, 3] = words[r, 3]
    return out


@njit(cache=True, nogil=True)
def _grow(a, size):
    """A copy of int64 ``a`` with room for ``size`` items.

    An explicit loop, not a slice assignment: numba compiles slice assignment into far more
    code, and compile time is what a fresh install pays on its first search.
    """
    out = np.empty(size, dtype=np.int64)
    for i in range(min(size, a.shape[0])):
        out[i] = a[i]
    return out


@njit(cache=True, nogil=True)
def rows_of_ids(stored, wanted_sorted):
    """Row numbers of ``stored`` whose id is in ``wanted_sorted`` (ascending int64).

    One pass over the stored ids with a binary search in the (usually tiny) wanted set:
    O(n log k), no hash table of n ids kept in memory.
    """
    k = wanted_sorted.shape[0]
    out = np.empty(16, dtype=np.int64)
    count = 0
    if k == 0:
        return out[:0]
    lo_id = wanted_sorted[0]
    hi_id = wanted_sorted[k - 1]
    for i in range(stored.shape[0]):
        v = np.int64(stored[i])
        if v < lo_id or v > hi_id:
            continue
        lo = 0
        hi = k
        while lo < hi:
            mid = (lo + hi) >> 1
            if wanted_sorted[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        if lo < k and wanted_sorted[lo] == v:
            if count == out.shape[0]:
                out = _grow(out, 2 * count)
            out[count] = i
            count += 1
    return out[:count]


@njit(cache=True, nogil=True)
def _alive(dead, row):
    return (dead[row >> 3] >> (row & 7)) & 1 == 0


# The multi-index search runs in passes over flat arrays rather than as one nested loop,
# because its time goes into cache misses, not arithmetic: separate simple loops keep many
# independent loads in flight (and can prefetch), where the nested loop waited on each
# bucket in turn. Measured at 10M codes: ~1.8x faster than the nested loop.


@njit(cache=True, nogil=True)
def _enumerate_probes(q0, q1, q2, q3, starts, bits, radii, probe_key, probe_chunk):
    """Pass 1: every key to probe and its chunk."""
    combo = np.empty(CODE_BITS + 1, dtype=np.int64)
    nprobe = 0
    for c in range(starts.shape[0]):
        radius = radii[c]
        if radius < 0:
            continue
        b = bits[c]
        key = _chunk_of(q0, q1, q2, q3, starts[c], b)
        for d in range(radius + 1):
            for i in range(d):
                combo[i] = i
            while True:
                mask = np.int64(0)
                for i in range(d):
                    mask |= np.int64(1) << combo[i]
                probe_key[nprobe] = key ^ mask
                probe_chunk[nprobe] = c
                nprobe += 1
                # Next combination of d bit positions out of b, in lexicographic order.
                i = d - 1
                while i >= 0 and combo[i] == b - d + i:
                    i -= 1
                if i < 0:
                    break
                combo[i] += 1
                for j in range(i + 1, d):
                    combo[j] = combo[j - 1] + 1
    return nprobe


@njit(cache=True, nogil=True)
def _bucket_ranges(
    use_directory, offsets, records, bytes8, overflow, bases, overflow_bases, nprobe,
    probe_key, probe_chunk,
):  # fmt: skip
    """Pass 2: turn probed keys into non-empty row ranges, in place.

    Bucket bounds come from plain CSR ``offsets`` (``bases`` = each chunk's first offset) or
    from directories (``bases`` = each chunk's first record). Afterwards ``probe_key[i]`` is
    the start of the i-th non-empty bucket and ``probe_chunk[i]`` packs its chunk (low 8
    bits) and length (the rest), so the pass needs no arrays of its own. Returns (buckets,
    total rows).
    """
    kept = 0
    total = 0
    for p in range(nprobe):
        ahead = p + _PREFETCH_BUCKETS
        c = probe_chunk[p]
        if use_directory:
            # The directory is the compact form of CSR offsets for sparse chunks. Plain
            # offsets (4 bytes a bucket) would take 448 MB for 11 chunks of 23-24 bits at
            # 10M codes, more than the row lists; the directory takes one 64-byte record per
            # GROUP = 56 buckets (1.14 bytes a bucket) and, like the plain array, one cache
            # line per lookup. A record holds the group's first offset (uint32), an overflow
            # index (uint32, NO_OVERFLOW if none), then per bucket the number of the group's
            # rows up to and including it (uint8). A group of more than 255 rows keeps its
            # 57 offsets in the overflow array instead; the layout only uses directories
            # where groups average well under that. Written out here rather than in a
            # helper: a numba call returning a tuple is not inlined, and the call made this
            # loop 5x slower (24 ns a probe instead of 5).
            if ahead < nprobe:
                _prefetch(records, bases[probe_chunk[ahead]] + probe_key[ahead] // GROUP)
            key = probe_key[p]
            g = bases[c] + key // GROUP
            j = key % GROUP
            s = np.int64(records[g, 0])
            flag = records[g, 1]
            if flag == NO_OVERFLOW:
                e = s + np.int64(bytes8[g, 8 + j])
                if j > 0:
                    s += np.int64(bytes8[g, 7 + j])
            else:
                o = overflow_bases[c] + np.int64(flag) * (GROUP + 1) + j
                s = np.int64(overflow[o])
                e = np.int64(overflow[o + 1])
        else:
            if ahead < nprobe:
                _prefetch(offsets, bases[probe_chunk[ahead]] + probe_key[ahead])
            k = bases[c] + probe_key[p]
            s = np.int64(offsets[k])
            e = np.int64(offsets[k + 1])
        if e > s:
            probe_key[kept] = s
            probe_chunk[kept] = c | ((e - s) << 8)
            kept += 1
            total += e - s
    return kept, total


@njit(cache=True, nogil=True)
def _gather_candidates(nbucket, range_start, range_chunk, positions, cand):
    """Pass 3: the row numbers in every probed bucket, concatenated into ``cand``."""
    nc = 0
    for p in range(nbucket):
        ahead = p + _PREFETCH_BUCKETS
        if ahead < nbucket and (range_chunk[ahead] & 255) > 0:
            _prefetch(positions[(range_chunk[ahead] & 255) - 1], range_start[ahead])
        c = range_chunk[p] & 255
        s = range_start[p]
        e = s + (range_chunk[p] >> 8)
        if c > 0:
            pos = positions[c - 1]
            for t in range(s, e):
                cand[nc] = pos[t]
                nc += 1
        else:
            # Chunk 0's table indexes rows directly (the codes are stored in its key order).
            for t in range(s, e):
                cand[nc] = t
                nc += 1
    return nc


@njit(cache=True, nogil=True)
def _verify(q0, q1, q2, q3, threshold, cand, nc, words, dead, hit_row, hit_dist):
    """Pass 4: full distance of each candidate; hits go to ``hit_*`` (sized >= nc)."""
    count = 0
    for j in range(nc):
        ahead = j + _PREFETCH_ROWS
        if ahead < nc:
            _prefetch(words, cand[ahead])
        row = cand[j]
        dist = _distance(words[row, 0], words[row, 1], words[row, 2], words[row, 3], q0, q1, q2, q3)
        if dist <= threshold and _alive(dead, row):
            hit_row[count] = row
            hit_dist[count] = dist
            count += 1
    return count


@njit(cache=True, nogil=True)
def _scan(q0, q1, q2, q3, threshold, words, dead, row0, hit_row, hit_dist, count):
    """Linear scan of ``words`` (rows numbered from ``row0``); hits appended after ``count``.

    ``dead`` may be empty (no removals to check). Returns the hit arrays, which grow when
    full: a linear scan at a large threshold can match many rows.
    """
    check_dead = dead.shape[0] > 0
    for row in range(words.shape[0]):
        dist = _distance(words[row, 0], words[row, 1], words[row, 2], words[row, 3], q0, q1, q2, q3)
        if dist <= threshold and (not check_dead or _alive(dead, row)):
            if count == hit_row.shape[0]:
                hit_row = _grow(hit_row, 2 * count)
                hit_dist = _grow(hit_dist, 2 * count)
            hit_row[count] = row0 + row
            hit_dist[count] = dist
            count += 1
    return hit_row, hit_dist, count


@njit(cache=True, nogil=True)
def _counting_pass(src, digit, nbins, dst):
    """Stable counting sort of the indices ``src`` by ``digit[src[i]]`` into ``dst``."""
    start = np.zeros(nbins + 1, dtype=np.int64)
    for i in range(src.shape[0]):
        start[digit[src[i]] + 1] += 1
    for b in range(nbins):
        start[b + 1] += start[b]
    for i in range(src.shape[0]):
        k = src[i]
        d = digit[k]
        dst[start[d]] = k
        start[d] += 1


@njit(cache=True, nogil=True)
def _order_by_distance_then_id(found, dist, count):
    """Indices ``0..count-1`` ordered by ``(dist, found)``.

    A hand-written sort rather than ``np.argsort``: numba takes seconds to compile its
    sorts, which a fresh install would pay on the first search. Few hits (the usual case)
    get an insertion sort; many get an LSD radix sort, 11 bits of id at a time (only as
    many passes as the id range needs) and a last stable pass on the distance: O(count),
    even for the millions of hits of a threshold near 256.
    """
    order = np.arange(count)
    if count <= 32:
        for i in range(1, count):
            k = order[i]
            j = i - 1
            while j >= 0 and (
                dist[order[j]] > dist[k]
                or (dist[order[j]] == dist[k] and found[order[j]] > found[k])
            ):
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = k
        return order
    lo = found[0]
    hi = found[0]
    for i in range(count):
        lo = min(lo, found[i])
        hi = max(hi, found[i])
    span = np.uint64(hi - lo)  # wraps correctly for any int64 range
    digit = np.empty(count, dtype=np.int64)
    other = np.empty(count, dtype=np.int64)
    shift = np.uint64(0)
    while True:
        for i in range(count):
            digit[i] = np.int64(((np.uint64(found[i] - lo)) >> shift) & np.uint64(2047))
        _counting_pass(order, digit, 2048, other)
        order, other = other, order
        shift += np.uint64(11)
        if shift >= np.uint64(64) or (span >> shift) == np.uint64(0):
            break
    _counting_pass(order, dist, CODE_BITS + 1, other)
    return other


@njit(cache=True, nogil=True)
def _finish(hit_row, hit_dist, count, ids, delta_ids, n, out_ids, out_dist, out_count):
    """Map hit rows to ids and append them sorted by (distance, id), each row once.

    Ids are unique among live rows, so once sorted, a row found through several chunks
    sits in adjacent, identical entries and is dropped by comparing neighbours.
    """
    if count == 0:
        return out_ids, out_dist, out_count
    found = np.empty(count, dtype=np.int64)
    for i in range(count):
        r = hit_row[i]
        found[i] = np.int64(ids[r]) if r < n else delta_ids[r - n]
    order = _order_by_distance_then_id(found, hit_dist, count)
    if out_count + count > out_ids.shape[0]:
        size = max(out_count + count, 2 * out_ids.shape[0])
        out_ids = _grow(out_ids, size)
        out_dist = _grow(out_dist, size)
    last = np.int64(-1)
    last_dist = np.int64(-1)
    for i in range(count):
        k = order[i]
        if found[k] == last and hit_dist[k] == last_dist:
            continue
        last = found[k]
        last_dist = hit_dist[k]
        out_ids[out_count] = last
        out_dist[out_count] = last_dist
        out_count += 1
    return out_ids, out_dist, out_count


@njit(cache=True, nogil=True)
def search_batch(
    queries,
    threshold,
    use_mih,
    max_probes,
    words,
    ids,
    dead,
    starts,
    bits,
    radii,
    use_directory,
    offsets,
    records,
    overflow,
    bases,
    overflow_bases,
    positions,
    delta_words,
    delta_ids,
):
    """Search each query row; returns ``(bounds, ids, distances)`` in CSR form.

    Query ``i``'s matches are ``ids[bounds[i]:bounds[i+1]]``, sorted by distance then id.
    Static rows are numbered ``0..n-1`` and delta rows ``n..``.
    """
    m = queries.shape[0]
    n = words.shape[0]
    no_dead = np.zeros(0, dtype=np.uint8)
    bounds = np.zeros(m + 1, dtype=np.int64)
    out_ids = np.empty(64, dtype=np.int64)
    out_dist = np.empty(64, dtype=np.int64)
    out_count = 0
    hit_row = np.empty(_INITIAL_HITS, dtype=np.int64)
    hit_dist = np.empty(_INITIAL_HITS, dtype=np.int64)
    cand = np.empty(_INITIAL_HITS, dtype=np.int64)
    probe_key = np.empty(max_probes, dtype=np.int64)
    probe_chunk = np.empty(max_probes, dtype=np.int64)
    bytes8 = records.view(np.uint8)
    for qi in range(m):
        q0, q1, q2, q3 = queries[qi, 0], queries[qi, 1], queries[qi, 2], queries[qi, 3]
        count = 0
        if use_mih:
            nprobe = _enumerate_probes(q0, q1, q2, q3, starts, bits, radii, probe_key, probe_chunk)
            nbucket, total = _bucket_ranges(
                use_directory, offsets, records, bytes8, overflow, bases, overflow_bases,
                nprobe, probe_key, probe_chunk,
            )  # fmt: skip
            if total > cand.shape[0]:
                cand = np.empty(max(total, 2 * cand.shape[0]), dtype=np.int64)
            if total > hit_row.shape[0]:
                hit_row = np.empty(cand.shape[0], dtype=np.int64)
                hit_dist = np.empty(cand.shape[0], dtype=np.int64)
            nc = _gather_candidates(nbucket, probe_key, probe_chunk, positions, cand)
            count = _verify(q0, q1, q2, q3, threshold, cand, nc, words, dead, hit_row, hit_dist)
        else:
            hit_row, hit_dist, count = _scan(
                q0, q1, q2, q3, threshold, words, dead, 0, hit_row, hit_dist, 0
            )
        hit_row, hit_dist, count = _scan(
            q0, q1, q2, q3, threshold, delta_words, no_dead, n, hit_row, hit_dist, count
        )
        out_ids, out_dist, out_count = _finish(
            hit_row, hit_dist, count, ids, delta_ids, n, out_ids, out_dist, out_count
        )
        bounds[qi + 1] = out_count
    return bounds, out_ids[:out_count], out_dist[:out_count]
