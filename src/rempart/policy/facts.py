"""Facts: what the signals found, in the shape rules reason about.

Fact names used by the shipped policy:

- ``hash_match``: a match in a block bank (value: distance, threshold: the bank's);
- ``allow_match``: a match in an allow bank (known false positive);
- ``enrolled_face``: the face of a person who enrolled for protection (a lead);
- ``nudity_exposed``: a nudity region classed as exposed, over its score threshold;
- ``generation``: evidence that the image was generated (provenance, watermark, detector).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rempart.matcher import MatchResult


@dataclass(frozen=True)
class Evidence:
    """One observation behind a fact."""

    signal: str
    value: float | int | str | None
    threshold: float | int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used in a verdict's reasons."""
        out: dict[str, Any] = {
            "signal": self.signal,
            "value": self.value,
            "threshold": self.threshold,
        }
        out.update(self.detail)
        return out


#: Fact name -> the evidence for it (absent or empty: the fact does not hold).
Facts = dict[str, list[Evidence]]


def facts_from_match(match: MatchResult) -> Facts:
    """The hash-matching facts of a scan."""
    facts: Facts = {}
    blocked = match.matches or match.suppressed
    if blocked:
        facts["hash_match"] = [
            Evidence(
                m.signal,
                m.distance,
                m.threshold,
                {"bank": m.bank, "entry_id": m.entry_id, "variant": m.variant},
            )
            for m in blocked
        ]
    if match.allowed:
        facts["allow_match"] = [
            Evidence(m.signal, m.distance, m.threshold, {"bank": m.bank, "entry_id": m.entry_id})
            for m in match.allowed
        ]
    return facts
