"""MD5 and SHA-256 of the bytes."""

from __future__ import annotations

import hashlib

from rempart.hashing import exact_hashes


def test_known_vectors():
    h = exact_hashes(b"abc")
    assert h.md5 == "900150983cd24fb0d6963f7d28e17f72"
    assert h.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_any_byte_changes_them():
    data = bytes(range(256)) * 100
    changed = bytearray(data)
    changed[5000] ^= 1
    a, b = exact_hashes(data), exact_hashes(bytes(changed))
    assert a.md5 != b.md5 and a.sha256 != b.sha256
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert exact_hashes(memoryview(data)) == a
