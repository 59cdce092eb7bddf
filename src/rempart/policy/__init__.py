"""Policy: signals in, a verdict with its reasons out.

Signals become *facts* (named lists of :class:`Evidence`: what was seen, its value, the
threshold it passed); a :class:`Policy` is an ordered list of declarative rules, each firing
when all the facts it names are present. The most severe action among the rules that fired
wins (block > review > allow); a fact named in a rule's ``unless`` suppresses it (an allow
bank suppresses hash blocks). The verdict keeps every reason -- rule, signal, value,
threshold -- so a reviewer sees why, and "no rule fired" is never presented as "safe".

Rules are written per tenant in TOML (see ``docs/policy.md``); :data:`DEFAULT_POLICY` is
shipped.
"""

from rempart.policy.facts import Evidence, Facts, facts_from_match
from rempart.policy.rules import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_TOML,
    Policy,
    Rule,
    Verdict,
    decide,
    load_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_TOML",
    "Evidence",
    "Facts",
    "Policy",
    "Rule",
    "Verdict",
    "decide",
    "facts_from_match",
    "load_policy",
]
