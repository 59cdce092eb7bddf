"""Result rows: what one item's scan gave, as JSON (the record) and as a CSV line.

A row is ``{"key", "path", "source", ...}`` plus either the :class:`~rempart.scan.ScanResult`
JSON that ``rempart scan`` prints for one file (hashes, ``matches``, evidence, ``verdict``,
``reasons``) or an ``error`` ``{code, message}``.
"""

from __future__ import annotations

import json
from typing import Any

CSV_FIELDS = [
    "key",
    "path",
    "source_kind",
    "archive",
    "member",
    "chat",
    "chat_id",
    "message_id",
    "sender",
    "date",
    "kind",
    "pdq",
    "pdq_quality",
    "md5",
    "sha256",
    "matches",
    "verdict",
    "priority",
    "rules",
    "error_code",
    "error_message",
    "scan_id",
]
#: A spreadsheet reads a cell starting with one of these as a formula (``=HYPERLINK(...)``,
#: ``@SUM(...)``, ``+cmd|...``): member names, chat names and senders are untrusted, so such
#: a cell is written with a leading ``'`` (OWASP's advice for CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def flagged(row: dict[str, Any]) -> bool:
    """Whether a row needs a person's eyes: a bank match, a verdict other than allow, or
    evidence of generation. (Not flagged is never "harmless": nothing fired, that is all.)"""
    if row.get("error"):
        return False
    if row.get("matches") or row.get("verdict") not in (None, "allow"):
        return True
    return bool(row.get("provenance", {}).get("evidence_of_generation")) or any(
        w.get("band") in ("likely", "very likely") for w in row.get("watermarks", [])
    )


def match_summary(match: dict[str, Any]) -> str:
    """``bank:entry_id:signal:distance/threshold`` (``variant`` appended when there is one)."""
    text = f"{match['bank']}:{match['entry_id']}:{match['signal']}:{match['distance']}"
    text += f"/{match['threshold']}"
    return text + (f":{match['variant']}" if match.get("variant") else "")


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """The flat CSV form of ``row`` (lists joined with ``;``, formulas neutralised)."""
    source = row.get("source", {})
    hashes = row.get("hashes", {})
    error = row.get("error") or {}
    rules = sorted({str(r.get("rule")) for r in row.get("reasons", []) if r.get("rule")})
    out = {
        "key": row.get("key", ""),
        "path": row.get("path", ""),
        "source_kind": source.get("kind", ""),
        "archive": source.get("archive", ""),
        "member": source.get("member", ""),
        "chat": source.get("chat", ""),
        "chat_id": source.get("chat_id", ""),
        "message_id": source.get("message_id", ""),
        "sender": source.get("sender", ""),
        "date": source.get("date", ""),
        "kind": hashes.get("kind", ""),
        "pdq": hashes.get("pdq", ""),
        "pdq_quality": hashes.get("pdq_quality", ""),
        "md5": hashes.get("md5", ""),
        "sha256": hashes.get("sha256", ""),
        "matches": ";".join(match_summary(m) for m in row.get("matches", [])),
        "verdict": row.get("verdict", ""),
        "priority": row.get("priority") or "",
        "rules": ";".join(rules),
        "error_code": error.get("code", ""),
        "error_message": error.get("message", ""),
        "scan_id": row.get("scan_id", ""),
    }
    return {k: "" if v is None else cell(v) for k, v in out.items()}


def cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text that would start a formula gets a
    leading ``'`` (numbers are left alone: ``-5`` is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def dumps(row: dict[str, Any]) -> str:
    """One JSON line (no newline inside: JSON escapes them)."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))
