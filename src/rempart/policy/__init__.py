"""Policy: signals in, a verdict with its reasons out.

This is the shipped default for hash matching; declarative per-tenant rules come with the
evidence signals. The verdict keeps every reason -- rule, signal, value, threshold -- so a
reviewer sees why, and "no match" is never presented as "safe".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rempart.matcher import MatchResult

Action = Literal["block", "review", "allow"]


@dataclass(frozen=True)
class Verdict:
    """What to do with an upload, and why."""

    action: Action
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: ``{"verdict": ..., "reasons": [...]}``."""
        return {"verdict": self.action, "reasons": list(self.reasons)}


def decide(match: MatchResult) -> Verdict:
    """The default rules: a block-bank match blocks; an allow-bank match suppresses it."""
    if match.matches:
        return Verdict(
            "block",
            [
                {
                    "rule": "block-bank-match",
                    "bank": m.bank,
                    "signal": m.signal,
                    "value": m.distance,
                    "threshold": m.threshold,
                    "variant": m.variant,
                }
                for m in match.matches
            ],
        )
    if match.allowed:
        return Verdict(
            "allow",
            [
                {
                    "rule": "allow-bank-match",
                    "bank": m.bank,
                    "signal": m.signal,
                    "value": m.distance,
                    "threshold": m.threshold,
                }
                for m in match.allowed
            ],
        )
    return Verdict(
        "allow",
        [
            {
                "rule": "no-match",
                "detail": "no bank matched; this is not evidence that the image is harmless",
            }
        ],
    )
