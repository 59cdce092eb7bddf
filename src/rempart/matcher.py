"""Matching hashes against banks: the in-memory side of the hash banks.

The :class:`BankMatcher` holds one exact :class:`~rempart.index.PDQIndex` per bank, built from
the store at start and kept current by applying the store's change log (no full rebuild on a
change). Exact signals (MD5, SHA-256) are looked up in the store itself, through its index, so
they never need memory here.

Rules:

- a PDQ hash under the quality gate is reported, never matched (Meta's advice: low-quality
  hashes, e.g. of flat images, collide);
- every bank has its own distance threshold;
- a match in an ``allow`` bank suppresses the block matches of the same file (known false
  positives); suppressed matches are still reported, so the decision is explained.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rempart.errors import NotFoundError
from rempart.hashing import MediaHashes
from rempart.index import PDQIndex
from rempart.settings import Settings
from rempart.store import BankInfo, Change, Store
from rempart.store.cases import CASES_TENANT


@dataclass(frozen=True)
class Match:
    """One bank entry that a file matched: a lead for a human, not an identification."""

    bank: str
    bank_kind: str
    entry_id: int
    signal: str
    distance: int
    threshold: int
    #: Which transform of the query matched: a dihedral variant name (``original``,
    #: ``rot90``, ...), prefixed with ``trimmed+`` when borders were removed; ``None`` for
    #: exact signals.
    variant: str | None = None
    #: For video: share of the query's frames that matched the bank video's frames.
    share: float | None = None
    bank_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the CLI and the API."""
        out: dict[str, Any] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal": self.signal,
            "distance": self.distance,
            "threshold": self.threshold,
            "variant": self.variant,
        }
        if self.share is not None:
            out["share"] = round(self.share, 4)
        return out


