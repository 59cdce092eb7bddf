"""The dashboard: matches per day by bank, verdict mix, queue age, precision from feedback."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rempart.service.ui.charts import VERDICT_COLOURS, hbars, stacked_bars
from rempart.service.ui.i18n import Translator
from rempart.service.ui.render import render, translator
from rempart.service.ui.security import Session, State

router = APIRouter()

DAYS: Final = 14
#: Queue age buckets: (upper bound, catalogue key).
AGE_BUCKETS: Final = (
    (timedelta(hours=1), "age.lt1h"),
    (timedelta(hours=6), "age.lt6h"),
    (timedelta(hours=24), "age.lt24h"),
    (timedelta(days=3), "age.lt3d"),
    (timedelta.max, "age.more"),
)


def figures(state: State, tenant: str, t: Translator) -> dict[str, Any]:
    """The numbers and charts of the dashboard."""
    now = datetime.now(UTC)
    since = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = state.queue.matches_per_day(tenant, since)
    days = [(since + timedelta(days=i)).date().isoformat() for i in range(DAYS)]
    banks = sorted({b for c in per_day.values() for b in c})
    series = {b: [per_day.get(d, Counter()).get(b, 0) for d in days] for b in banks}
    verdicts = state.queue.verdict_mix(tenant, now - timedelta(days=30))
    # Counted by the database over the whole queue (no page of it): the numbers stay true
    # however long the queue grows.
    queue_size = state.queue.count(tenant)
    oldest = state.queue.oldest(tenant)
    bounds = [bound for bound, _ in AGE_BUCKETS[:-1]]
    ages = dict(
        zip((key for _, key in AGE_BUCKETS), state.queue.ages(tenant, bounds, now), strict=True)
    )
    bank_list = state.ctx.store.list_banks(tenant=tenant)
    precision = state.ctx.scans.precision([b.id for b in bank_list])
    prec_rows = []
    for b in bank_list:
        p = precision.get(b.id)
        if p and p.precision is not None:
            prec_rows.append(
                (
                    b.name,
                    p.precision,
                    f"{p.precision * 100:.0f} % ({p.true_positives}/"
                    f"{p.true_positives + p.false_positives})",
                )
            )
    verdict_rows = [
        (v, float(verdicts.get(v, 0)), str(verdicts.get(v, 0))) for v in VERDICT_COLOURS
    ]
    age_rows = [(t(key), float(ages.get(key, 0)), str(ages.get(key, 0))) for _, key in AGE_BUCKETS]
    return {
        "days": days,
        "series": series,
        "verdicts": verdict_rows,
        "ages": age_rows,
        "precision": prec_rows,
        "queue_size": queue_size,
        "oldest": None if oldest is None else now - oldest,
        "charts": {
            "matches": stacked_bars(
                days,
                series,
                title=t("dash.matches"),
                desc=t("dash.matches.desc", days=DAYS),
            ),
            "verdicts": hbars(
                verdict_rows,
                title=t("dash.verdicts"),
                desc=t("dash.verdicts.desc"),
                colours=VERDICT_COLOURS,
            ),
            "ages": hbars(age_rows, title=t("dash.ages"), desc=t("dash.ages.desc")),
            "precision": hbars(
                prec_rows, title=t("dash.precision"), desc=t("dash.precision.desc"), maximum=1.0
            ),
        },
    }


@router.get("/dashboard", include_in_schema=False)
async def dashboard(request: Request, state: State, viewer: Session) -> Response:
    """Charts of the tenant's recent activity."""
    t = translator(request)
    data = await run_in_threadpool(figures, state, viewer.user.tenant, t)
    return render(request, "dashboard.html", data=data)
