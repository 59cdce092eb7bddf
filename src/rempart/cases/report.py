"""The human-readable report of an evidence package: HTML (Jinja2) and PDF (reportlab).

Both are drawn from the same *view* of the manifest (:func:`report_view`), with the texts of
``cases/data/report.toml`` in English or French, so the two documents always say the same
thing. Neither contains an image. The PDF is built with reportlab's ``invariant`` mode (no
creation date or random document id inside), so the same manifest gives the same bytes.
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from rempart.cases.help import check_lang

_DATA = "data"
_TEMPLATE = "evidence_report.html.j2"


@cache
def strings(lang: str) -> dict[str, Any]:
    """The report's texts in ``lang`` (``en`` or ``fr``)."""
    chosen = check_lang(lang)
    text = resources.files("rempart.cases").joinpath(f"{_DATA}/report.toml").read_text("utf-8")
    table: dict[str, Any] = tomllib.loads(text)[chosen]
    return table


@cache
def _environment() -> jinja2.Environment:
    folder = Path(str(resources.files("rempart.cases").joinpath(_DATA)))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _day(iso: str | None) -> str:
    if not iso:
        return "-"
    return iso.replace("T", " ").replace("Z", " UTC")


def _fmt(template: str, **values: Any) -> str:
    return template.format(**{k: ("-" if v is None else v) for k, v in values.items()})


def _match_line(m: Mapping[str, Any], t: Mapping[str, Any]) -> str:
    signal = m.get("signal")
    common = {"entry": m.get("entry_id"), "bank": m.get("bank")}
    if signal in ("md5", "sha256"):
        return _fmt(t["match_exact"], signal=str(signal).upper(), **common)
    if signal == "vpdq":
        return _fmt(t["match_vpdq"], share=m.get("share"), **common)
    return _fmt(
        t["match_pdq"],
        variant=m.get("variant") or "original",
        distance=m.get("distance"),
        threshold=m.get("threshold"),
        **common,
    )


