"""Declarative policy: the shipped rules, custom TOML rules, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rempart.matcher import Match, MatchResult
from rempart.policy import DEFAULT_POLICY, Evidence, decide, load_policy
from rempart.policy.rules import PolicyError


def _m(bank: str, kind: str = "block", distance: int = 4) -> Match:
    return Match(bank, kind, 1, "pdq", distance, 31, "original")


FACE = [Evidence("face", 0.41, 0.6, {"person": "p-17"})]
NUDE = [Evidence("nudity", 0.83, 0.5, {"class": "exposed"})]
GEN = [Evidence("c2pa", "trainedAlgorithmicMedia", None, {"source": "c2pa"})]


def test_block_bank_match_blocks_with_its_reasons() -> None:
    v = decide(MatchResult(matches=[_m("reported", distance=7)]))
    assert v.action == "block"
    (r,) = v.reasons
    assert r["rule"] == "block-bank-match" and r["value"] == 7 and r["threshold"] == 31
    assert r["bank"] == "reported" and r["signal"] == "pdq"


def test_allow_bank_suppresses_and_says_so() -> None:
    v = decide(MatchResult(suppressed=[_m("reported")], allowed=[_m("fp", "allow", 2)]))
    assert v.action == "allow"
    assert any(r["action"] == "suppressed" and r["bank"] == "fp" for r in v.reasons)


def test_no_rule_is_not_called_safe() -> None:
    v = decide(MatchResult())
    assert v.action == "allow" and "not evidence" in v.reasons[0]["detail"]


def test_enrolled_face_with_nudity_is_high_priority_review() -> None:
    v = DEFAULT_POLICY.decide({"enrolled_face": FACE, "nudity_exposed": NUDE})
    assert (v.action, v.priority) == ("review", "high")
    assert {r["fact"] for r in v.reasons} == {"enrolled_face", "nudity_exposed"}
    assert v.to_dict()["priority"] == "high"
    # a face alone, or nudity alone, is no reason to act
    assert DEFAULT_POLICY.decide({"enrolled_face": FACE}).action == "allow"
    assert DEFAULT_POLICY.decide({"nudity_exposed": NUDE}).action == "allow"


def test_generation_with_nudity_is_normal_review_and_block_wins() -> None:
    v = DEFAULT_POLICY.decide({"generation": GEN, "nudity_exposed": NUDE})
    assert (v.action, v.priority) == ("review", "normal")
    both = decide(MatchResult(matches=[_m("r")]), facts={"generation": GEN, "nudity_exposed": NUDE})
    assert both.action == "block" and both.reasons[0]["rule"] == "block-bank-match"
    assert any(r["rule"] == "generated-exposed" for r in both.reasons)


def test_custom_policy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'name = "strict"\n[[rules]]\nname = "any-generation"\nwhen = ["generation"]\n'
        'action = "review"\npriority = "low"\n'
    )
    policy = load_policy(path)
    assert policy.name == "strict"
    v = policy.decide({"generation": GEN})
    assert (v.action, v.priority) == ("review", "low")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rules = 3", "no [[rules]]"),
        ("[[rules]]\nname='a'\nwhen=['x']\naction='delete'", "action must be"),
        ("[[rules]]\nname='a'\nwhen=[]\naction='block'\ncolour='red'", "unknown keys"),
        ("[[rules]]\nname='a'\nwhen=[1]\naction='block'", "list of fact names"),
        ("[[rules]]\nname='a'\nwhen=['x']\naction='review'\npriority='urgent'", "priority"),
        (
            "[[rules]]\nname='a'\nwhen=['x']\naction='block'\n[[rules]]\nname='a'\n"
            "when=['y']\naction='block'",
            "two rules",
        ),
        ("[[rules", "not valid TOML"),
    ],
)
def test_bad_policies_are_explained(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    assert fragment in info.value.message and info.value.code == "bad_policy"
