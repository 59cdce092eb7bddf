"""Signal types: the kinds of hash Rempart stores, validates and compares.

A signal type is one small object behind the :class:`SignalType` interface (name, version,
content types, validate, distance). The store validates every value through it, the matcher
compares with it, and adding a signal touches this registry and one module.

Values travel and are stored as canonical lowercase hex strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from rempart.errors import HashFormatError

_HEX = re.compile(r"[0-9a-f]+")


def _clean_hex(value: object, signal: str, nbytes: int) -> str:
    if not isinstance(value, str):
        raise HashFormatError(
            f"a {signal} hash must be a hex string, got {type(value).__name__}",
            hint=f"give {nbytes * 2} hexadecimal digits",
        )
    v = value.strip().lower()
    if v.startswith("0x"):
        v = v[2:]
    if len(v) != nbytes * 2 or not _HEX.fullmatch(v):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise HashFormatError(
            f"malformed {signal} hash {shown!r}: expected {nbytes * 2} hex digits, "
            f"got {len(v)} characters",
            hint=f"a {signal} hash is {nbytes * 2} characters of 0-9 and a-f",
        )
    return v


@dataclass(frozen=True)
class SignalType:
    """One kind of hash.

    ``exact`` signals match only on equality; the others by Hamming distance under a
    threshold.
    """

    name: str
    version: int
    content_types: tuple[str, ...]
    nbytes: int
    exact: bool
    description: str

    def validate(self, value: object) -> str:
        """Return the canonical (lowercase hex) form of ``value`` or raise HashFormatError."""
        v = _clean_hex(value, self.name, self.nbytes)
        if self.name == "pdq" and v == "0" * 64:
            # The all-zero PDQ is what a blank or failed hash looks like; matching it would
            # flag every flat image.
            raise HashFormatError(
                "the all-zero PDQ hash is not a real image hash",
                hint="remove this row; it comes from a blank image or a failed hasher",
            )
        return v

    def distance(self, a: str, b: str) -> int:
        """Hamming distance in bits (exact signals: 0 if equal, else the bit count)."""
        x = int(a, 16) ^ int(b, 16)
        return x.bit_count()


PDQ: Final = SignalType(
    name="pdq",
    version=1,
    content_types=("image", "video"),
    nbytes=32,
    exact=False,
    description=(
        "Meta's PDQ perceptual hash (256 bits). Survives resizing and recompression; "
        "matches by Hamming distance, which also opens the door to false positives on "
        "simple images -- hence the quality gate."
    ),
)
MD5: Final = SignalType(
    name="md5",
    version=1,
    content_types=("image", "video"),
    nbytes=16,
    exact=True,
    description="MD5 of the file's bytes: exact copies only (the format of many hash lists).",
)
SHA256: Final = SignalType(
    name="sha256",
    version=1,
    content_types=("image", "video"),
    nbytes=32,
    exact=True,
    description="SHA-256 of the file's bytes: exact copies only.",
)

SIGNALS: Final[dict[str, SignalType]] = {s.name: s for s in (PDQ, MD5, SHA256)}


def get_signal(name: str) -> SignalType:
    """The signal type called ``name`` (``pdq``, ``md5``, ``sha256``)."""
    try:
        return SIGNALS[name.strip().lower()]
    except KeyError:
        raise HashFormatError(
            f"unknown signal type {name!r}",
            code="unknown_signal",
            hint=f"use one of: {', '.join(sorted(SIGNALS))}",
        ) from None
