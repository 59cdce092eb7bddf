"""The Scanner with evidence signals: provenance, faces of enrolled people, the verdict."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from rempart.cli import app
from rempart.errors import RempartError
from rempart.evidence.collect import parse_signals
from rempart.examples import synthetic_photo
from rempart.policy import Evidence
from rempart.scan import Scanner
from rempart.settings import load_settings

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"
A1111 = (
    "a landscape\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
    "Seed: 1, Size: 640x480, Model hash: abc123, Model: sd15"
)


def _generated_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    buf = io.BytesIO()
    synthetic_photo(3).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_parse_signals() -> None:
    assert parse_signals("all") == {"provenance", "watermark", "nudity", "faces", "detectors"}
    assert parse_signals("hashes") == frozenset()
    assert parse_signals("provenance, faces") == {"provenance", "faces"}
    with pytest.raises(RempartError) as info:
        parse_signals("nudity-of-anyone")
    assert info.value.code == "unknown_signal"


def test_generator_metadata_is_generation_evidence(store) -> None:  # type: ignore[no-untyped-def]
    scanner = Scanner(store, load_settings())
    result = scanner.scan_bytes(_generated_png(), signals=parse_signals("provenance,watermark"))
    out = result.to_dict()
    assert [f["source"] for f in out["provenance"]["findings"]] == ["a1111"]
    assert "a landscape" not in json.dumps(out["provenance"]["findings"][0]["summary"])
    assert result.evidence.facts["generation"][0].signal == "a1111"
    # generation evidence alone is not a reason to act in the shipped policy
    assert out["verdict"] == "allow"
    nude = {"nudity_exposed": [Evidence("nudity", 0.9, 0.5)]}
    v = scanner.policy.decide({**result.evidence.facts, **nude})
    assert (v.action, v.priority) == ("review", "normal")
    plain = scanner.scan_bytes(_plain_png(), signals=parse_signals("provenance"))
    assert plain.to_dict()["provenance"]["findings"] == []


def _plain_png() -> bytes:
    buf = io.BytesIO()
    synthetic_photo(4).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_enrolled_face_is_a_lead_in_other_photos(db_url: str) -> None:
    if not FACES.is_dir():
        pytest.skip(f"reference face photos not found at {FACES} (the shared data directory)")
    from rempart.evidence.faces import FaceAnalyzer
    from rempart.store import Store
    from rempart.store.faces import FaceTemplates

    key = base64.b64encode(bytes(range(32))).decode()
    settings = load_settings(database_url=db_url, face_template_key=key)
    with Store.open(db_url) as store:
        rgb = lambda name: __import__("numpy").asarray(  # noqa: E731
            Image.open(FACES / name).convert("RGB")
        )
        (face,) = FaceAnalyzer().faces(rgb("obama.jpg"))
        FaceTemplates(store, bytes(range(32))).enrol("person-1", "default", [face.embedding])
        scanner = Scanner(store, settings)
        hit = scanner.scan_bytes(
            (FACES / "obama2.jpg").read_bytes(), signals=parse_signals("faces")
        ).to_dict()
        (f,) = hit["faces"]
        assert f["matches"][0]["person"] == "person-1"
        assert f["matches"][0]["distance"] <= f["matches"][0]["threshold"] == 0.6
        assert "not an identification" in f["matches"][0]["note"]
        other = scanner.scan_bytes(
            (FACES / "biden.jpg").read_bytes(), signals=parse_signals("faces")
        ).to_dict()
        assert other["faces"] and all(not x["matches"] for x in other["faces"])
        assert hit["verdict"] == "allow"  # a face alone is no reason to act


def test_cli_scan_prints_evidence_and_verdict(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REMPART_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    img = tmp_path / "gen.png"
    img.write_bytes(_generated_png())
    result = CliRunner().invoke(app, ["scan", "--signals", "provenance,watermark", str(img)])
    assert result.exit_code == 0, result.stderr
    (out,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert out["provenance"]["findings"][0]["source"] == "a1111"
    assert out["verdict"] == "allow" and out["reasons"]
    assert "provenance" in out["timings_ms"] and "watermarks" in out
    bad = CliRunner().invoke(app, ["scan", "--signals", "everything", str(img)])
    assert bad.exit_code == 2 and "unknown signal" in bad.stderr


@pytest.mark.slow
def test_faces_cli_enrol_list_remove(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if not FACES.is_dir():
        pytest.skip(f"reference face photos not found at {FACES} (the shared data directory)")
    monkeypatch.setenv("REMPART_DATABASE_URL", f"sqlite:///{tmp_path / 'f.db'}")
    runner = CliRunner()
    no_key = runner.invoke(app, ["faces", "list"])
    assert no_key.exit_code == 2 and "REMPART_FACE_TEMPLATE_KEY" in no_key.stderr
    monkeypatch.setenv("REMPART_FACE_TEMPLATE_KEY", base64.b64encode(bytes(32)).decode())
    ok = runner.invoke(
        app, ["faces", "enrol", "p-1", str(FACES / "obama.jpg"), str(FACES / "obama2.jpg")]
    )
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout) == {"person": "p-1", "templates": 2}
    two = runner.invoke(app, ["faces", "enrol", "p-2", str(FACES / "two_people.jpg")])
    assert two.exit_code == 2 and "exactly one" in two.stderr
    listed = [json.loads(x) for x in runner.invoke(app, ["faces", "list"]).stdout.splitlines()]
    assert [p["person_id"] for p in listed] == ["p-1"]
    gone = runner.invoke(app, ["faces", "remove", "p-1"])
    assert json.loads(gone.stdout) == {"person": "p-1", "removed": 2}
    assert runner.invoke(app, ["faces", "list"]).stdout.strip() == ""


def test_nudity_signal_on_a_clothed_portrait(store) -> None:  # type: ignore[no-untyped-def]
    """Nudity is tested through its non-sexual classes only: faces on clothed portraits."""
    if not FACES.is_dir():
        pytest.skip(f"reference face photos not found at {FACES} (the shared data directory)")
    scanner = Scanner(store, load_settings())
    out = scanner.scan_bytes(
        (FACES / "biden.jpg").read_bytes(), signals=parse_signals("nudity")
    ).to_dict()
    regions = out["nudity"]["regions"]
    assert any(r["class"] in ("FACE_FEMALE", "FACE_MALE") for r in regions)
    assert all(r["exposure"] == "none" for r in regions)
    assert out["verdict"] == "allow" and "nudity" in out["timings_ms"]
