"""Evidence packages: a signed ZIP that says where copies were found and how they matched.

A package holds, flat at its root:

- ``manifest.json`` -- what was found, where and when, the hashes, every signal with its
  value and threshold, how each match was made (always labelled as a lead for human review,
  not an identification), and the SHA-256 of every other file in the package;
- ``report.html`` and ``report.pdf`` -- the same, for people (English or French), with
  what the package proves and what it does not, and where to get help;
- ``signature.json`` -- an Ed25519 signature over the exact bytes of ``manifest.json``, with
  the public key and its fingerprint. It cannot sign itself, so :func:`verify` requires its
  exact canonical bytes and fields: any change to it fails too.

Never an image, a thumbnail or any part of one: only hashes and findings. The ZIP is
deterministic for a given manifest (fixed timestamps and order), so two builds of the same
evidence at the same instant are byte-identical.

:func:`verify` treats the ZIP as untrusted input: sizes, entry counts, compression ratios and
names are checked before anything is decompressed, and every problem found is reported with a
stable code (see ``docs/evidence-package.md``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from rempart import __version__
from rempart.cases.help import check_lang, load_help
from rempart.cases.signing import SigningKey, fingerprint, verify_signature
from rempart.errors import NotFoundError, RempartError

if TYPE_CHECKING:
    from rempart.store import Store
    from rempart.store.scans import ScanRecord

FORMAT: Final = "rempart-evidence"
VERSION: Final = 1
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "signature.json"
REPORT_HTML: Final = "report.html"
REPORT_PDF: Final = "report.pdf"
#: The label every match carries, in the manifest and in the reports.
LEAD_LABEL: Final = "lead for human review, not an identification"
#: Scans in one package (a package is for people to read; thousands belong in an export).
MAX_ITEMS: Final = 500

# -- limits for verify(): a package is a few hundred kilobytes; these leave a wide margin.
MAX_PACKAGE_BYTES: Final = 64 * 1024 * 1024
MAX_ENTRIES: Final = 64
MAX_ENTRY_BYTES: Final = 32 * 1024 * 1024
MAX_TOTAL_BYTES: Final = 64 * 1024 * 1024
#: Deflate cannot do better than about 1032:1; real JSON, HTML and PDF stay far below 100:1.
MAX_RATIO: Final = 200
#: Flat names only: no folders, no "..", no drive letters, nothing a shell would mangle.
_SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Fixed ZIP timestamp (the DOS epoch): the signed manifest carries the real time.
_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)
#: The fields of ``signature.json``, no more, no fewer.
_SIGNATURE_KEYS: Final = frozenset(
    ("algorithm", "signed_file", "public_key", "key_fingerprint", "signature")
)


class EvidenceError(RempartError):
    """A package cannot be built (``no_scans``, ``too_many_items``, ``case_not_found``,
    ``bad_scan_id``)."""

    code = "evidence_error"
    status = 422


@dataclass(frozen=True, slots=True)
class Package:
    """A built package: the ZIP bytes and the manifest it signs."""

    data: bytes
    manifest: dict[str, Any]

    @property
    def filename(self) -> str:
        """A file name for downloads: ``evidence-<case or first scan>-<date>.zip``."""
        case = self.manifest.get("case") or {}
        ref = case.get("number") or (self.manifest["items"][0]["scan_id"][:8])
        day = self.manifest["generated_at"][:10]
        return f"evidence-{_slug(str(ref))}-{day}.zip"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a package."""

    code: str
    message: str
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{code, message[, file]}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.file is not None:
            out["file"] = self.file
        return out


@dataclass
class Verification:
    """The outcome of :func:`verify`: ``ok`` only when there is no problem at all."""

    problems: list[Problem] = field(default_factory=list)
    #: Fingerprint of the key that signed the manifest (``None`` if unreadable).
    key_fingerprint: str | None = None
    #: The manifest, when it could be read (even if the signature failed: for diagnosis).
    manifest: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Signature good, key as pinned, every file as listed, nothing added or removed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the CLI."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "key_fingerprint": self.key_fingerprint,
            "files": self.files,
            "problems": [p.to_dict() for p in self.problems],
        }
        if self.manifest is not None:
            out["generated_at"] = self.manifest.get("generated_at")
            out["case"] = (self.manifest.get("case") or {}).get("number")
            items = self.manifest.get("items")
            out["items"] = len(items) if isinstance(items, list) else None
        return out


