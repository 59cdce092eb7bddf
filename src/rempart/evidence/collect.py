"""Collecting evidence for a scan: which signals run, their results, and the policy facts.

Signals: ``provenance`` (C2PA, IPTC, generator metadata), ``watermark`` (Stable Diffusion
invisible watermarks), ``nudity`` (NudeNet regions, an optional extra), ``faces`` (detection;
matching against enrolled people when a face key is configured), ``detectors`` (the
operator's ONNX models). ``all`` means every one of them. Hashes and bank matching always run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rempart.errors import RempartError
from rempart.evidence.detectors import Detector
from rempart.evidence.provenance import find_provenance
from rempart.evidence.watermark import detect_watermarks
from rempart.media import decode_image
from rempart.policy import Evidence, Facts
from rempart.settings import Settings
from rempart.store import Store

SIGNALS = ("provenance", "watermark", "nudity", "faces", "detectors")
#: Provenance strengths that count as evidence of generation for the policy.
_GENERATION_STRENGTHS = {"strong", "moderate"}
_WATERMARK_BANDS = {"likely", "very likely"}


def parse_signals(value: str | list[str] | None) -> frozenset[str]:
    """``"all"``, ``"provenance,faces"`` or a list -> the evidence signals to run."""
    if not value:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    wanted = {s.strip().lower() for s in items if s.strip()}
    if "all" in wanted:
        return frozenset(SIGNALS)
    wanted.discard("hashes")
    unknown = sorted(wanted - set(SIGNALS))
    if unknown:
        raise RempartError(
            f"unknown signal(s): {', '.join(unknown)}",
            code="unknown_signal",
            hint=f"use all, hashes, or some of: {', '.join(SIGNALS)}",
        )
    return frozenset(wanted)


@dataclass
class EvidenceResult:
    """The evidence found in one file, its JSON parts and the facts it gives the policy."""

    parts: dict[str, Any] = field(default_factory=dict)
    facts: Facts = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class EvidenceCollector:
    """Runs the evidence signals; heavy models load once, on first use."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._lock = threading.Lock()
        self._faces: Any = None
        self._detectors: list[Detector] | None = None
        self._nudity: Any = None
        anchors = settings.c2pa_trust_anchors
        self._anchors = anchors.read_text(encoding="utf-8") if anchors else None

    def _face_analyzer(self) -> Any:
        with self._lock:
            if self._faces is None:
                from rempart.evidence.faces import FaceAnalyzer

                self._faces = FaceAnalyzer()
            return self._faces

    def _nudity_detector(self) -> Any:
        with self._lock:
            if self._nudity is None:
                from rempart.evidence.nudity import NudityDetector

                self._nudity = NudityDetector()
            return self._nudity

    def _loaded_detectors(self) -> list[Detector]:
        with self._lock:
            if self._detectors is None:
                self._detectors = [Detector.from_manifest(p) for p in self._settings.detectors]
            return self._detectors

    def collect(self, data: bytes, signals: frozenset[str], *, tenant: str) -> EvidenceResult:
        """Run ``signals`` on ``data`` (an image; videos get provenance only)."""
        out = EvidenceResult()
        if not signals:
            return out
        if "provenance" in signals:
            t0 = time.perf_counter()
            report = find_provenance(data, trust_anchors_pem=self._anchors)
            out.parts["provenance"] = report.to_dict()
            gen = [f for f in report.findings if f.strength in _GENERATION_STRENGTHS]
            if gen:
                out.facts.setdefault("generation", []).extend(
                    Evidence(f.source, f.strength, None, {"summary": f.summary}) for f in gen
                )
            out.timings_ms["provenance"] = (time.perf_counter() - t0) * 1e3
        pixel_signals = signals & {"watermark", "nudity", "faces", "detectors"}
        if not pixel_signals:
            return out
        try:
            rgb = decode_image(data, self._settings.limits, draft_min_side=None).rgb
        except RempartError as e:
            if e.code == "unsupported_format":  # a video: pixel evidence is for images
                out.warnings.append("watermark, face and detector signals run on images only")
                return out
            raise
        if "watermark" in signals:
            self._watermarks(rgb, out)
        if "nudity" in signals:
            self._run_nudity(rgb, out)
        if "detectors" in signals:
            self._run_detectors(rgb, out)
        if "faces" in signals:
            self._run_faces(rgb, out, tenant)
        return out

    def _watermarks(self, rgb: np.ndarray, out: EvidenceResult) -> None:
        t0 = time.perf_counter()
        found = detect_watermarks(rgb)
        out.parts["watermarks"] = [w.to_dict() for w in found]
        strong = [w for w in found if w.band in _WATERMARK_BANDS]
        if strong:
            out.facts.setdefault("generation", []).extend(
                Evidence(w.source, w.matched_bits, w.total_bits, {"band": w.band}) for w in strong
            )
        out.timings_ms["watermark"] = (time.perf_counter() - t0) * 1e3

    def _run_nudity(self, rgb: np.ndarray, out: EvidenceResult) -> None:
        from rempart.evidence.nudity import nudity_evidence

        t0 = time.perf_counter()
        detector = self._nudity_detector()
        regions = detector.regions(rgb)
        # Classes, scores and boxes only: crops are never made or kept.
        out.parts["nudity"] = {
            "regions": [r.to_dict() for r in regions],
            "threshold": detector.threshold,
        }
        evidence = nudity_evidence(regions, detector.threshold)
        if evidence:
            out.facts.setdefault("nudity_exposed", []).extend(evidence)
        out.timings_ms["nudity"] = (time.perf_counter() - t0) * 1e3

    def _run_detectors(self, rgb: np.ndarray, out: EvidenceResult) -> None:
        t0 = time.perf_counter()
        scores = [d.score(rgb) for d in self._loaded_detectors()]
        out.parts["detectors"] = [s.to_dict() for s in scores]
        over = [s for s in scores if s.over_threshold]
        if over:
            out.facts.setdefault("generation", []).extend(
                Evidence(f"detector:{s.detector}", round(s.score, 4), s.threshold) for s in over
            )
        out.timings_ms["detectors"] = (time.perf_counter() - t0) * 1e3

    def _run_faces(self, rgb: np.ndarray, out: EvidenceResult, tenant: str) -> None:
        from rempart.store.faces import FaceTemplates, match, parse_key, parse_previous_keys

        t0 = time.perf_counter()
        faces = self._face_analyzer().faces(rgb)
        key = self._settings.face_template_key
        templates = None
        if key is not None:
            from rempart.store.cases import CASES_TENANT

            templates = FaceTemplates(
                self._store,
                parse_key(key.get_secret_value()),
                parse_previous_keys(self._settings.face_template_previous_keys),
            )
            enrolled = templates.load_all(tenant)
            # Victims who enrolled through a case (rempart.cases) are looked for in every
            # tenant's scans; their person ids are opaque and marked ``list: cases``.
            case_people = templates.load_all(CASES_TENANT) if tenant != CASES_TENANT else None
        else:
            out.warnings.append("no face key configured: faces were detected, not matched")
        threshold = self._settings.face_threshold
        shown = []
        for face in faces:
            entry: dict[str, Any] = {"box": list(face.box), "score": round(float(face.score), 3)}
            if templates is not None and face.embedding is not None:
                hits = match(face.embedding, enrolled, threshold)
                entry["matches"] = [
                    {
                        "person": person,
                        "distance": round(d, 4),
                        "threshold": threshold,
                        "note": "a lead for a human reviewer, not an identification",
                    }
                    for person, d in hits
                ]
                if hits:
                    out.facts.setdefault("enrolled_face", []).extend(
                        Evidence("face", round(d, 4), threshold, {"person": p}) for p, d in hits
                    )
                case_hits = match(face.embedding, case_people, threshold) if case_people else []
                entry["matches"] += [
                    {
                        "person": person,
                        "list": "cases",
                        "distance": round(d, 4),
                        "threshold": threshold,
                        "note": "a lead for a human reviewer, not an identification",
                    }
                    for person, d in case_hits
                ]
                if case_hits:
                    out.facts.setdefault("enrolled_face", []).extend(
                        Evidence("face", round(d, 4), threshold, {"person": p, "list": "cases"})
                        for p, d in case_hits
                    )
            shown.append(entry)
        out.parts["faces"] = shown
        out.timings_ms["faces"] = (time.perf_counter() - t0) * 1e3
