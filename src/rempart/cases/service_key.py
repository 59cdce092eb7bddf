"""The service's X25519 key pair: opens sealed face templates and victims' contact details.

``rempart cases keygen`` writes two files: the **private** key (64 hex digits, mode 0600),
named in ``settings.cases.service_key_file``, and the **public** key, which the operator
publishes and victims pass to ``rempart protect --service-key``. Face templates are sealed
to the public key on her device (:func:`rempart.cases.seal_template`); the service seals her
e-mail address and webhook URL to the same key before storing them, so a copy of the
database alone reveals neither.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rempart.cases.submission import SubmissionError, key_fingerprint, parse_service_key
from rempart.errors import ConfigError
from rempart.settings import Settings


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh ``(private, public)`` X25519 key pair, 32 raw bytes each."""
    import nacl.public

    private = nacl.public.PrivateKey.generate()
    return bytes(private), bytes(private.public_key)


def public_key_of(private: bytes) -> bytes:
    """The public key of a private key."""
    import nacl.public

    return bytes(nacl.public.PrivateKey(parse_service_key(private)).public_key)


def write_keypair(private_path: Path, public_path: Path, *, overwrite: bool = False) -> str:
    """Write a new key pair as hex files; returns the public key's fingerprint.

    Refuses to replace an existing private key unless ``overwrite``: templates and contacts
    sealed to the old key could no longer be opened.
    """
    if private_path.exists() and not overwrite:
        raise ConfigError(
            f"{private_path} exists; replacing it would make every sealed template and "
            "contact unreadable",
            code="key_exists",
            hint="choose another path, or pass --force if you really mean it",
        )
    private, public = generate_keypair()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(private.hex() + "\n")
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_text(public.hex() + "\n", encoding="ascii")
    return key_fingerprint(public)


def load_private_key(settings: Settings, *, purpose: str) -> bytes:
    """The private key named by ``settings.cases.service_key_file``.

    Raises ConfigError ``no_service_key`` (503) when none is configured: ``purpose`` says
    what needed it, so the error tells the operator what is off.
    """
    path = settings.cases.service_key_file
    if path is None:
        raise ConfigError(
            f"{purpose} needs the service key, and none is configured",
            code="no_service_key",
            hint="run `rempart cases keygen` and set REMPART_CASES__SERVICE_KEY_FILE",
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the service key file {path}: {exc}",
            code="no_service_key",
            hint="check REMPART_CASES__SERVICE_KEY_FILE and the file's permissions",
        ) from None
    try:
        return parse_service_key(text)
    except SubmissionError:
        raise ConfigError(f"{path} is not an X25519 private key", code="no_service_key") from None


def seal_json(value: dict[str, Any], public: bytes) -> bytes:
    """``value`` as JSON, sealed (SealedBox) to ``public``."""
    import nacl.public

    box = nacl.public.SealedBox(nacl.public.PublicKey(public))
    return bytes(box.encrypt(json.dumps(value, sort_keys=True).encode("utf-8")))


def unseal_json(sealed: bytes, private: bytes) -> dict[str, Any]:
    """Open what :func:`seal_json` sealed; ConfigError ``contact_unreadable`` otherwise."""
    import nacl.exceptions
    import nacl.public

    box = nacl.public.SealedBox(nacl.public.PrivateKey(private))
    try:
        value = json.loads(box.decrypt(bytes(sealed)).decode("utf-8"))
    except (nacl.exceptions.CryptoError, ValueError):
        raise ConfigError(
            "a sealed contact does not open with the configured service key",
            code="contact_unreadable",
            hint="was the service key replaced? configure the key the case was made with",
        ) from None
    if not isinstance(value, dict):
        raise ConfigError("a sealed contact is not an object", code="contact_unreadable")
    return value
