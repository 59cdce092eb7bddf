"""The HTML report of a batch scan: one self-contained file that opens without a server.

Summary, charts (inline SVG), matches grouped by bank and by case, each flagged item's
signals and the reasons of its verdict, and the errors. No script, no external resource
(a Content-Security-Policy forbids both), and no picture of any item unless the scan was
run with ``--previews`` -- and then only blurred greyscale thumbnails of flagged items.

Matches in the global ``cases`` bank (victims' own hashes, see ``rempart cases``) carry an
opaque entry id; the operator's store says which case each entry belongs to, and the report
groups them by case number (one group per case, however many of her images matched). It
never says who a case belongs to: the store holds no name, and the report shows only numbers.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rempart import __version__
from rempart.batch.rows import flagged
from rempart.store.cases import CASES_BANK  # victims' cases: entries are opaque ids

#: Items shown one by one, and errors listed; beyond, they are counted (all are in the JSONL).
MAX_ITEMS = 5000
MAX_ERRORS = 2000


@dataclass(frozen=True)
class CaseGroups:
    """Which case each entry of the global ``cases`` bank belongs to (numbers only)."""

    #: Id of the global ``cases`` bank.
    bank_id: int | None = None
    numbers: Mapping[int, Sequence[str]] = field(default_factory=dict)

    def of(self, match: Mapping[str, Any]) -> Sequence[str] | None:
        """The case numbers of ``match``: ``None`` when it is not in the global ``cases``
        bank, empty when its entry belongs to no case (withdrawn since)."""
        if match.get("bank") != CASES_BANK:
            return None
        bank_id = match.get("bank_id")
        if bank_id is not None and bank_id != self.bank_id:
            return None
        return self.numbers.get(int(match["entry_id"]), ())


@dataclass
class Tally:
    """Counts over every row, and the rows the report shows one by one."""

    items: int = 0
    ok: int = 0
    errors: int = 0
    matched: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    bank_items: Counter[str] = field(default_factory=Counter)
    distances: Counter[int] = field(default_factory=Counter)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    flagged_total: int = 0
    error_rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> Tally:
        """Count ``rows`` (streamed: only flagged and failed rows are kept, up to caps)."""
        t = cls()
        for row in rows:
            t.add(row)
        t.flagged.sort(key=lambda r: r["key"])
        t.error_rows.sort(key=lambda r: r["key"])
        return t

    def add(self, row: dict[str, Any]) -> None:
        """Count one row."""
        self.items += 1
        self.sources[str(row.get("source", {}).get("kind", "file"))] += 1
        error = row.get("error")
        if error:
            self.errors += 1
            self.error_codes[str(error.get("code", "error"))] += 1
            if len(self.error_rows) < MAX_ERRORS:
                self.error_rows.append(row)
            return
        self.ok += 1
        self.verdicts[str(row.get("verdict", "none"))] += 1
        matches = row.get("matches", [])
        if matches:
            self.matched += 1
        for bank in sorted({m["bank"] for m in matches}):
            self.bank_items[bank] += 1
        for m in matches:
            if m.get("signal") == "pdq":
                self.distances[int(m["distance"])] += 1
        if flagged(row):
            self.flagged_total += 1
            if len(self.flagged) < MAX_ITEMS:
                self.flagged.append(row)

    def summary(self) -> dict[str, Any]:
        """The counts as JSON."""
        return {
            "ok": self.ok,
            "errors": self.errors,
            "matched": self.matched,
            "flagged": self.flagged_total,
            "verdicts": dict(sorted(self.verdicts.items())),
            "items_by_bank": dict(sorted(self.bank_items.items())),
            "error_codes": dict(sorted(self.error_codes.items())),
        }


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def bar_chart(title: str, data: list[tuple[str, int]], *, width: int = 460) -> str:
    """A horizontal bar chart as inline SVG (``<p>`` saying "none" when there is no data)."""
    if not data:
        return f'<figure><figcaption>{_e(title)}</figcaption><p class="muted">none</p></figure>'
    bar_h, gap, label_w = 18, 6, 150
    top = max(v for _, v in data) or 1
    height = len(data) * (bar_h + gap)
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value) in enumerate(data):
        y = i * (bar_h + gap)
        w = max(1, int((width - label_w - 60) * value / top))
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(label[:24])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" rx="2"/>'
            f'<text x="{label_w + w + 4}" y="{y + 13}">{value}</text>'
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{_e(title)}</figcaption>{''.join(parts)}</figure>"


def _source_text(row: dict[str, Any]) -> str:
    s = row.get("source", {})
    kind = s.get("kind")
    if kind == "telegram":
        bits = [
            f"chat {s.get('chat')!s} ({s.get('chat_id')})" if s.get("chat") is not None else "",
            f"message {s.get('message_id')}" if s.get("message_id") is not None else "",
            f"from {s.get('sender')}" if s.get("sender") else "",
            str(s.get("date") or ""),
        ]
        return "Telegram: " + ", ".join(b for b in bits if b)
    if kind in ("zip", "tar"):
        return f"{kind.upper()} {s.get('archive')} → {s.get('member')}"
    return "file"


def _match_rows(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    out = [
        "<table><thead><tr><th>item</th><th>where</th><th>entry</th><th>signal</th>"
        "<th>distance / threshold</th><th>variant</th><th>verdict</th></tr></thead><tbody>"
    ]
    for row, m in rows:
        out.append(
            f'<tr><td><a href="#{_e(_anchor(row))}">{_e(row["path"])}</a></td>'
            f"<td>{_e(_source_text(row))}</td><td>{_e(m.get('entry_id'))}</td>"
            f"<td>{_e(m.get('signal'))}</td>"
            f"<td>{_e(m.get('distance'))} / {_e(m.get('threshold'))}</td>"
            f"<td>{_e(m.get('variant') or '')}</td><td>{_e(row.get('verdict'))}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _anchor(row: dict[str, Any]) -> str:
    return "item-" + hashlib.sha256(row["key"].encode("utf-8", "replace")).hexdigest()[:16]


def _groups(tally: Tally, cases: CaseGroups) -> tuple[str, str]:
    by_bank: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    by_case: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for row in tally.flagged:
        for m in row.get("matches", []):
            by_bank.setdefault(m["bank"], []).append((row, m))
            numbers = cases.of(m)
            if numbers is None:
                continue
            for number in numbers or ("",):  # "": an entry no case holds any more
                by_case.setdefault(number, []).append((row, m))
    banks = [
        f'<section class="group"><h3>Bank {_e(name)} <span class="muted">'
        f"({tally.bank_items[name]} items)</span></h3>{_match_rows(rows)}</section>"
        for name, rows in sorted(by_bank.items())
    ]
    groups = []
    for number, rows in sorted(by_case.items(), key=lambda kv: (kv[0] == "", kv[0])):
        title = f"Case {_e(number)}" if number else "Entries of no open case"
        items = len({r["key"] for r, _ in rows})
        entries = len({m["entry_id"] for _, m in rows})
        groups.append(
            f'<section class="group"><h3>{title} <span class="muted">({items} items, '
            f"{entries} of its entries)</span></h3>{_match_rows(rows)}</section>"
        )
    return (
        "".join(banks) or '<p class="muted">No bank matched.</p>',
        "".join(groups) or f'<p class="muted">No match in the {CASES_BANK!r} bank.</p>',
    )


def _reasons(row: dict[str, Any]) -> str:
    reasons = row.get("reasons", [])
    if not reasons:
        return ""
    out = [
        "<table><thead><tr><th>rule</th><th>action</th><th>fact</th><th>signal</th>"
        "<th>value</th><th>threshold</th><th>detail</th></tr></thead><tbody>"
    ]
    core = {"rule", "action", "fact", "signal", "value", "threshold"}
    for r in reasons:
        detail = {k: v for k, v in r.items() if k not in core}
        out.append(
            f"<tr><td>{_e(r.get('rule'))}</td><td>{_e(r.get('action'))}</td>"
            f"<td>{_e(r.get('fact'))}</td><td>{_e(r.get('signal'))}</td>"
            f"<td>{_e(r.get('value'))}</td><td>{_e(r.get('threshold'))}</td>"
            f"<td>{_e(json.dumps(detail, ensure_ascii=False) if detail else '')}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


_SIGNAL_PARTS = ("provenance", "watermarks", "faces", "detectors", "nudity")


def _signals(row: dict[str, Any]) -> str:
    h = row.get("hashes", {})
    items = [
        f"<li>hashes: {_e(h.get('kind'))} {_e(h.get('format'))}, PDQ quality "
        f"{_e(h.get('pdq_quality'))}, SHA-256 <code>{_e(h.get('sha256'))}</code></li>"
    ]
    for part in _SIGNAL_PARTS:
        if part in row:
            text = json.dumps(row[part], ensure_ascii=False)
            if len(text) > 1500:
                text = text[:1500] + "…"
            items.append(f"<li>{_e(part)}: <code>{_e(text)}</code></li>")
    for w in row.get("warnings", []):
        items.append(f'<li class="muted">warning: {_e(w)}</li>')
    return "<ul>" + "".join(items) + "</ul>"


def _scan_line(row: dict[str, Any]) -> str:
    if not row.get("scan_id"):
        return ""
    return (
        f'<p class="muted">scan record <code>{_e(row["scan_id"])}</code>: '
        f"<code>rempart evidence {_e(row['scan_id'])}</code> packages it with where it was "
        "found</p>"
    )


def _item_card(row: dict[str, Any], previews: dict[str, str] | None) -> str:
    thumb = ""
    if previews is not None and row["key"] in previews:
        thumb = (
            f'<img class="thumb" alt="blurred greyscale preview" width="64" '
            f'src="{_e(previews[row["key"]])}">'
        )
    verdict = row.get("verdict")
    priority = f" ({_e(row.get('priority'))} priority)" if row.get("priority") else ""
    return (
        f'<article class="item" id="{_e(_anchor(row))}">{thumb}'
        f"<h3>{_e(row['path'])}</h3>"
        f'<p><span class="verdict v-{_e(verdict)}">{_e(verdict)}</span>{priority} · '
        f"{_e(_source_text(row))}</p>{_scan_line(row)}"
        f"{_signals(row)}{_reasons(row)}</article>"
    )


def _errors(tally: Tally) -> str:
    if not tally.error_rows:
        return '<p class="muted">No errors.</p>'
    out = ["<table><thead><tr><th>item</th><th>code</th><th>message</th></tr></thead><tbody>"]
    for row in tally.error_rows:
        e = row.get("error", {})
        out.append(
            f"<tr><td>{_e(row.get('path'))}</td><td>{_e(e.get('code'))}</td>"
            f"<td>{_e(e.get('message'))}</td></tr>"
        )
    out.append("</tbody></table>")
    if tally.errors > len(tally.error_rows):
        out.append(
            f'<p class="muted">{tally.errors - len(tally.error_rows)} more in the JSONL.</p>'
        )
    return "".join(out)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
.note{background:#fff6d6;border:1px solid #e6cf7a;padding:.6rem .8rem;border-radius:4px}
.muted{color:#777}table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}
th,td{border:1px solid #ddd;padding:.25rem .4rem;text-align:left;vertical-align:top;
word-break:break-word}th{background:#f4f4f4}code{font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}figure{margin:0}figcaption{font-weight:600}
svg text{font:12px system-ui,sans-serif;fill:#333}svg rect{fill:#4a6fa5}
.item{border:1px solid #ddd;border-radius:4px;padding:.5rem .8rem;margin:.8rem 0;overflow:auto}
.item h3{margin:.2rem 0;font-size:15px;word-break:break-all}.thumb{float:right;margin-left:1rem}
.verdict{font-weight:700;padding:0 .4rem;border-radius:3px;background:#eee}
.v-block{background:#f4c7c3}.v-review{background:#fce8b2}.v-allow{background:#d9ead3}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dt{font-weight:600}
"""


