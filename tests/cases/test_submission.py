"""The victim's submission: hashes only, sealed face templates, checked on the way in.

Images are drawn (``rempart.examples``); face tests read the clothed reference portraits in
``/work/shared/data/faces`` in place and skip when they are absent.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rempart.errors import RempartError
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.settings import MediaLimits

nacl_public = pytest.importorskip("nacl.public", reason="PyNaCl is not installed")

from rempart.cases import (  # noqa: E402
    SubmissionError,
    build_submission,
    key_fingerprint,
    load_submission,
    unseal_template,
)

FACES_DIR = Path(os.environ.get("REMPART_FACES_DIR", "/work/shared/data/faces"))
LIMITS = MediaLimits()


@pytest.fixture
def folder(tmp_path: Path, make_video: Callable[..., bytes]) -> Path:
    """Three drawn photos, one short video and a text file that cannot be hashed."""
    d = tmp_path / "secret_names_of_alice"
    d.mkdir()
    for i in range(3):
        (d / f"alice_private_{i}.jpg").write_bytes(jpeg_bytes(synthetic_photo(7000 + i)))
    frames = [np.asarray(synthetic_photo(7100 + i // 10, (320, 240))) for i in range(30)]
    (d / "alice_video.mp4").write_bytes(make_video(frames, fps=10))
    (d / "alice_notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    private = nacl_public.PrivateKey.generate()
    return bytes(private), bytes(private.public_key)


def test_folder_gives_hashes_only(folder: Path) -> None:
    sub = build_submission([folder], limits=LIMITS)
    assert [i["index"] for i in sub.items] == [1, 2, 3, 4]
    assert [i["kind"] for i in sub.items] == ["image", "image", "image", "video"]
    # Files are walked sorted: alice_notes.txt is index 0, the photos 1-3, the video 4.
    assert sub.errors == [
        {
            "index": 0,
            "stage": "hash",
            "code": "unsupported_format",
            "message": "this file could not be hashed",
        }
    ]
    photo = sub.items[0]
    assert len(photo["dihedral"]) == 8 and photo["pdq"] == photo["dihedral"]["original"]
    assert photo["pdq_quality"] >= 50 and len(photo["md5"]) == 32
    video = sub.items[3]
    assert len(video["frames"]) >= 2 and "pdq" not in video
    assert sub.face_templates == []

    text = sub.to_json()
    for secret in ("alice", "secret", ".jpg", ".mp4", ".txt", str(folder)):
        assert secret not in text
    doc = json.loads(text)
    assert doc["format"] == "rempart-submission" and doc["version"] == 1
    assert doc["digest"] == sub.digest

    again = load_submission(text)
    assert again.items == sub.items and again.errors == sub.errors
    assert again.to_json() == text

    words = sub.summary()
    assert "4 files" in words and "no file name" in words and "no face template" in words
    assert "alice" not in words


def _doc(sub_text: str) -> dict:
    return json.loads(sub_text)


def test_tampering_is_caught(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(synthetic_photo(1)))
    text = build_submission([tmp_path], limits=LIMITS).to_json()

    doc = _doc(text)
    pdq = doc["items"][0]["pdq"]
    doc["items"][0]["pdq"] = ("0" if pdq[0] != "0" else "1") + pdq[1:]
    with pytest.raises(RempartError) as e:
        load_submission(json.dumps(doc))
    assert e.value.code == "tampered_submission"

    doc = _doc(text)
    doc["digest"] = "f" * 64
    with pytest.raises(RempartError) as e:
        load_submission(json.dumps(doc))
    assert e.value.code == "tampered_submission"

    doc = _doc(text)
    doc["items"][0]["file_name"] = "a.jpg"
    with pytest.raises(RempartError) as e:
        load_submission(json.dumps(doc))
    assert e.value.code == "malformed_submission"


def test_malformed_hash_names_the_item(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg_bytes(synthetic_photo(10 + i)))
    doc = _doc(build_submission([tmp_path], limits=LIMITS).to_json())
    doc["items"][1]["dihedral"]["rot90"] = "xyz"
    with pytest.raises(RempartError) as e:
        load_submission(json.dumps(doc))
    assert e.value.code == "malformed_hash" and "item 1" in e.value.message

    doc["version"] = 2
    with pytest.raises(RempartError) as e:
        load_submission(json.dumps(doc))
    assert e.value.code == "unsupported_version"
    with pytest.raises(RempartError) as e:
        load_submission("not json")
    assert e.value.code == "malformed_submission"


def test_enrolment_needs_a_service_key(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(synthetic_photo(1)))
    with pytest.raises(SubmissionError) as e:
        build_submission([tmp_path], limits=LIMITS, enrol_face=True)
    assert e.value.code == "no_service_key"
    with pytest.raises(SubmissionError) as e:
        build_submission([tmp_path], limits=LIMITS, enrol_face=True, service_public_key=b"x")
    assert e.value.code == "bad_service_key"


@pytest.fixture(scope="module")
def portraits() -> Path:
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    for name in ("obama.jpg", "two_people.jpg"):
        if not (FACES_DIR / name).is_file():
            pytest.skip(f"reference portrait {name} not found in {FACES_DIR}")
    return FACES_DIR


def test_face_is_sealed_and_opens_only_with_its_key(
    portraits: Path, keys: tuple[bytes, bytes]
) -> None:
    from rempart.evidence.faces import FaceAnalyzer
    from rempart.media import decode_image

    private, public = keys
    paths = [portraits / "obama.jpg", portraits / "two_people.jpg"]
    sub = build_submission(paths, limits=LIMITS, enrol_face=True, service_public_key=public)
    assert len(sub.items) == 2 and len(sub.face_templates) == 1
    assert [(e["index"], e["stage"], e["code"]) for e in sub.errors] == [
        (1, "face", "several_faces")
    ]
    template = sub.face_templates[0]
    assert template.key_fingerprint == key_fingerprint(public)

    text = sub.to_json()
    assert "obama" not in text and "two_people" not in text
    loaded = load_submission(text)
    vector = unseal_template(loaded.face_templates[0].sealed, private)

    rgb = decode_image((portraits / "obama.jpg").read_bytes(), LIMITS, draft_min_side=None).rgb
    expected = FaceAnalyzer().faces(rgb)[0].embedding
    assert vector.dtype == np.float32 and vector.shape == (128,)
    np.testing.assert_array_equal(vector, expected)
    # Not in the clear: neither the floats' bytes base64'd nor the numbers as text appear.
    assert base64.b64encode(expected.tobytes())[:40].decode() not in text
    assert f"{float(expected[0]):.6f}"[2:] not in text

    words = sub.summary()
    assert "1 face template" in words and "sealed" in words and "file number 2" in words

    other = bytes(nacl_public.PrivateKey.generate())
    with pytest.raises(SubmissionError) as e:
        unseal_template(template.sealed, other)
    assert e.value.code == "wrong_service_key"


def test_protect_cli_writes_only_hashes(tmp_path: Path) -> None:
    """`rempart protect` as a victim runs it: a file of hashes, a summary, no names."""
    import json as _json

    from typer.testing import CliRunner

    from rempart.cli import app
    from rempart.examples import jpeg_bytes, synthetic_photo

    photos = tmp_path / "my photos"
    photos.mkdir()
    (photos / "holiday-anna.jpg").write_bytes(jpeg_bytes(synthetic_photo(5)))
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "submission.json"
    result = CliRunner().invoke(app, ["protect", str(photos), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    summary = _json.loads(result.stdout)
    assert summary["items"] == 1 and summary["errors"] == 1
    text = out.read_text()
    assert "anna" not in text and "holiday" not in text and "notes" not in text
    assert "not included" in result.stderr and "notes.txt" in result.stderr
    refused = CliRunner().invoke(app, ["protect", "--enrol-face", str(photos), "-o", str(out)])
    assert refused.exit_code == 2 and "key" in refused.stderr
