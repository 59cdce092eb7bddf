"""What the queue's three buttons do, as library calls (the routes only parse and redirect).

- **confirm**: the scan's hashes go into a block bank the moderator picks (so copies are
  blocked from now on), the matches are labelled true positives (the banks' precision),
  and :func:`rempart.cases.alerts.confirm_scan` makes a victim's alerts that waited on this
  review active;
- **reject**: the matches are labelled false positives (optionally the hashes go into an
  allow bank so the same file stops matching), and
  :func:`rempart.cases.alerts.dismiss_scan` drops any alert waiting on this review;
- **escalate**: the item moves to the escalated list for an admin.

The decision is claimed first, atomically (:meth:`ReviewQueue.decide`): of two moderators
deciding the same item at once, exactly one wins and the other changes nothing, so the
matches are never labelled twice. If what follows the claim fails, the claim is taken back
and the item returns to the queue. Confirm and reject delete the item's preview at once: it
has done its job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rempart.cases.alerts import confirm_scan, dismiss_scan
from rempart.entries import entries_for_values
from rempart.errors import RempartError
from rempart.service.ui.state import UIState
from rempart.store.reviews import DECISIONS
from rempart.store.scans import ScanRecord
from rempart.store.users import UserInfo

log = logging.getLogger("rempart.service.ui")


@dataclass(frozen=True)
class Outcome:
    """What a decision did."""

    decision: str
    bank: str | None = None
    added: int = 0
    #: Alerts of victims' cases made active (confirm) or dropped (reject); None when
    #: telling the cases failed (logged; the decision stands).
    alerts: int | None = 0


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


def tell_cases(state: UIState, tenant: str, scan_id: str, decision: str) -> int | None:
    """Tell victims' cases (:mod:`rempart.cases.alerts`) about a decision: after a confirm
    the alerts waiting on this review go out, after a reject they are dropped (she is never
    told). Returns how many alerts changed; a failure is logged and returns None -- it never
    undoes the moderator's decision, and the alerts stay waiting for the next try."""
    try:
        if decision == "confirm":
            return confirm_scan(state.ctx.store, state.settings, tenant, scan_id)
        return dismiss_scan(state.ctx.store, tenant, scan_id)
    except Exception:
        log.exception("telling victims' cases of the %s of scan %s failed", decision, scan_id)
        return None


def _check(
    state: UIState, tenant: str, scan: ScanRecord, decision: str, bank: str | None
) -> str | None:
    """Refuse a decision that cannot be applied, before anything is written; the bank."""
    if scan.verdict != "review":
        raise RempartError(f"scan {scan.id!r} is not in the review queue", code="not_in_queue")
    if decision not in DECISIONS:
        raise RempartError(f"unknown decision {decision!r}", code="bad_decision")
    if decision == "confirm":
        if not bank:
            raise RempartError(
                "confirming needs a block bank", code="no_bank", hint="choose a block bank"
            )
        return _bank_of_kind(state, bank, tenant, "block")
    if decision == "reject" and bank:
        return _bank_of_kind(state, bank, tenant, "allow")
    return None


def _apply(
    state: UIState, tenant: str, scan: ScanRecord, decision: str, bank: str | None, note: str
) -> int:
    """The bank entries and labels of a claimed decision; how many entries were added.

    Entries first: if labelling then fails, the claim is undone and a retry adds nothing
    twice (an entry already in the bank is a duplicate), whereas labels would be doubled.
    """
    ctx = state.ctx
    added = 0
    if bank:
        source = f"review:{scan.id}" if decision == "confirm" else f"feedback:{scan.id}"
        added = ctx.store.add_entries(
            bank, entries_for_values(_values(scan), source=source), tenant=tenant
        ).added
    if decision in ("confirm", "reject"):
        label = "true_positive" if decision == "confirm" else "false_positive"
        ctx.scans.add_feedback(tenant, scan.id, label, note)
    return added


def decide(
    state: UIState,
    user: UserInfo,
    scan_id: str,
    decision: str,
    *,
    bank: str | None = None,
    note: str = "",
) -> Outcome:
    """Apply a moderator's decision on a review item (see the module docstring).

    Raises :class:`~rempart.store.reviews.AlreadyDecided` (``already_decided``) when the
    item was decided before, or by someone else in the meantime.
    """
    tenant = user.tenant
    ctx = state.ctx
    scan = ctx.scans.get(tenant, scan_id)
    bank = _check(state, tenant, scan, decision, bank)
    earlier = state.queue.decision(tenant, scan_id)
    claimed = state.queue.decide(tenant, scan_id, decision, actor=user.actor, bank=bank, note=note)
    try:
        added = _apply(state, tenant, scan, decision, bank, note)
    except BaseException:
        state.queue.undo(tenant, claimed, earlier)
        raise
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
    alerts: int | None = 0
    if decision != "escalate":
        alerts = tell_cases(state, tenant, scan_id, decision)
    return Outcome(decision, bank, added, alerts)