def _signal_lines(signals: Mapping[str, Any], t: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for face in signals.get("faces", []):
        for hit in face.get("enrolled_matches", []):
            lines.append(
                _fmt(t["face"], distance=hit.get("distance"), threshold=hit.get("threshold"))
            )
    for f in (signals.get("provenance") or {}).get("findings", []):
        lines.append(
            _fmt(
                t["provenance"],
                source=f.get("source"),
                strength=f.get("strength"),
                summary=f.get("summary"),
            )
        )
    for w in signals.get("watermarks", []):
        lines.append(
            _fmt(
                t["watermark"],
                source=w.get("source"),
                band=w.get("band"),
                matched=w.get("matched_bits"),
                total=w.get("total_bits"),
            )
        )
    for d in signals.get("detectors", []):
        lines.append(
            _fmt(
                t["detector"],
                detector=d.get("detector"),
                score=d.get("score"),
                threshold=d.get("threshold"),
            )
        )
    nudity = signals.get("nudity")
    if isinstance(nudity, dict) and nudity.get("regions"):
        classes = ", ".join(f"{r.get('class')} {r.get('score')}" for r in nudity["regions"][:10])
        lines.append(_fmt(t["nudity"], classes=classes, threshold=nudity.get("threshold")))
    return lines


def report_view(document: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the templates show, computed once (pure)."""
    t = strings(str(document.get("lang", "en")))
    items = list(document.get("items", []))
    rows = []
    for n, item in enumerate(items, 1):
        matches = item.get("matches", [])
        best = min(
            (m for m in matches if m.get("distance") is not None),
            key=lambda m: m["distance"],
            default=None,
        )
        short = "-"
        if best is not None:
            short = f"{best.get('signal')} {best.get('distance')}/{best.get('threshold')}"
        found = item.get("found", {})
        rows.append(
            {
                "n": n,
                "item": item,
                "url": found.get("url") or t["no_url"],
                "platform": found.get("platform") or "-",
                "content_id": found.get("content_id") or "-",
                "location": _location(found, t),
                "first_seen": _day(item.get("first_seen")),
                "scanned_at": _day(item.get("scanned_at")),
                "match": short,
                "verdict": (item.get("verdict") or {}).get("action", "-"),
                "how": [_match_line(m, t) for m in matches] or [t["no_match"]],
                "signals": _signal_lines(item.get("signals", {}), t) or [t["no_signal"]],
                "hashes": [(k, v) for k, v in (item.get("hashes") or {}).items() if v],
                "alerts": item.get("alerts", []),
            }
        )
    seen = sorted(i.get("first_seen") for i in items if i.get("first_seen"))
    platforms = {(i.get("found") or {}).get("platform") for i in items}
    case = document.get("case")
    return {
        "t": t,
        "lang": document.get("lang", "en"),
        "doc": document,
        "case": case,
        "case_opened": _day(case.get("opened_at")) if case else None,
        "generated": _day(document.get("generated_at")),
        "fingerprint": (document.get("issuer") or {}).get("key_fingerprint", "-"),
        "summary": _fmt(
            t["summary_text"],
            items=len(items),
            platforms=len(platforms),
            first=_day(seen[0]) if seen else t["none"],
            last=_day(seen[-1]) if seen else t["none"],
        ),
        "rows": rows,
        "help": document.get("help", []),
        "footer": _fmt(t["footer"], generator=document.get("generator", "rempart")),
    }


#: Where a batch scan found an item (a file, an archive member, a Telegram message), in the
#: order a reader wants it; see rempart.cases.evidence.item_for_scan.
_LOCATION_FIELDS = (
    *("export", "chat", "chat_id", "message_id", "sender", "date"),
    *("archive", "member", "path", "note"),
)


def _location(found: Mapping[str, Any], t: Mapping[str, str]) -> str:
    """``found``'s batch provenance as one line ("chat: X · message: 12 · ..."), or ""."""
    parts = [f"{t['loc_' + k]}: {found[k]}" for k in _LOCATION_FIELDS if found.get(k)]
    return " · ".join(parts)


def render_html(document: Mapping[str, Any]) -> str:
    """The report as a self-contained HTML page (no scripts, no remote resources)."""
    return _environment().get_template(_TEMPLATE).render(**report_view(document))


# -- PDF ------------------------------------------------------------------------------------------


@cache
def _fonts() -> tuple[str, str]:
    """Bitstream Vera (shipped with reportlab): covers French accents and typographic marks
    that the 14 standard PDF fonts render poorly."""
    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    folder = Path(reportlab.__file__).parent / "fonts"
    try:
        pdfmetrics.registerFont(TTFont("RempartSans", str(folder / "Vera.ttf")))
        pdfmetrics.registerFont(TTFont("RempartSans-Bold", str(folder / "VeraBd.ttf")))
    except Exception:  # reportlab packaged without its fonts: fall back to Helvetica
        return "Helvetica", "Helvetica-Bold"
    return "RempartSans", "RempartSans-Bold"


def render_pdf(document: Mapping[str, Any]) -> bytes:
    """The report as an A4 PDF."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    view = report_view(document)
    t = view["t"]
    regular, bold = _fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=9, leading=12, alignment=TA_LEFT)
    small = ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5)
    mono = ParagraphStyle("mono", parent=small, fontName="Courier", fontSize=7, leading=9)
    h1 = ParagraphStyle("h1", parent=base, fontName=bold, fontSize=17, leading=21, spaceAfter=2)
    h2 = ParagraphStyle(
        "h2", parent=base, fontName=bold, fontSize=12, leading=15, spaceBefore=9, spaceAfter=4
    )
    h3 = ParagraphStyle("h3", parent=base, fontName=bold, fontSize=10, leading=13, spaceBefore=6)
    banner = ParagraphStyle(
        "banner",
        parent=base,
        fontName=bold,
        backColor=colors.HexColor("#fff4d6"),
        borderColor=colors.HexColor("#c98a00"),
        borderWidth=0.8,
        borderPadding=5,
        spaceBefore=6,
        spaceAfter=8,
    )

    def p(text: Any, style: ParagraphStyle = base) -> Paragraph:
        return Paragraph(escape(str(text)), style)

    def bullets(lines: list[str], style: ParagraphStyle = base) -> list[Any]:
        return [Paragraph("• " + escape(str(line)), style) for line in lines]

    story: list[Any] = [p(t["title"], h1), p(t["subtitle"])]
    meta = f"{t['generated_at']}: {view['generated']} · {t['issuer']}: {view['fingerprint']}"
    story.append(p(meta, small))
    if view["case"]:
        case = view["case"]
        story.append(
            p(
                f"{t['case']} {case.get('number')} · {t['case_status']}: "
                f"{case.get('status') or '-'} · {t['opened']}: {view['case_opened'] or '-'}",
                small,
            )
        )
    story += [p(t["lead_banner"], banner), p(t["summary"], h2), p(view["summary"])]

    story.append(p(t["items_title"], h2))
    header = [t["col_n"], t["col_where"], t["col_platform"], t["col_first_seen"], t["col_match"]]
    data: list[list[Any]] = [[p(h, small) for h in header]]
    for row in view["rows"]:
        data.append(
            [
                p(row["n"], small),
                p(row["url"], small),
                p(row["platform"], small),
                p(row["first_seen"], small),
                p(row["match"], small),
            ]
        )
    table = Table(data, colWidths=[9 * mm, 80 * mm, 28 * mm, 32 * mm, 25 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8ee")),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9a9aa6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story.append(table)

    for row in view["rows"]:
        block: list[Any] = [p(f"{t['item']} {row['n']}", h3)]
        block.append(p(f"{t['col_where']}: {row['url']}", small))
        if row["location"]:
            block.append(p(f"{t['location']}: {row['location']}", small))
        block.append(
            p(
                f"{t['col_platform']}: {row['platform']} · {t['col_content']}: "
                f"{row['content_id']} · {t['scan_id']}: {row['item'].get('scan_id')}",
                small,
            )
        )
        block.append(
            p(
                f"{t['col_first_seen']}: {row['first_seen']} · {t['scanned_at']}: "
                f"{row['scanned_at']} · {t['col_verdict']}: {row['verdict']}",
                small,
            )
        )
        block += [p(f"{k.upper()}: {v}", mono) for k, v in row["hashes"]]
        block.append(p(t["how"], small))
        block += bullets(row["how"], small)
        block.append(p(t["signals"], small))
        block += bullets(row["signals"], small)
        if row["alerts"]:
            block.append(p(t["alerts"], small))
            block += bullets(
                [f"{a.get('at')} · {a.get('kind')} · {a.get('status')}" for a in row["alerts"]],
                small,
            )
        story.append(KeepTogether(block))

    story.append(p(t["method"], h2))
    story += [p(line) for line in t["method_text"]]
    story.append(p(t["proves"], h2))
    story += bullets(t["proves_list"])
    story.append(p(t["limitations"], h2))
    story += bullets(t["limitations_list"])
    story.append(p(t["help"], h2))
    for entry in view["help"]:
        title = entry["name"] + (f" · {t['phone']} {entry['phone']}" if entry.get("phone") else "")
        story.append(
            KeepTogether([p(title, h3), p(entry["description"], small), p(entry["url"], small)])
        )
    story.append(p(t["verify"], h2))
    story.append(p(t["verify_text"]))
    story.append(Spacer(1, 6 * mm))
    story.append(p(view["footer"], small))

    def page_footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7)
        canvas.drawString(18 * mm, 10 * mm, t["page_note"])
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"{t['page']} {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    pdf = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=t["title"],
        author=str(document.get("generator", "rempart")),
        lang=str(view["lang"]),
        invariant=1,
    )
    pdf.build(story, onFirstPage=page_footer, onLaterPages=page_footer)
    return buf.getvalue()