# -- building -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseRef:
    """What a package says about the case it was built for."""

    number: str
    status: str | None = None
    opened_at: datetime | None = None
    #: Alerts whose scan record was pruned before the package was built.
    missing_scans: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Manifest shape."""
        return {
            "number": self.number,
            "status": self.status,
            "opened_at": _iso(self.opened_at) if self.opened_at else None,
            "missing_scans": self.missing_scans,
        }


def item_for_scan(
    scan: ScanRecord,
    *,
    first_seen: datetime | None = None,
    alerts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The manifest entry for one scan record (pure: values in, values out)."""
    result = scan.result if isinstance(scan.result, dict) else {}
    raw_source = result.get("source")
    source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
    matches = [_match(m) for m in _dicts(result.get("matches"))]
    suppressed = [_match(m) for m in _dicts(result.get("suppressed"))]
    signals = _signals(result.get("evidence"))
    verdict: dict[str, Any] = {
        "action": result.get("verdict", scan.verdict),
        "reasons": [str(r) for r in result.get("reasons", []) if r is not None],
    }
    if result.get("priority") is not None:
        verdict["priority"] = result["priority"]
    return {
        "scan_id": scan.id,
        "found": {
            "url": _text(source.get("url")),
            "platform": scan.tenant,
            "content_id": _text(source.get("content_id")),
            # Where a batch scan (rempart scan --out) found it: the file, the archive member,
            # or the Telegram chat, message, sender and date.
            **{
                k: _text(source[k])
                for k in (
                    *("path", "kind", "archive", "member", "export", "chat", "chat_id"),
                    *("chat_type", "message_id", "sender", "sender_id", "date", "note"),
                )
                if source.get(k) is not None
            },
        },
        "first_seen": _iso(first_seen or scan.created_at),
        "scanned_at": _iso(scan.created_at),
        "media_kind": scan.kind,
        "hashes": {"sha256": scan.sha256 or None, "md5": scan.md5 or None, "pdq": scan.pdq},
        "verdict": verdict,
        "matches": matches,
        "suppressed": suppressed,
        "signals": signals,
        "method": {
            "label": LEAD_LABEL,
            "steps": _method(matches, signals),
        },
        "alerts": [dict(a) for a in alerts],
    }


