"""Reading C2PA Content Credentials with ``c2pa-python`` (the Rust c2pa-rs SDK), offline.

Network access is switched off (no remote manifests, no OCSP); the only trust anchors are
the PEM text the operator configured. Without anchors a manifest whose signature checks out
is ``untrusted``: anyone can make a certificate.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Final

from rempart.media.sniff import MediaFormat

_MIME: Final[dict[MediaFormat, str]] = {
    MediaFormat.JPEG: "image/jpeg",
    MediaFormat.PNG: "image/png",
    MediaFormat.WEBP: "image/webp",
    MediaFormat.GIF: "image/gif",
    MediaFormat.TIFF: "image/tiff",
    MediaFormat.HEIF: "image/heif",
    MediaFormat.AVIF: "image/avif",
    MediaFormat.MP4: "video/mp4",
    MediaFormat.MOV: "video/quicktime",
}
_MAX_LIST: Final = 50


@dataclass
class C2paResult:
    """The active manifest, summarised; ``manifest`` is ``None`` when there is none."""

    manifest: dict[str, Any] | None = None
    #: ``valid`` (signature and data intact, signer chains to a configured anchor),
    #: ``untrusted`` (intact, signer not anchored), ``invalid`` (tampered or broken).
    validation: str | None = None
    sdk_state: str | None = None
    failures: list[str] = field(default_factory=list)
    #: Every action of every manifest in the store (active first), for source-type checks.
    actions: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[str, str] | None = None


def has_jumbf(data: bytes) -> bool:
    """Cheap pre-check: every embedded C2PA store is a JUMBF box, whose type is ``jumb``."""
    return b"jumb" in data


def _settings(trust_anchors_pem: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "verify": {"verify_trust": True, "remote_manifest_fetch": False, "ocsp_fetch": False},
    }
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    return settings


def _validation(state: str | None, failures: list[str]) -> str | None:
    if state is None:
        return None
    s = state.lower()
    if s == "trusted":
        return "valid"
    if s == "valid":
        # c2pa-rs says "Valid" when the signature and hashes check out; trust is separate.
        return "untrusted"
    if s == "invalid":
        # A signature that verifies but whose signer is merely unknown is reported as
        # untrusted, not invalid; anything else (hash mismatch, bad signature) is invalid.
        if failures and all(f.startswith("signingCredential.untrusted") for f in failures):
            return "untrusted"
        return "invalid"
    return s


def _failure_codes(results: dict[str, Any] | None) -> list[str]:
    codes: list[str] = []
    if not isinstance(results, dict):
        return codes
    active = results.get("activeManifest")
    if isinstance(active, dict):
        for item in active.get("failure") or []:
            if isinstance(item, dict) and isinstance(item.get("code"), str):
                codes.append(item["code"])
    return codes[:_MAX_LIST]


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        label = assertion.get("label")
        if not isinstance(label, str) or not label.startswith("c2pa.actions"):
            continue
        data = assertion.get("data")
        for action in (data or {}).get("actions") or [] if isinstance(data, dict) else []:
            if isinstance(action, dict):
                out.append(action)
    return out[:_MAX_LIST]


def read_c2pa(data: bytes, fmt: MediaFormat | None, trust_anchors_pem: str | None) -> C2paResult:
    """The C2PA manifest store of ``data``, validated; errors are returned, never raised."""
    result = C2paResult()
    mime = _MIME.get(fmt) if fmt is not None else None
    if mime is None or not has_jumbf(data):
        return result
    try:
        import c2pa
    except ImportError:  # pragma: no cover - c2pa-python is a dependency of this module
        result.error = ("c2pa_unavailable", "c2pa-python is not installed; C2PA not checked")
        return result
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(_settings(trust_anchors_pem)))
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
        if reader is None:
            return result
        with reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
            results = reader.get_validation_results()
    except Exception as exc:  # c2pa raises C2paError subclasses, and ValueError on bad input
        message = str(exc).strip() or type(exc).__name__
        result.error = ("malformed_manifest", f"C2PA data present but unreadable: {message[:500]}")
        return result
    manifests = store.get("manifests") if isinstance(store, dict) else None
    active_label = store.get("active_manifest") if isinstance(store, dict) else None
    if not isinstance(manifests, dict) or active_label not in manifests:
        result.error = ("malformed_manifest", "C2PA store has no active manifest")
        return result
    result.manifest = manifests[active_label]
    result.sdk_state = state
    result.failures = _failure_codes(results)
    result.validation = _validation(state, result.failures)
    ordered = [manifests[active_label]] + [m for k, m in manifests.items() if k != active_label]
    for m in ordered:
        if isinstance(m, dict):
            result.actions.extend(_actions(m))
    result.actions = result.actions[:_MAX_LIST]
    return result