@dataclass
class MatchResult:
    """What matching one file found."""

    #: Matches in block banks that no allow bank suppressed.
    matches: list[Match] = field(default_factory=list)
    #: Block-bank matches suppressed because the file is also in an allow bank.
    suppressed: list[Match] = field(default_factory=list)
    #: Matches in allow banks.
    allowed: list[Match] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the CLI and the API."""
        out: dict[str, Any] = {"matches": [m.to_dict() for m in self.matches]}
        if self.allowed:
            out["allowed"] = [m.to_dict() for m in self.allowed]
            out["suppressed"] = [m.to_dict() for m in self.suppressed]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def _codes(hex_values: Sequence[str]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(hex_values)), dtype=np.uint8).reshape(-1, 32)


class BankMatcher:
    """Every bank's hashes, searchable; built from a :class:`Store`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._lock = threading.RLock()
        self._banks: dict[int, BankInfo] = {}
        self._pdq: dict[int, PDQIndex] = {}
        self._video: dict[int, _VideoBank] = {}
        self._seq = 0
        self.load()

    # -- building ---------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)build every bank's index from the store."""
        with self._lock:
            # Take the change-log position first: changes made while we load are applied
            # again by refresh(), which is harmless (adds are upserts, removes idempotent).
            seq = self._store.latest_seq()
            self._banks = {b.id: b for b in self._store.list_banks()}
            ids, bank_ids, codes, quality = self._store.load_signal_arrays("pdq")
            keep = self._usable(quality)
            self._pdq = {}
            for bank_id in self._banks:
                sel = keep & (bank_ids == bank_id)
                self._pdq[bank_id] = PDQIndex.from_arrays(ids[sel], codes[sel])
            self._video = {}
            for entry in self._store.iter_video_entries():
                self._video_bank(entry.bank_id).add(entry.id, entry.frames)
            self._seq = seq

    def _usable(self, quality: np.ndarray) -> np.ndarray:
        # A stored quality under the gate means the bank hash itself is unreliable; an
        # unknown quality (hash-only imports, stored as -1) is trusted.
        q = quality.astype(np.int32)
        return (q < 0) | (q >= self._settings.pdq_quality_gate)

    def _video_bank(self, bank_id: int) -> _VideoBank:
        vb = self._video.get(bank_id)
        if vb is None:
            vb = self._video[bank_id] = _VideoBank()
        return vb

    def refresh(self) -> int:
        """Apply the store's changes since the last load or refresh; returns how many.

        Cheap when nothing changed (one indexed query), so services call it often.
        """
        with self._lock:
            applied = 0
            while True:
                changes = self._store.changes_since(self._seq)
                if not changes:
                    return applied
                self._apply(changes)
                applied += len(changes)
                self._seq = changes[-1].seq

    def _apply(self, changes: Sequence[Change]) -> None:
        if any(c.entry_id is None for c in changes):
            # A bank was created, changed or deleted: bank records are small, re-read them.
            # A deleted bank's entries go with it (no per-entry removals are logged).
            self._banks = {b.id: b for b in self._store.list_banks()}
            for gone in set(self._pdq) - set(self._banks):
                del self._pdq[gone]
            for gone in set(self._video) - set(self._banks):
                del self._video[gone]
        gate = self._settings.pdq_quality_gate
        # Entry ids are never reused, so applying every add before every remove gives the
        # same state as applying them in order -- and lets an import be added in one batch.
        adds: dict[int, tuple[list[int], list[str]]] = {}
        removes: dict[int, list[int]] = {}
        videos: list[int] = []
        video_removes: dict[int, list[int]] = {}
        for c in changes:
            if c.entry_id is None or c.bank_id not in self._banks:
                continue
            if c.op == "add" and c.signal == "pdq" and c.value:
                if c.quality is not None and 0 <= c.quality < gate:
                    continue
                ids, values = adds.setdefault(c.bank_id, ([], []))
                ids.append(c.entry_id)
                values.append(c.value)
            elif c.op == "add" and c.signal == "vpdq":
                videos.append(c.entry_id)
            elif c.op == "remove" and c.signal == "pdq":
                removes.setdefault(c.bank_id, []).append(c.entry_id)
            elif c.op == "remove" and c.signal == "vpdq":
                video_removes.setdefault(c.bank_id, []).append(c.entry_id)
        for bank_id, (ids, values) in adds.items():
            index = self._pdq.setdefault(bank_id, PDQIndex())
            index.add(np.asarray(ids, dtype=np.int64), _codes(values))
        for entry in self._store.get_entries(videos):
            if entry.frames:
                self._video_bank(entry.bank_id).add(entry.id, entry.frames)
        for bank_id, ids in removes.items():
            if bank_id in self._pdq:
                self._pdq[bank_id].remove(np.asarray(ids, dtype=np.int64))
        for bank_id, ids in video_removes.items():
            if bank_id in self._video:
                self._video[bank_id].remove(ids)

    def size(self) -> int:
        """PDQ hashes held, every bank together."""
        with self._lock:
            return sum(len(i) for i in self._pdq.values())

    # -- matching ---------------------------------------------------------------------------

    def banks_for(
        self,
        names: Iterable[str] | None,
        tenant: str = "default",
        shared: Iterable[int] = (),
    ) -> list[BankInfo]:
        """The enabled banks of ``tenant`` called ``names`` (all of them when None).

        ``shared`` are ids of other tenants' banks shared with this one: they take part too
        (by name, when a tenant of its own has no bank of that name), and so do the banks
        of the reserved cases tenant (the ``cases`` bank of victims' hashes).
        """
        shared_ids = set(shared)
        with self._lock:
            mine = [b for b in self._banks.values() if b.tenant == tenant]
            names_taken = {b.name for b in mine}
            mine += [
                b
                for i, b in self._banks.items()
                if i in shared_ids and b.tenant != tenant and b.name not in names_taken
            ]
            # Victims' cases (rempart.cases): the reserved tenant's banks take part for
            # every tenant (their names are reserved, so no bank of a tenant hides them).
            mine += [
                b
                for b in self._banks.values()
                if tenant != CASES_TENANT and b.tenant == CASES_TENANT
            ]
        if names is None:
            return [b for b in mine if b.enabled]
        by_name = {b.name: b for b in mine}
        chosen = []
        for name in names:
            if name not in by_name:
                raise NotFoundError(
                    f"no bank called {name!r}",
                    code="bank_not_found",
                    hint="list banks with `rempart bank list`"
                    + (f"; existing: {', '.join(sorted(by_name))}" if by_name else ""),
                )
            chosen.append(by_name[name])
        return chosen

    def match(
        self,
        hashes: MediaHashes,
        *,
        banks: Iterable[str] | None = None,
        tenant: str = "default",
        shared: Iterable[int] = (),
    ) -> MatchResult:
        """Match one file's hashes against ``banks`` (all enabled banks of the tenant)."""
        chosen = self.banks_for(banks, tenant, shared)
        result = MatchResult()
        found: list[Match] = []
        found += self._match_exact(hashes, chosen)
        if hashes.kind == "video":
            found += self._match_video(hashes, chosen, result)
        else:
            found += self._match_pdq(hashes, chosen, result)
        allowed = [m for m in found if m.bank_kind == "allow"]
        blocked = [m for m in found if m.bank_kind != "allow"]
        order = lambda m: (m.distance, m.bank, m.entry_id)  # noqa: E731
        result.allowed = sorted(allowed, key=order)
        if allowed:
            result.suppressed = sorted(blocked, key=order)
        else:
            result.matches = sorted(blocked, key=order)
        return result

    def _query_codes(self, hashes: MediaHashes) -> list[tuple[str, str]]:
        variants: list[tuple[str, str]] = []
        if hashes.dihedral:
            variants += list(hashes.dihedral.items())
        elif hashes.pdq:
            variants.append(("original", hashes.pdq))
        if hashes.trimmed_pdq:
            if hashes.trimmed_dihedral:
                variants += [(f"trimmed+{k}", v) for k, v in hashes.trimmed_dihedral.items()]
            else:
                variants.append(("trimmed+original", hashes.trimmed_pdq))
        return variants

    def _match_pdq(
        self, hashes: MediaHashes, banks: list[BankInfo], result: MatchResult
    ) -> list[Match]:
        if not hashes.pdq:
            return []
        gate = self._settings.pdq_quality_gate
        if hashes.pdq_quality is not None and hashes.pdq_quality < gate:
            result.warnings.append(
                f"PDQ quality {hashes.pdq_quality} is under the gate {gate}: the perceptual "
                "hash was not matched (exact hashes were)"
            )
            return []
        variants = self._query_codes(hashes)
        queries = _codes([v for _, v in variants])
        out: list[Match] = []
        for bank in banks:
            with self._lock:
                index = self._pdq.get(bank.id)
            if index is None or len(index) == 0:
                continue
            best: dict[int, tuple[int, str]] = {}
            for (variant, _), hits in zip(
                variants, index.search(queries, bank.threshold), strict=True
            ):
                for entry_id, dist in hits:
                    if entry_id not in best or dist < best[entry_id][0]:
                        best[entry_id] = (dist, variant)
            out += [
                Match(bank.name, bank.kind, eid, "pdq", d, bank.threshold, v, bank_id=bank.id)
                for eid, (d, v) in best.items()
            ]
        return out

    def _match_exact(self, hashes: MediaHashes, banks: list[BankInfo]) -> list[Match]:
        by_id = {b.id: b for b in banks}
        # One indexed query for both exact hashes; banks are filtered here, which is cheaper
        # than compiling an IN list per scan.
        hits = self._store.exact_hits({"md5": hashes.md5, "sha256": hashes.sha256})
        out = []
        for entry_id, bank_id, signal in hits:
            bank = by_id.get(bank_id)
            if bank is not None and signal in ("md5", "sha256"):
                out.append(
                    Match(bank.name, bank.kind, entry_id, signal, 0, 0, None, bank_id=bank.id)
                )
        return out

    def _match_video(
        self, hashes: MediaHashes, banks: list[BankInfo], result: MatchResult
    ) -> list[Match]:
        gate = self._settings.pdq_quality_gate
        frames = [f["pdq"] for f in hashes.frames if f["quality"] >= gate]
        if not frames:
            if hashes.frames:
                result.warnings.append(
                    f"every sampled frame is under the PDQ quality gate {gate}: "
                    "the video was matched by its exact hashes only"
                )
            return []
        out = []
        need = self._settings.vpdq_match_share
        for bank in banks:
            with self._lock:
                vb = self._video.get(bank.id)
            if vb is None:
                continue
            for entry_id, share, dist in vb.match(frames, bank.threshold):
                if share >= need:
                    out.append(
                        Match(
                            bank.name,
                            bank.kind,
                            entry_id,
                            "vpdq",
                            dist,
                            bank.threshold,
                            "frames",
                            share,
                            bank_id=bank.id,
                        )
                    )
        return out


