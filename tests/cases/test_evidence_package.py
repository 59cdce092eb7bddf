"""Evidence packages: built from real scans on a real store, signed, verified; every kind of
tampering and every malformed ZIP is caught with a specific reason. Images are drawn by
Rempart itself (rempart.examples), never intimate."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rempart.cases.evidence import (
    LEAD_LABEL,
    EvidenceError,
    build_package,
    package_for_scans,
    verify,
)
from rempart.cases.signing import (
    SigningKeyError,
    generate_key,
    load_key,
    load_signing_key,
    parse_public_key,
    write_key,
)
from rempart.entries import entries_for_values
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.hashing import hash_media
from rempart.scan import Scanner
from rempart.settings import Settings, load_settings
from rempart.store import Store
from rempart.store.scans import ScanRecord, ScanRepository

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _copy(seed: int, size: tuple[int, int] = (320, 240), quality: int = 55) -> bytes:
    """A resized, recompressed copy of a drawn picture."""
    return jpeg_bytes(synthetic_photo(seed).resize(size), quality=quality)


def scan_and_record(
    store: Store,
    settings: Settings,
    data: bytes,
    *,
    tenant: str = "acme",
    url: str | None = None,
    content_id: str | None = None,
    at: datetime = NOW,
) -> ScanRecord:
    """Scan with the real Scanner and store the record as the service does."""
    result = Scanner(store, settings).scan_bytes(data, tenant=tenant)
    body: dict[str, Any] = {
        "matches": [{**m.to_dict(), "bank_id": m.bank_id} for m in result.match.matches],
        "suppressed": [{**m.to_dict(), "bank_id": m.bank_id} for m in result.match.suppressed],
        "verdict": result.verdict.action if result.verdict else "allow",
        "priority": result.verdict.priority if result.verdict else None,
        "reasons": list(result.verdict.reasons) if result.verdict else [],
        "evidence": {
            "provenance": {
                "evidence_of_generation": True,
                "findings": [
                    {
                        "source": "iptc",
                        "summary": "IPTC digital source type: trainedAlgorithmicMedia",
                        "strength": "moderate",
                        "details": {"prompt": "SECRET PROMPT TEXT"},
                    }
                ],
                "errors": [],
            },
            "faces": [
                {
                    "box": [1, 2, 3, 4],
                    "score": 0.99,
                    "matches": [{"person": "person-0042", "distance": 0.41, "threshold": 0.6}],
                }
            ],
        },
    }
    source = {k: v for k, v in (("url", url), ("content_id", content_id)) if v}
    if source:
        body["source"] = source
    h = result.hashes
    record = ScanRecord(
        str(uuid.uuid4()), tenant, at, h.kind, body["verdict"], h.pdq, h.md5, h.sha256, body
    )
    ScanRepository(store).record_many([record])
    return record


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    s = load_settings(database_url=db_url)
    s.evidence = s.evidence.model_copy(update={"signing_key_file": tmp_path / "sign.pem"})
    write_key(generate_key(), tmp_path / "sign.pem")
    return s


@pytest.fixture
def scans(store: Store, settings: Settings) -> list[ScanRecord]:
    """Two copies of one reported picture, found on a platform, and one unrelated upload."""
    original = jpeg_bytes(synthetic_photo(5))
    hashes = hash_media(original, limits=settings.limits)
    bank = store.create_bank("reported", tenant="acme")
    store.add_entries(bank.name, entries_for_values({"pdq": [hashes.pdq or ""]}), tenant="acme")
    return [
        scan_and_record(
            store, settings, _copy(5), url="https://pics.example/p/1", content_id="post-1"
        ),
        scan_and_record(
            store,
            settings,
            _copy(5, (300, 220), 40),
            url="https://pics.example/p/2",
            content_id="post-2",
            at=NOW + timedelta(hours=3),
        ),
        scan_and_record(store, settings, _copy(77), url="https://pics.example/p/3"),
    ]


def _package(store: Store, settings: Settings, scans: list[ScanRecord], lang: str = "en") -> bytes:
    key = load_signing_key(settings)
    return package_for_scans(store, "acme", [s.id for s in scans], key, lang=lang, now=NOW).data


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _rezip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue()


def _codes(data: bytes, key: bytes | None = None) -> set[str]:
    return {p.code for p in verify(data, key).problems}


# -- building and verifying -------------------------------------------------------------------


def test_package_verifies_and_says_where_when_and_how(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    key = load_signing_key(settings)
    data = _package(store, settings, scans)
    result = verify(data, key.public_bytes)
    assert result.ok, result.problems
    assert result.key_fingerprint == key.fingerprint
    assert result.files == ["manifest.json", "report.html", "report.pdf", "signature.json"]

    members = _members(data)
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "rempart-evidence" and manifest["version"] == 1
    assert manifest["generated_at"] == "2026-11-22T12:00:00Z"
    assert manifest["issuer"]["key_fingerprint"] == key.fingerprint
    assert manifest["case"] is None
    assert LEAD_LABEL in manifest["notice"]
    first, second, unrelated = manifest["items"]
    assert first["found"] == {
        "url": "https://pics.example/p/1",
        "platform": "acme",
        "content_id": "post-1",
    }
    assert first["scan_id"] == scans[0].id
    assert first["hashes"] == {"sha256": scans[0].sha256, "md5": scans[0].md5, "pdq": scans[0].pdq}
    # The same file seen twice would share its first sighting; these are two different files.
    assert first["first_seen"] == "2026-11-22T12:00:00Z"
    assert second["first_seen"] == "2026-11-22T15:00:00Z"
    [match] = first["matches"]
    assert match["bank"] == "reported" and match["signal"] == "pdq"
    assert 0 <= match["distance"] <= match["threshold"] == 31
    assert first["method"]["label"] == LEAD_LABEL
    assert "Hamming distance" in first["method"]["steps"][0]
    assert unrelated["matches"] == []
    # Signals with values and thresholds, without what could expose a person.
    assert first["signals"]["faces"][0]["enrolled_matches"] == [
        {"distance": 0.41, "threshold": 0.6}
    ]
    text = members["manifest.json"].decode()
    assert "person-0042" not in text and "SECRET PROMPT" not in text
    assert first["signals"]["provenance"]["findings"][0]["strength"] == "moderate"
    # Every other file is listed with its SHA-256.
    listed = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert listed == {
        name: hashlib.sha256(members[name]).hexdigest() for name in ("report.html", "report.pdf")
    }
    signature = json.loads(members["signature.json"])
    assert signature["algorithm"] == "Ed25519"
    assert base64.b64decode(signature["public_key"]) == key.public_bytes


def test_no_image_is_ever_in_a_package(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    for body in _members(_package(store, settings, scans)).values():
        for magic in (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"/Subtype /Image"):
            assert magic not in body


def test_the_pdf_is_a_real_pdf(store: Store, settings: Settings, scans: list[ScanRecord]) -> None:
    pdf = _members(_package(store, settings, scans))["report.pdf"]
    assert pdf.startswith(b"%PDF-1.")
    assert pdf.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type /Page(?!s)", pdf))
    assert pages >= 2  # summary and items, method, help: more than one A4 page
    [count] = re.findall(rb"/Count (\d+)", pdf)[:1]
    assert int(count) == pages
    assert b"startxref" in pdf and b"/Lang (fr)" not in pdf


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "en",
            [
                "Evidence package",
                "not an identification",
                "Where to get help",
                "226-8-1",
                "What this package proves",
            ],
        ),
        (
            "fr",
            [
                "Dossier de preuves",
                "pas une identification",
                "Où trouver de l'aide",
                "226-8-1",
                "Ce que ce dossier prouve",
            ],
        ),
    ],
)
def test_html_report_in_both_languages(
    store: Store, settings: Settings, scans: list[ScanRecord], lang: str, expected: list[str]
) -> None:
    members = _members(_package(store, settings, scans, lang))
    html = members["report.html"].decode()
    assert f'<html lang="{lang}">' in html
    for text in expected:
        assert text.replace("'", "&#39;") in html
    for url in (
        "https://pics.example/p/1",
        "3018",
        "internet-signalement.gouv.fr",
        "stopncii.org",
        "takeitdown.ncmec.org",
        "revengepornhelpline.org.uk",
    ):
        assert url in html
    assert "<script" not in html
    assert "built-in method" not in html and "None" not in html
    # Found content is never a link (nobody should open it by accident); help is.
    assert 'href="https://pics.example' not in html
    assert members["report.pdf"].startswith(b"%PDF")


def test_html_escapes_what_platforms_sent(store: Store, settings: Settings) -> None:
    record = scan_and_record(
        store, settings, _copy(9), url="https://x.example/<script>alert(1)</script>"
    )
    html = _members(_package(store, settings, [record]))["report.html"].decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_packages_are_deterministic(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    assert _package(store, settings, scans) == _package(store, settings, scans)
    with zipfile.ZipFile(io.BytesIO(_package(store, settings, scans))) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_the_same_file_seen_twice_shares_its_first_sighting(settings: Settings) -> None:
    scans = [
        ScanRecord(
            str(uuid.uuid4()),
            "acme",
            NOW + timedelta(days=d),
            "image",
            "block",
            None,
            "0" * 32,
            "f" * 64,
            {"source": {"url": f"https://x.example/{d}"}},
        )
        for d in (2, 0)
    ]
    manifest = build_package(scans, generate_key(), now=NOW).manifest
    assert [i["first_seen"] for i in manifest["items"]] == ["2026-11-22T12:00:00Z"] * 2
    assert [i["scanned_at"][:10] for i in manifest["items"]] == ["2026-11-24", "2026-11-22"]


def test_bad_requests_are_explained(store: Store, settings: Settings) -> None:
    key = load_signing_key(settings)
    with pytest.raises(EvidenceError) as info:
        package_for_scans(store, "acme", [], key)
    assert info.value.code == "no_scans"
    with pytest.raises(EvidenceError) as info:
        package_for_scans(store, "acme", ["../../etc/passwd"], key)
    assert info.value.code == "bad_scan_id"
    with pytest.raises(Exception) as not_found:
        package_for_scans(store, "acme", [str(uuid.uuid4())], key)
    assert getattr(not_found.value, "code", None) == "scan_not_found"


def test_another_tenant_cannot_package_a_scan(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    with pytest.raises(Exception) as info:
        package_for_scans(store, "other", [scans[0].id], load_signing_key(settings))
    assert getattr(info.value, "code", None) == "scan_not_found"


# -- tampering --------------------------------------------------------------------------------


def _flip(body: bytes, at: int = -40) -> bytes:
    b = bytearray(body)
    b[at] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(
    ("name", "change", "code"),
    [
        (
            "manifest.json",
            lambda b: b.replace(b"pics.example/p/1", b"pics.example/p/9"),
            "bad_signature",
        ),
        ("manifest.json", lambda b: b + b" ", "bad_signature"),
        ("report.html", lambda b: b.replace(b"Evidence package", b"Evidence pack"), "file_changed"),
        ("report.pdf", _flip, "file_changed"),
        (
            "signature.json",
            lambda b: (
                re.sub(rb'"signature": "(.)', rb'"signature": "A', b)
                if b'"signature": "A' not in b
                else re.sub(rb'"signature": "(.)', rb'"signature": "B', b)
            ),
            "bad_signature",
        ),
    ],
)
def test_tampering_with_any_file_fails(
    store: Store,
    settings: Settings,
    scans: list[ScanRecord],
    name: str,
    change: Callable[[bytes], bytes],
    code: str,
) -> None:
    members = _members(_package(store, settings, scans))
    changed = change(members[name])
    assert changed != members[name]
    members[name] = changed
    result = verify(_rezip(members))
    assert not result.ok
    assert code in {p.code for p in result.problems}


def _canonical(obj: Any) -> bytes:
    """JSON as the package builder writes it."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _edit_signature(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def edit(body: bytes) -> bytes:
        doc = json.loads(body)
        change(doc)
        return _canonical(doc)

    return edit


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda b: b + b"\n", "signature_file_changed"),
        (lambda b: b.replace(b'  "', b'   "'), "signature_file_changed"),
        (lambda b: json.dumps(json.loads(b)).encode(), "signature_file_changed"),
        (_edit_signature(lambda d: d.update(note="checked by me")), "bad_signature_file"),
        (_edit_signature(lambda d: d.pop("key_fingerprint")), "bad_signature_file"),
        (_edit_signature(lambda d: d.pop("signed_file")), "bad_signature_file"),
        (_edit_signature(lambda d: d.update(signed_file="report.html")), "bad_signature_file"),
    ],
    ids=[
        "newline",
        "indent",
        "compact",
        "added-note",
        "no-fingerprint",
        "no-signed-file",
        "other-file",
    ],
)
def test_any_change_to_signature_json_fails(
    store: Store,
    settings: Settings,
    scans: list[ScanRecord],
    change: Callable[[bytes], bytes],
    code: str,
) -> None:
    """signature.json is outside what it signs: it must still be exactly as written."""
    members = _members(_package(store, settings, scans))
    assert verify(_rezip(members)).ok
    changed = change(members["signature.json"])
    assert changed != members["signature.json"]
    members["signature.json"] = changed
    result = verify(_rezip(members))
    assert not result.ok
    assert code in {p.code for p in result.problems}


