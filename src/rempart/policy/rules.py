"""Declarative rules and their evaluation."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rempart.errors import RempartError
from rempart.matcher import MatchResult
from rempart.policy.facts import Facts, facts_from_match

Action = Literal["block", "review", "allow"]
_SEVERITY: dict[str, int] = {"allow": 0, "review": 1, "block": 2}
_PRIORITIES = ("low", "normal", "high")


class PolicyError(RempartError):
    """A policy file is not valid (``bad_policy``)."""

    code = "bad_policy"
    status = 422


@dataclass(frozen=True)
class Rule:
    """Fires when every fact in ``when`` holds and none in ``unless`` does."""

    name: str
    when: tuple[str, ...]
    action: Action
    priority: str = "normal"
    unless: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Verdict:
    """What to do with an upload, and why."""

    action: Action
    priority: str | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: ``{"verdict", "priority", "reasons"}`` (priority only for review)."""
        out: dict[str, Any] = {"verdict": self.action, "reasons": list(self.reasons)}
        if self.action == "review":
            out["priority"] = self.priority
        return out


@dataclass(frozen=True)
class Policy:
    """An ordered list of rules; the most severe action among those that fire wins.

    ``alert_after_review`` is the tenant's choice for victims' case alerts (``[alerts]
    after_review`` in the file): ``True``, an alert raised by this tenant's scans waits for
    one of its moderators to confirm the scan; ``False``, it goes out at once; ``None``
    (not said), the service's ``cases.alert_after_review`` decides.
    """

    rules: tuple[Rule, ...]
    name: str = "custom"
    alert_after_review: bool | None = None

    def decide(self, facts: Facts) -> Verdict:
        """The verdict for ``facts``, with a reason per piece of evidence of each rule fired."""
        fired: list[Rule] = []
        suppressed: list[Rule] = []
        for rule in self.rules:
            if all(facts.get(f) for f in rule.when):
                if any(facts.get(f) for f in rule.unless):
                    suppressed.append(rule)
                else:
                    fired.append(rule)
        reasons: list[dict[str, Any]] = []
        for rule in fired:
            for fact in rule.when:
                for ev in facts[fact]:
                    reasons.append(
                        {"rule": rule.name, "action": rule.action, "fact": fact, **ev.to_dict()}
                    )
        for rule in suppressed:
            for fact in rule.unless:
                for ev in facts.get(fact, []):
                    reasons.append(
                        {"rule": rule.name, "action": "suppressed", "fact": fact, **ev.to_dict()}
                    )
        if not fired:
            reasons.append(
                {
                    "rule": "no-rule-fired",
                    "action": "allow",
                    "detail": "no rule fired; this is not evidence that the image is harmless",
                }
            )
            return Verdict("allow", None, reasons)
        top = max(fired, key=lambda r: _SEVERITY[r.action])
        priority = None
        if top.action == "review":
            reviews = [r for r in fired if r.action == "review"]
            priority = max((r.priority for r in reviews), key=_PRIORITIES.index)
        # Reasons of the deciding action first.
        reasons.sort(key=lambda r: -_SEVERITY.get(str(r.get("action")), -1))
        return Verdict(top.action, priority, reasons)


DEFAULT_POLICY_TOML = """\
# Rempart's shipped policy. Facts: hash_match, allow_match, enrolled_face, nudity_exposed,
# generation. The most severe action of the rules that fire wins.

[[rules]]
name = "block-bank-match"
description = "A copy of an image in a block bank."
when = ["hash_match"]
unless = ["allow_match"]
action = "block"

[[rules]]
name = "enrolled-person-exposed"
description = "The face of a person who enrolled for protection, with exposed nudity."
when = ["enrolled_face", "nudity_exposed"]
action = "review"
priority = "high"

[[rules]]
name = "generated-exposed"
description = "Evidence that the image was generated, with exposed nudity."
when = ["generation", "nudity_exposed"]
action = "review"
priority = "normal"
"""

_KNOWN_KEYS = {"name", "description", "when", "unless", "action", "priority"}
_ALERT_KEYS = {"after_review"}


def _alerts(doc: dict[str, Any]) -> bool | None:
    """``[alerts] after_review`` of a policy document (``None`` when not given)."""
    raw = doc.get("alerts")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PolicyError("alerts must be a table", hint="[alerts]\nafter_review = true")
    unknown = set(raw) - _ALERT_KEYS
    if unknown:
        raise PolicyError(
            f"[alerts] has unknown keys: {', '.join(sorted(unknown))}",
            hint="the only key is after_review = true or false",
        )
    value = raw.get("after_review")
    if value is not None and not isinstance(value, bool):
        raise PolicyError("[alerts] after_review must be true or false", hint=f"got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(
            f"{where} must be a list of fact names", hint='e.g. when = ["hash_match"]'
        )
    return tuple(value)


def load_policy(source: str | Path, *, name: str | None = None) -> Policy:
    """A policy from TOML text or a TOML file; PolicyError says what is wrong and where."""
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(
            f"the policy is not valid TOML: {e}", hint="see docs/policy.md for the format"
        ) from None
    raw = doc.get("rules")
    if not isinstance(raw, list) or not raw:
        raise PolicyError("the policy has no [[rules]]", hint="see docs/policy.md")
    rules = []
    seen: set[str] = set()
    for i, r in enumerate(raw, 1):
        where = f"rule {i}"
        if not isinstance(r, dict):
            raise PolicyError(f"{where} is not a table")
        unknown = set(r) - _KNOWN_KEYS
        if unknown:
            raise PolicyError(
                f"{where} has unknown keys: {', '.join(sorted(unknown))}",
                hint=f"keys are: {', '.join(sorted(_KNOWN_KEYS))}",
            )
        rname = r.get("name")
        if not isinstance(rname, str) or not rname:
            raise PolicyError(f"{where} needs a name")
        if rname in seen:
            raise PolicyError(f"two rules are called {rname!r}")
        seen.add(rname)
        action = r.get("action")
        if action not in _SEVERITY:
            raise PolicyError(
                f"rule {rname!r}: action must be block, review or allow", hint=f"got {action!r}"
            )
        priority = r.get("priority", "normal")
        if priority not in _PRIORITIES:
            raise PolicyError(f"rule {rname!r}: priority must be low, normal or high")
        rules.append(
            Rule(
                rname,
                _strings(r.get("when"), f"rule {rname!r}: when"),
                action,
                priority,
                _strings(r.get("unless", []), f"rule {rname!r}: unless") if r.get("unless") else (),
                str(r.get("description", "")),
            )
        )
    return Policy(tuple(rules), name or str(doc.get("name", "custom")), _alerts(doc))


DEFAULT_POLICY = load_policy(DEFAULT_POLICY_TOML, name="default")


def decide(
    match: MatchResult, policy: Policy = DEFAULT_POLICY, facts: Facts | None = None
) -> Verdict:
    """The verdict for a scan's hash matches (plus any other ``facts``) under ``policy``."""
    all_facts = facts_from_match(match)
    for k, v in (facts or {}).items():
        all_facts.setdefault(k, []).extend(v)
    return policy.decide(all_facts)
