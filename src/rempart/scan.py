"""The Scanner: bytes -> media -> signals -> matches -> verdict.

The CLI, the HTTP service and the batch engine are three doors into this one class; none of
them re-implements a step. Bytes are processed in memory and never stored here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rempart.evidence.collect import EvidenceCollector, EvidenceResult
from rempart.hashing import MediaHashes, hash_media
from rempart.matcher import BankMatcher, MatchResult
from rempart.media import read_media_file
from rempart.policy import DEFAULT_POLICY, Policy, Verdict, decide
from rempart.settings import Settings
from rempart.store import Store


@dataclass
class ScanResult:
    """The hashes of one file, what they matched, the evidence found, and the verdict."""

    hashes: MediaHashes
    match: MatchResult
    timings_ms: dict[str, float] = field(default_factory=dict)
    evidence: EvidenceResult = field(default_factory=EvidenceResult)
    verdict: Verdict | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape shared by ``rempart scan`` and the API."""
        out: dict[str, Any] = {"hashes": self.hashes.to_dict()}
        out.update(self.match.to_dict())
        out.update(self.evidence.parts)
        if self.evidence.warnings:
            out["warnings"] = out.get("warnings", []) + self.evidence.warnings
        if self.verdict is not None:
            out.update(self.verdict.to_dict())
        out["timings_ms"] = {k: round(v, 2) for k, v in self.timings_ms.items()}
        return out


class Scanner:
    """Hashes media, matches it against the banks of a store, gathers evidence, decides."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        matcher: BankMatcher | None = None,
        policy: Policy = DEFAULT_POLICY,
    ):
        self.store = store
        self.settings = settings
        self.matcher = matcher if matcher is not None else BankMatcher(store, settings)
        self.policy = policy
        self.evidence = EvidenceCollector(settings, store)

    def scan_bytes(
        self,
        data: bytes,
        *,
        banks: Iterable[str] | None = None,
        tenant: str = "default",
        shared: Iterable[int] = (),
        trim_borders: bool | None = None,
        signals: frozenset[str] = frozenset(),
    ) -> ScanResult:
        """Hash ``data`` (with dihedral variants, and borderless when asked), match it, run
        the evidence ``signals`` asked for, and decide under the scanner's policy."""
        trim = self.settings.trim_borders if trim_borders is None else trim_borders
        t0 = time.perf_counter()
        hashes = hash_media(data, limits=self.settings.limits, dihedral=True, trim_borders=trim)
        t1 = time.perf_counter()
        match = self.matcher.match(hashes, banks=banks, tenant=tenant, shared=shared)
        t2 = time.perf_counter()
        evidence = self.evidence.collect(data, signals, tenant=tenant)
        timings = {"hash": (t1 - t0) * 1e3, "match": (t2 - t1) * 1e3, **evidence.timings_ms}
        verdict = decide(match, self.policy, evidence.facts)
        return ScanResult(hashes, match, timings, evidence, verdict)

    def scan_file(self, path: Path, **kwargs: Any) -> ScanResult:
        """Read ``path`` (within the byte limit) and scan it."""
        return self.scan_bytes(read_media_file(path, self.settings.limits), **kwargs)