def test_added_and_removed_files_fail(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    members = _members(_package(store, settings, scans))
    assert _codes(_rezip({**members, "extra.txt": b"hello"})) == {"file_added"}
    assert _codes(_rezip({k: v for k, v in members.items() if k != "report.pdf"})) == {
        "file_missing"
    }
    assert _codes(_rezip({k: v for k, v in members.items() if k != "manifest.json"})) == {
        "missing_manifest"
    }
    assert _codes(_rezip({k: v for k, v in members.items() if k != "signature.json"})) == {
        "missing_signature"
    }
    assert verify(_rezip(members)).ok  # re-zipping alone changes nothing that matters


def test_a_pinned_key_rejects_another_signer(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    data = _package(store, settings, scans)
    assert verify(data, load_signing_key(settings).public_bytes).ok
    assert _codes(data, generate_key().public_bytes) == {"wrong_key"}


def test_a_forger_who_re_signs_is_caught_by_the_pin(
    store: Store, settings: Settings, scans: list[ScanRecord]
) -> None:
    """Anyone can sign a changed manifest with their own key; only pinning the issuer's key
    (or comparing fingerprints) tells the two apart."""
    forger = generate_key()
    members = _members(_package(store, settings, scans))
    manifest = json.loads(members["manifest.json"])
    manifest["items"][0]["found"]["url"] = "https://elsewhere.example/"
    body = json.dumps(manifest).encode()
    signature = json.loads(members["signature.json"])
    signature["signature"] = base64.b64encode(forger.sign(body)).decode()
    signature["public_key"] = base64.b64encode(forger.public_bytes).decode()
    signature["key_fingerprint"] = forger.fingerprint
    members.update({"manifest.json": body, "signature.json": _canonical(signature)})
    forged = _rezip(members)
    assert _codes(forged) == {"issuer_mismatch"}  # the manifest still names the real issuer
    manifest["issuer"]["key_fingerprint"] = forger.fingerprint
    body = json.dumps(manifest).encode()
    signature["signature"] = base64.b64encode(forger.sign(body)).decode()
    members.update({"manifest.json": body, "signature.json": _canonical(signature)})
    forged = _rezip(members)
    assert verify(forged).ok  # self-consistent...
    assert verify(forged).key_fingerprint == forger.fingerprint  # ...but by another key
    assert _codes(forged, load_signing_key(settings).public_bytes) == {"wrong_key"}


# -- untrusted ZIPs ---------------------------------------------------------------------------


def _raw_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in entries:
            z.writestr(zipfile.ZipInfo(name), body, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "not_a_zip"),
        (b"PK\x03\x04 not really a zip at all", "not_a_zip"),
        (b"%PDF-1.4 this is a pdf", "not_a_zip"),
    ],
)
def test_not_a_zip(data: bytes, code: str) -> None:
    result = verify(data)
    assert not result.ok and [p.code for p in result.problems] == [code]