def render(
    tally: Tally,
    options: dict[str, Any],
    previews: dict[str, str] | None,
    cases: CaseGroups | None = None,
) -> str:
    """The report as one HTML document."""
    banks_html, cases_html = _groups(tally, cases or CaseGroups())
    verdicts = sorted(tally.verdicts.items(), key=lambda kv: -kv[1])
    charts = "".join(
        [
            bar_chart("Verdicts", verdicts),
            bar_chart("Items by source", sorted(tally.sources.items(), key=lambda kv: -kv[1])),
            bar_chart("Items matched, by bank", sorted(tally.bank_items.items())),
            bar_chart(
                "PDQ distance of matches", [(str(d), n) for d, n in sorted(tally.distances.items())]
            ),
            bar_chart("Errors by code", sorted(tally.error_codes.items(), key=lambda kv: -kv[1])),
        ]
    )
    summary = [
        ("items", tally.items),
        ("scanned", tally.ok),
        ("errors", tally.errors),
        ("items with a bank match", tally.matched),
        ("items flagged for review", tally.flagged_total),
        ("banks", ", ".join(options.get("banks") or ["all enabled"])),
        ("signals", ", ".join(options.get("signals") or ["hashes"])),
        ("policy", options.get("policy")),
        ("tenant", options.get("tenant")),
        ("report written", datetime.now(UTC).isoformat(timespec="seconds")),
        ("Rempart", __version__),
    ]
    cards = "".join(_item_card(r, previews) for r in tally.flagged)
    more = tally.flagged_total - len(tally.flagged)
    if more > 0:
        cards += f'<p class="muted">{more} more flagged items are in results.jsonl.</p>'
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="referrer" content="no-referrer">
<title>Rempart batch scan report</title><style>{_CSS}</style></head>
<body>
<h1>Rempart batch scan</h1>
<p class="note">A match is a <strong>lead for a human to review</strong>, never an
identification. A verdict of <em>allow</em> means no rule fired, not that an item is
harmless; no evidence of generation never means authentic.</p>
<h2>Summary</h2>
<dl>{"".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary)}</dl>
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>Matches by bank</h2>{banks_html}
<h2>Matches by case</h2>
<p class="muted">Matches in the global {CASES_BANK!r} bank of victims' cases, one group per
case number (from this operator's store). The report never names the person behind a
case.</p>{cases_html}
<h2>Flagged items</h2>
<p class="muted">Items with a bank match, a verdict other than allow, or evidence of
generation, with their signals and the reasons of their verdict. Every item is in
results.jsonl and results.csv.</p>{cards or '<p class="muted">None.</p>'}
<h2>Errors</h2>{_errors(tally)}
</body></html>
"""


def write_report(
    path: Path,
    tally: Tally,
    options: dict[str, Any],
    previews: dict[str, str] | None = None,
    cases: CaseGroups | None = None,
) -> None:
    """Write the report to ``path`` (previews only when given: ``--previews``)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(tally, options, previews, cases), encoding="utf-8")
    tmp.replace(path)
