"""Ed25519 keys that sign evidence packages.

The operator makes one key (``rempart evidence keygen``) and publishes its public half (or
its fingerprint) so that anyone holding a package can check who issued it and that nothing
in it changed. The private key is a PKCS#8 PEM file readable by its owner only; public keys
are SubjectPublicKeyInfo PEM, so ``openssl`` reads both.

The fingerprint is the SHA-256 of the 32 raw public-key bytes, in hex -- the same rule as the
service key of ``rempart protect`` (:func:`rempart.cases.submission.key_fingerprint`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from rempart.errors import ConfigError
from rempart.settings import Settings

PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
#: Key files are a few hundred bytes; anything much larger is not a key.
_MAX_KEY_FILE: Final = 16 * 1024


class SigningKeyError(ConfigError):
    """No signing key, or an unreadable one (``no_signing_key``, ``bad_signing_key``,
    ``bad_public_key``, ``key_exists``)."""

    code = "bad_signing_key"


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its public half."""

    private: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return public_raw(self.private.public_key())

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the public key."""
        return fingerprint(self.public_bytes)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self.private.sign(data)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep the file private)."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM (publish this one)."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def public_raw(key: Ed25519PublicKey) -> bytes:
    """32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: bytes) -> str:
    """SHA-256 hex of 32 raw public-key bytes."""
    return hashlib.sha256(public_key).hexdigest()


def generate_key() -> SigningKey:
    """A new random key."""
    return SigningKey(Ed25519PrivateKey.generate())


def default_key_file() -> Path:
    """Where ``rempart evidence keygen`` writes when no path is configured."""
    return Path(platformdirs.user_data_dir("rempart", appauthor=False)) / "evidence-signing.pem"


def key_file(settings: Settings) -> Path:
    """The configured key file (``evidence.signing_key_file``), else the default one."""
    return settings.evidence.signing_key_file or default_key_file()


def write_key(key: SigningKey, path: Path, *, overwrite: bool = False) -> Path:
    """Write the private key (mode 0600) to ``path`` and its public key next to it
    (``<path>.pub``); returns the public key's path.

    Refuses to replace an existing key unless ``overwrite``: packages signed with the old
    key could no longer be checked against the operator's published key.
    """
    if path.exists() and not overwrite:
        raise SigningKeyError(
            f"{path} exists already",
            code="key_exists",
            hint="keep it (packages were signed with it), or pass --force to replace it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_pem())
    os.chmod(path, 0o600)
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(key.public_pem())
    return pub


def load_key(path: Path) -> SigningKey:
    """The private key in ``path`` (PKCS#8 PEM, or 32 raw/hex/base64 seed bytes)."""
    try:
        data = path.read_bytes()[: _MAX_KEY_FILE + 1]
    except FileNotFoundError:
        raise SigningKeyError(
            f"no signing key at {path}",
            code="no_signing_key",
            hint="make one with `rempart evidence keygen`, or set "
            "REMPART_EVIDENCE__SIGNING_KEY_FILE",
        ) from None
    except OSError as e:
        raise SigningKeyError(f"cannot read the signing key {path}: {e.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            loaded = serialization.load_pem_private_key(data, password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return SigningKey(loaded)
        return SigningKey(Ed25519PrivateKey.from_private_bytes(_raw32(data)))
    except (ValueError, TypeError):
        raise SigningKeyError(
            f"{path} is not an Ed25519 private key",
            hint="make one with `rempart evidence keygen`",
        ) from None


def load_signing_key(settings: Settings) -> SigningKey:
    """The operator's signing key, from settings (or the default key file)."""
    return load_key(key_file(settings))


def parse_public_key(data: bytes | str) -> bytes:
    """32 raw public-key bytes from PEM, raw bytes, hex or base64 (a file's contents)."""
    raw = data.encode() if isinstance(data, str) else data
    raw = raw[: _MAX_KEY_FILE + 1]
    try:
        if b"-----BEGIN" in raw:
            loaded = serialization.load_pem_public_key(raw)
            if not isinstance(loaded, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            return public_raw(loaded)
        return public_raw(Ed25519PublicKey.from_public_bytes(_raw32(raw)))
    except (ValueError, TypeError):
        raise SigningKeyError(
            "not an Ed25519 public key",
            code="bad_public_key",
            hint="give the issuer's .pub file (PEM), or the key as 64 hex digits or base64",
        ) from None


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _raw32(data: bytes) -> bytes:
    if len(data) == PUBLIC_KEY_BYTES:
        return data
    text = data.strip()
    for decode in (binascii.unhexlify, lambda s: base64.b64decode(s, validate=True)):
        try:
            key = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == PUBLIC_KEY_BYTES:
            return key
    raise ValueError("not 32 bytes")


__all__ = [
    "SigningKey",
    "SigningKeyError",
    "default_key_file",
    "fingerprint",
    "generate_key",
    "key_file",
    "load_key",
    "load_signing_key",
    "parse_public_key",
    "verify_signature",
    "write_key",
]