def test_truncated_zip(store: Store, settings: Settings, scans: list[ScanRecord]) -> None:
    data = _package(store, settings, scans)
    assert _codes(data[: len(data) // 2]) == {"not_a_zip"}


@pytest.mark.parametrize(
    "name", ["../evil.json", "/etc/passwd", "sub/report.html", "..\\win.txt", "C:evil", ".hidden"]
)
def test_path_traversal_is_refused(name: str) -> None:
    [problem] = verify(_raw_zip([("manifest.json", b"{}"), (name, b"x")])).problems
    assert problem.code == "unsafe_path"


def test_zip_bomb_is_refused_before_decompressing() -> None:
    bomb = _raw_zip([("manifest.json", b"\0" * (40 * 1024 * 1024))])
    assert len(bomb) < 100_000
    [problem] = verify(bomb).problems
    assert problem.code == "zip_bomb"


def test_lying_size_header_is_refused() -> None:
    data = bytearray(_raw_zip([("manifest.json", b"A" * 5000)]))
    # Make the central directory claim a tiny uncompressed size.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    [problem] = verify(bytes(data)).problems
    assert problem.code in ("zip_bomb", "corrupt_file")


def test_duplicate_and_too_many_entries() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        dup = _raw_zip([("manifest.json", b"{}"), ("manifest.json", b"{}")])
    assert _codes(dup) == {"duplicate_file"}
    many = _raw_zip([(f"f{i}.txt", b"x") for i in range(100)])
    assert _codes(many) == {"too_many_files"}


def test_garbage_manifest_and_signature() -> None:
    data = _raw_zip([("manifest.json", b"[1, 2"), ("signature.json", b"\xff\xfe")])
    codes = _codes(data)
    assert "bad_signature_file" in codes and "bad_manifest" in codes


# -- keys -------------------------------------------------------------------------------------


def test_key_files(tmp_path: Path) -> None:
    key = generate_key()
    pub = write_key(key, tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path / "k.pem").public_bytes == key.public_bytes
    assert parse_public_key(pub.read_bytes()) == key.public_bytes
    assert parse_public_key(key.public_bytes.hex()) == key.public_bytes
    with pytest.raises(SigningKeyError) as info:
        write_key(generate_key(), tmp_path / "k.pem")
    assert info.value.code == "key_exists"
    with pytest.raises(SigningKeyError) as info:
        load_key(tmp_path / "missing.pem")
    assert info.value.code == "no_signing_key"
    (tmp_path / "junk.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"
    )
    with pytest.raises(SigningKeyError):
        load_key(tmp_path / "junk.pem")
    with pytest.raises(SigningKeyError) as info:
        parse_public_key(b"not a key")
    assert info.value.code == "bad_public_key"


# -- command line -----------------------------------------------------------------------------


def test_cli_build_verify_keygen(
    store: Store, settings: Settings, scans: list[ScanRecord], tmp_path: Path, db_url: str
) -> None:
    from rempart.cli import app

    runner = CliRunner()
    env = {"REMPART_EVIDENCE__SIGNING_KEY_FILE": str(tmp_path / "cli.pem")}
    keygen = runner.invoke(app, ["evidence", "keygen"], env=env)
    assert keygen.exit_code == 0, keygen.output
    fingerprint = json.loads(keygen.stdout.splitlines()[0])["fingerprint"]

    out = tmp_path / "pkg.zip"
    args = [
        "evidence",
        scans[0].id,
        scans[1].id,
        "-o",
        str(out),
        "--tenant",
        "acme",
        "--database-url",
        db_url,
        "--lang",
        "fr",
    ]
    built = runner.invoke(app, args, env=env)
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout.splitlines()[0])["items"] == 2

    ok = runner.invoke(
        app, ["evidence", "verify", str(out), "--key", str(tmp_path / "cli.pem.pub")]
    )
    assert ok.exit_code == 0 and "OK" in ok.stdout and fingerprint in ok.stdout

    other = tmp_path / "other.pem"
    write_key(generate_key(), other)
    wrong = runner.invoke(app, ["evidence", "verify", str(out), "--key", str(other) + ".pub"])
    assert wrong.exit_code == 1 and "wrong_key" in wrong.stdout

    members = _members(out.read_bytes())
    members["report.html"] += b"<!-- edited -->"
    (tmp_path / "bad.zip").write_bytes(_rezip(members))
    bad = runner.invoke(app, ["evidence", "verify", str(tmp_path / "bad.zip"), "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["problems"][0]["code"] == "file_changed"

    members = _members(out.read_bytes())
    signature = json.loads(members["signature.json"])
    signature["note"] = "reviewed"
    members["signature.json"] = _canonical(signature)
    (tmp_path / "noted.zip").write_bytes(_rezip(members))
    noted = runner.invoke(app, ["evidence", "verify", str(tmp_path / "noted.zip")])
    assert noted.exit_code == 1 and "bad_signature_file" in noted.stdout

    mixed = runner.invoke(
        app, ["evidence", "build", "CASE-1", scans[0].id, "--database-url", db_url], env=env
    )
    assert mixed.exit_code == 2 and "not both" in mixed.output