def build_package(
    scans: Sequence[ScanRecord],
    key: SigningKey,
    *,
    case: CaseRef | None = None,
    alerts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    lang: str = "en",
    now: datetime | None = None,
) -> Package:
    """Sign a package over ``scans`` (in the order given, duplicates dropped).

    ``alerts`` maps a scan id to the case alerts it raised (shown with its item).
    """
    from rempart.cases.report import render_html, render_pdf

    chosen = check_lang(lang)
    unique = list({s.id: s for s in scans}.values())
    if not unique:
        raise EvidenceError(
            "nothing to put in the package",
            code="no_scans",
            hint="give scan ids from POST /v1/scan, or a case that has alerts",
        )
    if len(unique) > MAX_ITEMS:
        raise EvidenceError(
            f"{len(unique)} scans; a package holds at most {MAX_ITEMS}",
            code="too_many_items",
            hint="split them over several packages",
        )
    generated = (now or datetime.now(UTC)).astimezone(UTC)
    # First seen: the earliest scan of the same file (same SHA-256) in this package.
    first: dict[str, datetime] = {}
    for s in unique:
        if s.sha256:
            first[s.sha256] = min(first.get(s.sha256, s.created_at), s.created_at)
    alerts = alerts or {}
    items = [
        item_for_scan(s, first_seen=first.get(s.sha256 or ""), alerts=alerts.get(s.id, ()))
        for s in unique
    ]
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": _iso(generated),
        "generator": f"rempart {__version__}",
        "lang": chosen,
        "issuer": {
            "algorithm": "Ed25519",
            "key_fingerprint": key.fingerprint,
            "public_key": base64.b64encode(key.public_bytes).decode("ascii"),
        },
        "case": case.to_dict() if case else None,
        "notice": (
            "Every item is a " + LEAD_LABEL + ". Hash and signal matches say that two files "
            "look alike or carry the same marks; only a person who reviews them can say "
            "whether they show the same person or the same picture."
        ),
        "items": items,
        "help": [h.to_dict() for h in load_help(chosen)],
    }
    files = {
        REPORT_HTML: render_html(document).encode("utf-8"),
        REPORT_PDF: render_pdf(document),
    }
    manifest = {
        **document,
        "files": [
            {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        ],
    }
    manifest_bytes = _dump(manifest)
    signature = {
        "algorithm": "Ed25519",
        "signed_file": MANIFEST,
        "public_key": base64.b64encode(key.public_bytes).decode("ascii"),
        "key_fingerprint": key.fingerprint,
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    entries = {MANIFEST: manifest_bytes, SIGNATURE: _dump(signature), **files}
    return Package(_zip(entries), manifest)


def package_for_scans(
    store: Store,
    tenant: str,
    scan_ids: Sequence[str],
    key: SigningKey | Callable[[], SigningKey],
    *,
    lang: str = "en",
    now: datetime | None = None,
) -> Package:
    """A package over scans of ``tenant`` (a platform's own scans).

    ``key`` may be a function that loads it: it is called once the scans are found, so a bad
    request is answered as such even where no key is configured.
    """
    from rempart.store.scans import ScanRepository

    repo = ScanRepository(store)
    ids = [_scan_id(s) for s in scan_ids]
    if len(set(ids)) > MAX_ITEMS:
        raise EvidenceError(
            f"{len(set(ids))} scans; a package holds at most {MAX_ITEMS}",
            code="too_many_items",
            hint="split them over several packages",
        )
    scans = [repo.get(tenant, s) for s in dict.fromkeys(ids)]
    return build_package(scans, _signer(key), lang=lang, now=now)


def package_for_case(
    store: Store,
    number: str,
    key: SigningKey | Callable[[], SigningKey],
    *,
    lang: str = "en",
    now: datetime | None = None,
) -> Package:
    """A package over every scan that raised an alert in case ``number`` (operator side).

    Alerts name the platform (tenant) and scan that raised them; scan records pruned since
    are counted in the manifest (``case.missing_scans``) rather than silently left out.
    ``key`` may be a function that loads it (see :func:`package_for_scans`).
    """
    from rempart.store.cases import CaseRepository
    from rempart.store.scans import ScanRepository

    cases = CaseRepository(store)
    info = cases.get(number)
    alerts = cases.alerts(number)
    repo = ScanRepository(store)
    scans: list[ScanRecord] = []
    by_scan: dict[str, list[dict[str, Any]]] = {}
    missing: list[str] = []
    for alert in alerts:
        scan_id = getattr(alert, "scan_id", None)
        if not scan_id:
            continue
        if scan_id not in by_scan:
            try:
                scans.append(repo.get(alert.tenant, scan_id))
            except NotFoundError:
                missing.append(scan_id)
                continue
            by_scan[scan_id] = []
        by_scan[scan_id].append(
            {
                "id": alert.id,
                "kind": alert.kind,
                "status": alert.status,
                "at": _iso(alert.at),
            }
        )
    if not scans:
        hint = "the case has no alert with a scan yet"
        if missing:
            hint = f"the scan records of its alerts were pruned ({len(missing)} missing)"
        raise EvidenceError(f"case {number} has nothing to package", code="no_scans", hint=hint)
    ref = CaseRef(
        number=str(info.number),
        status=getattr(info, "status", None),
        opened_at=getattr(info, "created_at", None),
        missing_scans=len(missing),
    )
    return build_package(scans, _signer(key), case=ref, alerts=by_scan, lang=lang, now=now)


def _signer(key: SigningKey | Callable[[], SigningKey]) -> SigningKey:
    return key if isinstance(key, SigningKey) else key()


# -- verifying ------------------------------------------------------------------------------


class _Fatal(Exception):
    """Stops verification: the ZIP itself is unusable or unsafe."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def verify(data: bytes, expected_key: bytes | None = None) -> Verification:
    """Check a package; ``expected_key`` (32 raw public-key bytes) pins the issuer.

    Never raises for bad input: every problem is in the result, with a stable code.
    """
    out = Verification()
    try:
        contents = _read_zip(data)
    except _Fatal as fatal:
        out.problems.append(fatal.problem)
        return out
    out.files = sorted(contents)
    manifest_bytes = contents.get(MANIFEST)
    signature_bytes = contents.get(SIGNATURE)
    if manifest_bytes is None:
        out.problems.append(Problem("missing_manifest", "the package has no manifest.json"))
    if signature_bytes is None:
        out.problems.append(Problem("missing_signature", "the package has no signature.json"))
    if manifest_bytes is None or signature_bytes is None:
        return out
    signer = _check_signature(signature_bytes, manifest_bytes, expected_key, out)
    manifest = _load_json(manifest_bytes)
    if not isinstance(manifest, dict):
        out.problems.append(Problem("bad_manifest", "manifest.json is not a JSON object", MANIFEST))
        return out
    out.manifest = manifest
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        out.problems.append(
            Problem(
                "unsupported_version",
                f"not a {FORMAT} version {VERSION} manifest "
                f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})",
                MANIFEST,
            )
        )
    raw_issuer = manifest.get("issuer")
    issuer: dict[str, Any] = raw_issuer if isinstance(raw_issuer, dict) else {}
    if signer is not None and issuer.get("key_fingerprint") != fingerprint(signer):
        out.problems.append(
            Problem(
                "issuer_mismatch",
                "the manifest names another issuer key than the one that signed it",
                MANIFEST,
            )
        )
    _check_files(manifest, contents, out)
    return out


def _read_zip(data: bytes) -> dict[str, bytes]:
    if not isinstance(data, bytes | bytearray) or len(data) == 0:
        raise _Fatal(Problem("not_a_zip", "empty input: not an evidence package"))
    if len(data) > MAX_PACKAGE_BYTES:
        raise _Fatal(
            Problem(
                "too_large",
                f"{len(data)} bytes; an evidence package is at most {MAX_PACKAGE_BYTES}",
            )
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _Fatal(Problem("not_a_zip", "not a ZIP file (or a damaged one)")) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise _Fatal(
                Problem("too_many_files", f"{len(infos)} entries; a package has a handful")
            )
        seen: set[str] = set()
        total = 0
        for info in infos:
            name = info.filename
            if not _SAFE_NAME.match(name) or name in (".", ".."):
                raise _Fatal(
                    Problem(
                        "unsafe_path",
                        f"entry {name[:200]!r} is not a plain file name at the package root "
                        "(folders, '..', absolute paths and drive letters are refused)",
                        name[:200],
                    )
                )
            if name in seen:
                raise _Fatal(Problem("duplicate_file", f"{name} appears twice", name))
            seen.add(name)
            if info.flag_bits & 0x1:
                raise _Fatal(Problem("encrypted_file", f"{name} is encrypted", name))
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _Fatal(
                    Problem("unsupported_compression", f"{name} uses an unusual compression", name)
                )
            ratio = info.file_size / max(info.compress_size, 1)
            total += info.file_size
            if (
                info.file_size > MAX_ENTRY_BYTES
                or total > MAX_TOTAL_BYTES
                or (info.file_size > 1024 * 1024 and ratio > MAX_RATIO)
            ):
                raise _Fatal(
                    Problem(
                        "zip_bomb",
                        f"{name} would expand to {info.file_size} bytes (ratio {ratio:.0f}:1); "
                        "refused",
                        name,
                    )
                )
        contents: dict[str, bytes] = {}
        for info in infos:
            try:
                with archive.open(info) as f:
                    # Never trust the declared size: read at most one byte past it.
                    body = f.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as e:
                raise _Fatal(
                    Problem("corrupt_file", f"{info.filename} cannot be read ({e})", info.filename)
                ) from None
            if len(body) != info.file_size:
                raise _Fatal(
                    Problem(
                        "zip_bomb",
                        f"{info.filename} is larger than its header says",
                        info.filename,
                    )
                )
            contents[info.filename] = body
    return contents


def _check_signature(
    signature_bytes: bytes,
    manifest_bytes: bytes,
    expected_key: bytes | None,
    out: Verification,
) -> bytes | None:
    sig = _load_json(signature_bytes)
    if not isinstance(sig, dict):
        out.problems.append(
            Problem("bad_signature_file", "signature.json is not a JSON object", SIGNATURE)
        )
        return None
    try:
        public = base64.b64decode(str(sig.get("public_key", "")), validate=True)
        signature = base64.b64decode(str(sig.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        public, signature = b"", b""
    if sig.get("algorithm") != "Ed25519" or len(public) != 32 or len(signature) != 64:
        out.problems.append(
            Problem(
                "bad_signature_file",
                "signature.json does not hold an Ed25519 public key and signature",
                SIGNATURE,
            )
        )
        return None
    out.key_fingerprint = fingerprint(public)
    # signature.json is not covered by the signature, so it is held to the one form the
    # builder writes: exactly these keys, in canonical bytes. Otherwise a note added to it,
    # a field removed or a re-indentation would pass unseen ("any changed file fails").
    keys = set(sig)
    if keys != _SIGNATURE_KEYS:
        unknown = ", ".join(sorted(keys - _SIGNATURE_KEYS)) or "none"
        missing = ", ".join(sorted(_SIGNATURE_KEYS - keys)) or "none"
        out.problems.append(
            Problem(
                "bad_signature_file",
                f"signature.json has unexpected fields ({unknown}) or lacks some ({missing})",
                SIGNATURE,
            )
        )
    elif _dump(sig) != signature_bytes:
        out.problems.append(
            Problem(
                "signature_file_changed",
                "signature.json is not byte for byte as it was written (spacing, order or "
                "escaping changed)",
                SIGNATURE,
            )
        )
    if sig.get("signed_file") != MANIFEST:
        out.problems.append(
            Problem("bad_signature_file", "the signature is not over manifest.json", SIGNATURE)
        )
    if sig.get("key_fingerprint") != out.key_fingerprint:
        out.problems.append(
            Problem(
                "bad_signature_file",
                "signature.json's key_fingerprint is not its public key's",
                SIGNATURE,
            )
        )
    if not verify_signature(public, signature, manifest_bytes):
        out.problems.append(
            Problem(
                "bad_signature",
                "the signature does not match manifest.json: the manifest or the signature "
                "was changed after signing",
                MANIFEST,
            )
        )
    if expected_key is not None and public != expected_key:
        out.problems.append(
            Problem(
                "wrong_key",
                f"signed by key {out.key_fingerprint[:16]}..., not by the expected key "
                f"{fingerprint(expected_key)[:16]}...",
                SIGNATURE,
            )
        )
    return public


def _check_files(manifest: dict[str, Any], contents: dict[str, bytes], out: Verification) -> None:
    listed = manifest.get("files")
    if not isinstance(listed, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) for f in listed
    ):
        out.problems.append(Problem("bad_manifest", "the manifest's file list is unreadable"))
        return
    names = {f["name"] for f in listed}
    for entry in listed:
        name = entry["name"]
        body = contents.get(name)
        if body is None:
            out.problems.append(Problem("file_missing", f"{name} is listed but absent", name))
        elif hashlib.sha256(body).hexdigest() != entry.get("sha256"):
            out.problems.append(
                Problem("file_changed", f"{name} differs from the signed manifest", name)
            )
    for name in sorted(set(contents) - names - {MANIFEST, SIGNATURE}):
        out.problems.append(Problem("file_added", f"{name} is not in the signed manifest", name))


# -- helpers ----------------------------------------------------------------------------------


def _zip(entries: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        # The manifest and signature first (readers look there), then the rest by name.
        order = [MANIFEST, SIGNATURE, *sorted(n for n in entries if n not in (MANIFEST, SIGNATURE))]
        for name in order:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            archive.writestr(info, entries[name], compresslevel=9)
    return buf.getvalue()


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "package"


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _scan_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise EvidenceError(
            f"{str(value)[:80]!r} is not a scan id",
            code="bad_scan_id",
            hint="scan ids are the UUIDs POST /v1/scan returns",
        ) from None


def is_scan_id(value: str) -> bool:
    """Whether ``value`` is a scan id (a UUID) rather than a case number."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _match(m: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        k: m.get(k)
        for k in ("bank", "bank_id", "entry_id", "signal", "distance", "threshold", "variant")
    }
    if m.get("share") is not None:
        out["share"] = m["share"]
    return out


def _signals(evidence: Any) -> dict[str, Any]:
    """The evidence parts of a scan, without anything that could identify or expose a
    person: provenance keeps source, summary and strength (never prompt text); faces keep
    distances and thresholds (never the enrolled person's id); nudity keeps classes and
    scores (never boxes)."""
    parts = evidence if isinstance(evidence, dict) else {}
    out: dict[str, Any] = {}
    prov = parts.get("provenance")
    if isinstance(prov, dict):
        out["provenance"] = {
            "evidence_of_generation": bool(prov.get("evidence_of_generation")),
            "findings": [
                {k: f.get(k) for k in ("source", "summary", "strength")}
                for f in _dicts(prov.get("findings"))
            ],
        }
    if isinstance(parts.get("watermarks"), list):
        out["watermarks"] = [
            {k: w.get(k) for k in ("source", "band", "matched_bits", "total_bits")}
            for w in _dicts(parts["watermarks"])
        ]
    nudity = parts.get("nudity")
    if isinstance(nudity, dict):
        out["nudity"] = {
            "threshold": nudity.get("threshold"),
            "regions": [
                {k: r.get(k) for k in ("class", "score", "exposure")}
                for r in _dicts(nudity.get("regions"))
            ],
        }
    if isinstance(parts.get("detectors"), list):
        out["detectors"] = [
            {k: d.get(k) for k in ("detector", "score", "threshold", "over_threshold")}
            for d in _dicts(parts["detectors"])
        ]
    if isinstance(parts.get("faces"), list):
        out["faces"] = [
            {
                "score": f.get("score"),
                "enrolled_matches": [
                    {"distance": m.get("distance"), "threshold": m.get("threshold")}
                    for m in _dicts(f.get("matches"))
                ],
            }
            for f in _dicts(parts["faces"])
        ]
    return out


def _method(matches: Iterable[Mapping[str, Any]], signals: Mapping[str, Any]) -> list[str]:
    """How each match was made, in plain words (English; reports translate the labels)."""
    steps: list[str] = []
    for m in matches:
        signal = m.get("signal")
        where = f"entry {m.get('entry_id')} of bank {m.get('bank')!r}"
        if signal in ("md5", "sha256"):
            steps.append(
                f"Exact {str(signal).upper()} equality with {where}: the same file, byte for byte."
            )
        elif signal == "vpdq":
            steps.append(
                f"Video frames' PDQ hashes matched {where} (share {m.get('share')}, "
                f"frame threshold {m.get('threshold')})."
            )
        else:
            variant = m.get("variant") or "original"
            steps.append(
                f"PDQ perceptual hash (variant {variant}) at Hamming distance "
                f"{m.get('distance')} of 256 bits from {where}; the bank's threshold is "
                f"{m.get('threshold')}. A small distance means the pictures look alike."
            )
    for face in signals.get("faces", []):
        for hit in face.get("enrolled_matches", []):
            steps.append(
                f"A face at distance {hit.get('distance')} (threshold {hit.get('threshold')}) "
                "of a face template its owner enrolled."
            )
    prov = signals.get("provenance") or {}
    if prov.get("evidence_of_generation"):
        steps.append("Provenance metadata states that the image was generated or edited by AI.")
    if any(w.get("band") in ("likely", "very likely") for w in signals.get("watermarks", [])):
        steps.append("An invisible watermark of an image generator was read.")
    if not steps:
        steps.append("No hash or face matched; the item is listed for its other signals.")
    return steps
