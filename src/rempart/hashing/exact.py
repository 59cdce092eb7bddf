"""MD5 and SHA-256 of a file's bytes: exact copies only.

Many hash lists (police databases, older NGO lists) exchange MD5; SHA-256 is the one to
trust when a collision would matter. Both are computed over the exact bytes received, so
any re-encoding, resize or metadata strip changes them -- that is what PDQ is for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ExactHashes:
    """MD5 and SHA-256 of some bytes, as lowercase hex."""

    md5: str
    sha256: str


def exact_hashes(data: bytes | memoryview) -> ExactHashes:
    """MD5 and SHA-256 of ``data``."""
    # usedforsecurity=False: MD5 here identifies files, it protects nothing; this also keeps
    # it available on FIPS-mode systems.
    return ExactHashes(
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
    )
