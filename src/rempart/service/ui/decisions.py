"""What the queue's three buttons do, as library calls (the routes only parse and redirect).

- **confirm**: the scan's hashes go into a block bank the moderator picks (so copies are
  blocked from now on), the matches are labelled true positives (the banks' precision),
  and ``rempart.cases.alerts.confirm_scan`` is told, so a victim whose alerts wait on
  review is alerted;
- **reject**: the matches are labelled false positives (optionally the hashes go into an
  allow bank so the same file stops matching), and ``rempart.cases.alerts.dismiss_scan``
  drops any alert waiting on this review;
- **escalate**: the item moves to the escalated list for an admin.

Confirm and reject delete the item's preview at once: it has done its job.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from rempart.entries import entries_for_values
from rempart.errors import RempartError
from rempart.service.ui.state import UIState
from rempart.store.scans import ScanRecord
from rempart.store.users import UserInfo

log = logging.getLogger("rempart.service.ui")


@dataclass(frozen=True)
class Outcome:
    """What a decision did."""

    decision: str
    bank: str | None = None
    added: int = 0
    alerted: Any = None


def _values(scan: ScanRecord) -> dict[str, list[str]]:
    return {"pdq": [scan.pdq] if scan.pdq else [], "md5": [scan.md5] if scan.md5 else []}


def _bank_of_kind(state: UIState, name: str, tenant: str, kind: str) -> str:
    bank = state.ctx.store.get_bank(name, tenant=tenant)
    if bank.kind != kind:
        raise RempartError(
            f"bank {bank.name!r} is a {bank.kind} bank, not a {kind} bank",
            code=f"not_a_{kind}_bank",
            hint=f"choose a {kind} bank",
        )
    return bank.name


def tell_cases(state: UIState, user: UserInfo, scan_id: str, hook: str) -> Any:
    """Integration point with victims' cases (:mod:`rempart.cases.alerts`).

    ``hook`` is ``confirm_scan`` (after a confirm: alerts waiting on review go out) or
    ``dismiss_scan`` (after a reject: they are dropped, she is never told). The function is
    called with the keyword arguments among ``store``, ``settings``, ``tenant``,
    ``scan_id`` and ``actor`` that it declares. Nothing happens while the cases module does
    not provide it, and its failure never undoes the moderator's decision.
    """
    try:
        from rempart.cases import alerts
    except ImportError:
        return None
    function = getattr(alerts, hook, None)
    if function is None:
        return None
    available = {
        "store": state.ctx.store,
        "settings": state.settings,
        "tenant": user.tenant,
        "scan_id": scan_id,
        "actor": user.actor,
    }
    params = inspect.signature(function).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in available.items() if takes_all or k in params}
    try:
        return function(**kwargs)
    except Exception:
        log.exception("%s for scan %s failed", hook, scan_id)
        return None


def decide(
    state: UIState,
    user: UserInfo,
    scan_id: str,
    decision: str,
    *,
    bank: str | None = None,
    note: str = "",
) -> Outcome:
    """Apply a moderator's decision on a review item (see the module docstring)."""
    tenant = user.tenant
    ctx = state.ctx
    scan = ctx.scans.get(tenant, scan_id)
    if scan.verdict != "review":
        raise RempartError(f"scan {scan_id!r} is not in the review queue", code="not_in_queue")
    earlier = state.queue.decision(tenant, scan_id)
    if earlier is not None and earlier.decision != "escalate":
        # Confirmed and rejected items are done: deciding again would label the matches
        # twice and skew the banks' precision.
        raise RempartError(
            f"this item was already decided ({earlier.decision}, by {earlier.actor})",
            code="already_decided",
        )
    added = 0
    alerted = None
    if decision == "confirm":
        if not bank:
            raise RempartError(
                "confirming needs a block bank", code="no_bank", hint="choose a block bank"
            )
        bank = _bank_of_kind(state, bank, tenant, "block")
        added = ctx.store.add_entries(
            bank, entries_for_values(_values(scan), source=f"review:{scan_id}"), tenant=tenant
        ).added
        ctx.scans.add_feedback(tenant, scan_id, "true_positive", note)
    elif decision == "reject":
        if bank:
            bank = _bank_of_kind(state, bank, tenant, "allow")
            added = ctx.store.add_entries(
                bank, entries_for_values(_values(scan), source=f"feedback:{scan_id}"), tenant=tenant
            ).added
        ctx.scans.add_feedback(tenant, scan_id, "false_positive", note)
    elif decision == "escalate":
        bank = None
    else:
        raise RempartError(f"unknown decision {decision!r}", code="bad_decision")
    state.queue.decide(tenant, scan_id, decision, actor=user.actor, bank=bank, note=note)
    if decision != "escalate":
        state.previews.delete(tenant, scan_id)
    ctx.audit.append(
        tenant=tenant,
        actor=user.actor,
        action=f"ui.review.{decision}",
        target=scan_id,
        # The moderator's own words, for the next reviewer; never image content.
        details={"bank": bank, "added": added, **({"note": note} if note else {})},
    )
    if decision == "confirm":
        alerted = tell_cases(state, user, scan_id, "confirm_scan")
    elif decision == "reject":
        tell_cases(state, user, scan_id, "dismiss_scan")
    return Outcome(decision, bank, added, alerted)
