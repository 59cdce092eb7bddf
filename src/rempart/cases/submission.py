"""A victim's submission: hashes of her own images, made offline, with nothing else.

She runs :func:`build_submission` on her own device; it writes one JSON document holding
only hashes (PDQ with its 8 rotations/flips, MD5, SHA-256, video frame PDQs) and, if she
asks, her face template **sealed** to the service's X25519 public key (PyNaCl
``SealedBox``), so only the service can open it. No image, no part of an image and no file
name is ever written: names such as ``IMG_2041_for_tom.jpg`` can identify her. Files are
referred to by their position in the run (``index``), which only she can map back.

The ``digest`` is a SHA-256 of the canonical document: it catches corruption and naive
edits, **not** a forger (anyone can recompute it). See ``docs/protect.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rempart.errors import HashFormatError, RempartError
from rempart.hashing import DIHEDRAL_NAMES, hash_media
from rempart.media import decode_image, iter_files, read_media_file
from rempart.settings import MediaLimits
from rempart.signals import get_signal

FORMAT: Final = "rempart-submission"
VERSION: Final = 1
#: A face template: dlib's 128 floats, stored as little-endian float32 (512 bytes).
TEMPLATE_DIM: Final = 128
_TEMPLATE_BYTES: Final = TEMPLATE_DIM * 4
#: An X25519 public or private key is 32 raw bytes.
KEY_BYTES: Final = 32


class SubmissionError(RempartError):
    """A submission cannot be built, read or opened.

    Codes: ``no_service_key``, ``bad_service_key``, ``malformed_submission``,
    ``unsupported_version``, ``tampered_submission``, ``wrong_service_key``,
    ``sealing_unavailable``.
    """

    code = "malformed_submission"
    status = 422


@dataclass(frozen=True)
class SealedTemplate:
    """One face template, sealed to a service key: ``{"sealed", "key_fingerprint"}``."""

    #: Base64 of the SealedBox ciphertext (512 bytes of float32 + 48 bytes of box).
    sealed: str
    #: SHA-256 hex of the service public key it was sealed to (tells which key opens it).
    key_fingerprint: str

    def to_dict(self) -> dict[str, str]:
        return {"sealed": self.sealed, "key_fingerprint": self.key_fingerprint}


@dataclass
class Submission:
    """What leaves the device. ``to_json()`` is the file; ``summary()`` says it in words."""

    created_at: str
    #: One dict per hashed file: ``{index, kind, pdq, pdq_quality, dihedral, md5, sha256}``
    #: for photos, ``{index, kind, md5, sha256, frames: [{timestamp, pdq, quality}]}`` for
    #: videos.
    items: list[dict[str, Any]] = field(default_factory=list)
    face_templates: list[SealedTemplate] = field(default_factory=list)
    #: ``{index, stage ("hash" or "face"), code, message}``: files not hashed, photos not
    #: enrolled. Messages are written here, never copied from the file or its path.
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Local only, never serialised: ``local_paths[index]`` is the file of that index, so the
    #: person running it can see which of her files an error is about.
    local_paths: list[Path] = field(default_factory=list, repr=False)

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created_at": self.created_at,
            "items": self.items,
            "face_templates": [t.to_dict() for t in self.face_templates],
            "errors": self.errors,
        }

    @property
    def digest(self) -> str:
        """SHA-256 hex of the canonical document without its ``digest`` key."""
        return _digest(self._body())

    def to_json(self) -> str:
        """The submission file (indented JSON; the digest covers every other key)."""
        body = self._body()
        body["digest"] = _digest(body)
        return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=True) + "\n"

    def summary(self) -> str:
        """Exactly what leaves the device, in plain words."""
        photos = [i for i in self.items if i["kind"] == "image"]
        videos = [i for i in self.items if i["kind"] == "video"]
        frames = sum(len(v["frames"]) for v in videos)
        n = len(self.items)
        lines = [
            f"This file holds hashes of {n} file{_s(n)} "
            f"({len(photos)} photo{_s(len(photos))}, {len(videos)} video{_s(len(videos))}):",
            f"- {len(photos)} PDQ hash{_es(len(photos))} of photos, and of 8 rotated/flipped "
            f"versions of each ({len(photos) * 8} in all, the upright one included),",
            f"- {frames} PDQ hash{_es(frames)} of video frames,",
            f"- {n} MD5 and {n} SHA-256 hash{_es(n)} of the exact files.",
        ]
        t = len(self.face_templates)
        if t:
            fp = self.face_templates[0].key_fingerprint[:16]
            lines.append(
                f"It includes {t} face template{_s(t)} (numbers describing a face, not a "
                f"picture), sealed so that only the service holding key {fp}... can open "
                f"{'them' if t > 1 else 'it'}."
            )
        else:
            lines.append("It includes no face template.")
        hash_failed = sorted({e["index"] for e in self.errors if e["stage"] == "hash"})
        face_skipped = sorted({e["index"] for e in self.errors if e["stage"] == "face"})
        if hash_failed:
            lines.append(
                f"{len(hash_failed)} file{_s(len(hash_failed))} could not be hashed and "
                f"{'are' if len(hash_failed) > 1 else 'is'} not included (file number"
                f"{_s(len(hash_failed))} {', '.join(str(i + 1) for i in hash_failed)})."
            )
        if face_skipped:
            lines.append(
                f"{len(face_skipped)} photo{_s(len(face_skipped))} gave no face template "
                f"(file number{_s(len(face_skipped))} "
                f"{', '.join(str(i + 1) for i in face_skipped)}): only photos with exactly "
                "one face are used."
            )
        lines.append(
            "It holds no image, no part of an image and no file name. A hash is not a "
            "picture and cannot be opened as one."
        )
        return "\n".join(lines)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _es(n: int) -> str:
    return "" if n == 1 else "es"


def _digest(body: dict[str, Any]) -> str:
    # Canonical form: sorted keys, no whitespace, ASCII. Any JSON library can rebuild it.
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != "digest"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


# --- keys and sealing ---------------------------------------------------------------------


def _nacl() -> Any:
    try:
        import nacl.public
    except ImportError as exc:
        raise SubmissionError(
            "sealing face templates needs PyNaCl, which is not installed",
            code="sealing_unavailable",
            hint="pip install pynacl, or leave out face enrolment",
        ) from exc
    return nacl.public


def parse_service_key(data: bytes | str) -> bytes:
    """A 32-byte X25519 key from 32 raw bytes, 64 hex digits or base64 (surrounding
    whitespace ignored); raises ``bad_service_key`` otherwise."""
    if isinstance(data, bytes) and len(data) == KEY_BYTES:
        return data
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else data
        text = text.strip()
        if len(text) == KEY_BYTES * 2:
            key = bytes.fromhex(text)
        else:
            key = base64.b64decode(text, validate=True)
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SubmissionError(
            "the service key is not a 32-byte X25519 public key",
            code="bad_service_key",
            hint="use the key file the service published (64 hex digits or base64)",
        )
    return key


def key_fingerprint(public_key: bytes) -> str:
    """SHA-256 hex of a public key: printed by the service, so the victim can check it."""
    return hashlib.sha256(public_key).hexdigest()


def seal_template(embedding: NDArray[Any], public_key: bytes) -> SealedTemplate:
    """Seal a 128-float template to ``public_key``; only its private key can open it."""
    vector = np.asarray(embedding, dtype="<f4").reshape(-1)
    if vector.shape != (TEMPLATE_DIM,) or not np.all(np.isfinite(vector)):
        raise SubmissionError(
            f"a face template is {TEMPLATE_DIM} finite numbers", code="bad_face_template"
        )
    key = parse_service_key(public_key)
    box = _nacl().SealedBox(_nacl().PublicKey(key))
    sealed = box.encrypt(vector.tobytes())
    return SealedTemplate(base64.b64encode(sealed).decode("ascii"), key_fingerprint(key))


def unseal_template(sealed_b64: str, private_key: bytes) -> NDArray[np.float32]:
    """Service side: open a sealed template with the service's private key.

    Raises ``wrong_service_key`` when it was sealed to another key (or altered), and
    ``malformed_submission`` when it is not base64 or not a template once opened.
    """
    import nacl.exceptions

    key = parse_service_key(private_key)
    try:
        sealed = base64.b64decode(sealed_b64, validate=True)
    except (ValueError, TypeError) as exc:
        raise SubmissionError("a sealed face template is not base64") from exc
    box = _nacl().SealedBox(_nacl().PrivateKey(key))
    try:
        raw = box.decrypt(sealed)
    except nacl.exceptions.CryptoError as exc:
        raise SubmissionError(
            "this face template was not sealed to this service's key (or was altered)",
            code="wrong_service_key",
            hint="open it with the private key whose public key fingerprint it names",
        ) from exc
    if len(raw) != _TEMPLATE_BYTES:
        raise SubmissionError(f"a sealed face template opened to {len(raw)} bytes, not 512")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


# --- building -----------------------------------------------------------------------------


def _item(index: int, data: bytes, limits: MediaLimits) -> dict[str, Any]:
    h = hash_media(data, limits=limits, dihedral=True)
    if h.kind == "video":
        return {
            "index": index,
            "kind": "video",
            "md5": h.md5,
            "sha256": h.sha256,
            "frames": [
                {"timestamp": round(f["timestamp"], 3), "pdq": f["pdq"], "quality": f["quality"]}
                for f in h.frames
            ],
        }
    return {
        "index": index,
        "kind": "image",
        "pdq": h.pdq,
        "pdq_quality": h.pdq_quality,
        "dihedral": dict(h.dihedral or {}),
        "md5": h.md5,
        "sha256": h.sha256,
    }


def _error(index: int, stage: str, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "stage": stage, "code": code, "message": message}


def build_submission(
    paths: list[Path],
    *,
    limits: MediaLimits,
    enrol_face: bool = False,
    service_public_key: bytes | None = None,
    analyzer: Any = None,
) -> Submission:
    """Hash every file under ``paths`` (folders walked, sorted) into a :class:`Submission`.

    A file that cannot be read or hashed is listed in ``errors`` by index and the rest goes
    on. ``enrol_face``: every photo with exactly one face adds one face template, sealed to
    ``service_public_key`` (required: ``no_service_key``); photos with no face or several
    faces are listed in ``errors`` (stage ``face``) -- several faces because we cannot tell
    which one is hers. ``analyzer``: a :class:`~rempart.evidence.faces.FaceAnalyzer` to reuse.
    """
    key: bytes | None = None
    if enrol_face:
        if service_public_key is None:
            raise SubmissionError(
                "enrolling a face needs the service's public key, so that the template "
                "can be sealed and is never written in the clear",
                code="no_service_key",
                hint="pass the key file the service published (--service-key FILE)",
            )
        key = parse_service_key(service_public_key)
        _nacl()  # fail before hashing anything, not after
        if analyzer is None:
            from rempart.evidence.faces import FaceAnalyzer

            analyzer = FaceAnalyzer()

    out = Submission(created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for index, path in enumerate(iter_files(paths)):
        out.local_paths.append(path)
        try:
            data = read_media_file(path, limits)
            item = _item(index, data, limits)
        except RempartError as e:
            out.errors.append(_error(index, "hash", e.code, "this file could not be hashed"))
            continue
        except OSError:
            out.errors.append(_error(index, "hash", "unreadable", "this file could not be read"))
            continue
        out.items.append(item)
        if key is None or item["kind"] != "image":
            continue
        # Faces need full resolution (hashing decodes a reduced copy).
        rgb = decode_image(data, limits, draft_min_side=None).rgb
        faces = analyzer.faces(rgb)
        if len(faces) != 1:
            code = "no_face" if not faces else "several_faces"
            message = (
                "no face was found in this photo"
                if not faces
                else f"{len(faces)} faces were found; only photos of one person are enrolled"
            )
            out.errors.append(_error(index, "face", code, message))
            continue
        if faces[0].embedding is None:
            out.errors.append(
                _error(index, "face", "face_not_embedded", "the face could not be measured")
            )
            continue
        out.face_templates.append(seal_template(faces[0].embedding, key))
    return out


# --- loading ------------------------------------------------------------------------------


def _malformed(message: str) -> SubmissionError:
    return SubmissionError(
        f"not a valid Rempart submission: {message}",
        hint="ask the sender to run `rempart protect` again",
    )


def _hash(signal: str, value: object, where: str) -> str:
    try:
        return get_signal(signal).validate(value)
    except HashFormatError as e:
        raise HashFormatError(f"{where}: {e.message}", hint=e.hint) from e


def _check_item(i: int, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _malformed(f"item {i} is not an object")
    where = f"item {i}"
    kind = raw.get("kind")
    index = raw.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _malformed(f"{where} has no valid index")
    item: dict[str, Any] = {"index": index, "kind": kind}
    if kind == "image":
        expected = {"index", "kind", "pdq", "pdq_quality", "dihedral", "md5", "sha256"}
        item["pdq"] = _hash("pdq", raw.get("pdq"), f"{where} pdq")
        quality = raw.get("pdq_quality")
        if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
            raise _malformed(f"{where} pdq_quality is not a number from 0 to 100")
        item["pdq_quality"] = quality
        dihedral = raw.get("dihedral")
        if not isinstance(dihedral, dict) or set(dihedral) != set(DIHEDRAL_NAMES):
            raise _malformed(f"{where} dihedral must name the 8 variants {DIHEDRAL_NAMES}")
        item["dihedral"] = {
            name: _hash("pdq", dihedral[name], f"{where} dihedral {name}")
            for name in DIHEDRAL_NAMES
        }
    elif kind == "video":
        expected = {"index", "kind", "md5", "sha256", "frames"}
        frames = raw.get("frames")
        if not isinstance(frames, list):
            raise _malformed(f"{where} frames is not a list")
        item["frames"] = []
        for j, f in enumerate(frames):
            if not isinstance(f, dict) or set(f) != {"timestamp", "pdq", "quality"}:
                raise _malformed(f"{where} frame {j} is not {{timestamp, pdq, quality}}")
            q, ts = f["quality"], f["timestamp"]
            if not isinstance(q, int) or isinstance(q, bool) or not 0 <= q <= 100:
                raise _malformed(f"{where} frame {j} quality is not a number from 0 to 100")
            if not isinstance(ts, int | float) or isinstance(ts, bool) or ts < 0:
                raise _malformed(f"{where} frame {j} timestamp is not a time in seconds")
            pdq = _hash("pdq", f["pdq"], f"{where} frame {j} pdq")
            item["frames"].append({"timestamp": ts, "pdq": pdq, "quality": q})
    else:
        raise _malformed(f"{where} kind must be 'image' or 'video', not {kind!r}")
    item["md5"] = _hash("md5", raw.get("md5"), f"{where} md5")
    item["sha256"] = _hash("sha256", raw.get("sha256"), f"{where} sha256")
    # Unknown keys are refused: a file name slipped into an item must not pass silently.
    if set(raw) != expected:
        raise _malformed(f"{where} has unexpected or missing keys")
    return item


def load_submission(text: str) -> Submission:
    """Read and check a submission file: format and version, every hash through its signal
    type (``malformed_hash``, naming the item), then the digest (``tampered_submission``).

    Hashes come back in canonical (lowercase) form. Sealed templates are checked for shape
    only; open them with :func:`unseal_template`.
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise _malformed("it is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _malformed(f"'format' is not {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise SubmissionError(
            f"submission version {doc.get('version')!r} is not supported (this Rempart "
            f"reads version {VERSION})",
            code="unsupported_version",
            hint="update Rempart, or ask the sender to use a matching version",
        )
    keys = {"format", "version", "created_at", "items", "face_templates", "errors", "digest"}
    if set(doc) != keys:
        raise _malformed("unexpected or missing keys at the top level")
    if not isinstance(doc["created_at"], str):
        raise _malformed("'created_at' is not a string")
    if not isinstance(doc["items"], list) or not isinstance(doc["face_templates"], list):
        raise _malformed("'items' and 'face_templates' must be lists")
    if not isinstance(doc["errors"], list):
        raise _malformed("'errors' must be a list")
    items = [_check_item(i, raw) for i, raw in enumerate(doc["items"])]
    templates = []
    for i, t in enumerate(doc["face_templates"]):
        if (
            not isinstance(t, dict)
            or set(t) != {"sealed", "key_fingerprint"}
            or not isinstance(t["sealed"], str)
            or not isinstance(t["key_fingerprint"], str)
        ):
            raise _malformed(f"face template {i} is not {{sealed, key_fingerprint}}")
        templates.append(SealedTemplate(t["sealed"], t["key_fingerprint"]))
    errors = []
    for i, e in enumerate(doc["errors"]):
        if (
            not isinstance(e, dict)
            or set(e) != {"index", "stage", "code", "message"}
            or e["stage"] not in ("hash", "face")
            or not isinstance(e["index"], int)
            or not isinstance(e["code"], str)
            or not isinstance(e["message"], str)
        ):
            raise _malformed(f"error {i} is not {{index, stage, code, message}}")
        errors.append(dict(e))
    if not isinstance(doc["digest"], str) or _digest(doc) != doc["digest"].lower():
        raise SubmissionError(
            "this submission was changed after it was made: its digest does not match",
            code="tampered_submission",
            hint="ask the sender for the file exactly as `rempart protect` wrote it",
        )
    return Submission(
        created_at=doc["created_at"], items=items, face_templates=templates, errors=errors
    )