class _VideoBank:
    """The frames of one bank's videos, for the vPDQ rule."""

    def __init__(self) -> None:
        self._index = PDQIndex()
        self._owner: dict[int, int] = {}  # frame id -> entry id
        self._frames: dict[int, list[int]] = {}  # entry id -> frame ids
        self._next = 0

    def add(self, entry_id: int, frames: Sequence[str]) -> None:
        self.remove([entry_id])
        ids = np.arange(self._next, self._next + len(frames), dtype=np.int64)
        self._next += len(frames)
        self._index.add(ids, _codes(frames))
        self._frames[entry_id] = ids.tolist()
        self._owner.update(dict.fromkeys(self._frames[entry_id], entry_id))

    def remove(self, entry_ids: Iterable[int]) -> None:
        for entry_id in entry_ids:
            frame_ids = self._frames.pop(entry_id, None)
            if frame_ids:
                self._index.remove(np.asarray(frame_ids, dtype=np.int64))
                for f in frame_ids:
                    self._owner.pop(f, None)

    def match(self, frames: Sequence[str], threshold: int) -> list[tuple[int, float, int]]:
        """(entry id, share of query frames matched, best distance) per bank video hit."""
        hits_per_entry: dict[int, int] = {}
        best: dict[int, int] = {}
        for hits in self._index.search(_codes(frames), threshold):
            seen: set[int] = set()
            for frame_id, dist in hits:
                entry_id = self._owner[frame_id]
                best[entry_id] = min(dist, best.get(entry_id, dist))
                seen.add(entry_id)
            for entry_id in seen:
                hits_per_entry[entry_id] = hits_per_entry.get(entry_id, 0) + 1
        return [(e, n / len(frames), best[e]) for e, n in hits_per_entry.items()]
