"""Bank entries made from hash values or from media files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rempart.hashing import hash_media
from rempart.media import read_media_file
from rempart.settings import Settings
from rempart.signals import get_signal
from rempart.store import NewEntry


def entries_for_values(
    values: dict[str, list[str]], *, source: str | None = None, tags: list[str] | None = None
) -> list[NewEntry]:
    """Entries for hash values given by signal name; every value is validated first."""
    out = []
    for signal, items in values.items():
        sig = get_signal(signal)
        for value in items:
            out.append(
                NewEntry(
                    signal=sig.name, value=sig.validate(value), source=source, tags=list(tags or [])
                )
            )
    return out


def entries_for_file(
    path: Path,
    settings: Settings,
    *,
    source: str | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[NewEntry]:
    """Entries for one media file: its PDQ (image) or frame hashes (video), and its MD5.

    Only hashes go into the bank, never the file. The file name is not kept either (it can
    name the person); pass ``metadata`` for what the bank should remember.
    """
    hashes = hash_media(read_media_file(path, settings.limits), limits=settings.limits)
    meta = dict(metadata or {})
    common: dict[str, Any] = {"source": source, "tags": list(tags or []), "meta": meta}
    out = [NewEntry(signal="md5", value=hashes.md5, **common)]
    if hashes.kind == "video":
        frames = [f["pdq"] for f in hashes.frames]
        if frames:
            out.append(NewEntry(signal="vpdq", value=hashes.md5, frames=frames, **common))
    elif hashes.pdq:
        out.append(NewEntry(signal="pdq", value=hashes.pdq, quality=hashes.pdq_quality, **common))
    return out
