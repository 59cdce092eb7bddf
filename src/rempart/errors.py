"""Errors meant for people.

Every error Rempart raises on purpose is a :class:`RempartError` with a stable machine
``code`` (the API returns it in a problem-JSON body, the CLI prints it), a ``message`` that
says what was wrong, and a ``hint`` that says what to do next.
"""

from __future__ import annotations

from typing import Any


class RempartError(Exception):
    """Base class: a specific, explained failure (never a crash)."""

    code: str = "error"
    #: HTTP status the service answers with for this error.
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        """The error as ``{code, message[, hint]}``, the shape the CLI and API print."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class MediaError(RempartError):
    """A file could not be decoded safely.

    Codes: ``empty_file``, ``truncated``, ``corrupt``, ``unsupported_format``,
    ``too_large`` (bytes), ``too_many_pixels`` (decompression bomb), ``too_many_frames``,
    ``too_long`` (video duration), ``no_frames``.
    """

    code = "corrupt"
    status = 422


class HashFormatError(RempartError):
    """A hash value is not of its signal type's form (``malformed_hash``)."""

    code = "malformed_hash"
    status = 422


class NotFoundError(RempartError):
    """Something named does not exist (``bank_not_found``, ``entry_not_found``, ...)."""

    code = "not_found"
    status = 404


class ConflictError(RempartError):
    """Something already exists or the change would break a rule (``bank_exists``)."""

    code = "conflict"
    status = 409


class ImportFormatError(RempartError):
    """A hash-list import had bad rows; ``errors`` lists each with its line number."""

    code = "import_rejected"
    status = 422

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint)
        self.errors = errors or []

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["errors"] = self.errors
        return out


class ConfigError(RempartError):
    """Settings or the database URL are wrong (``bad_config``)."""

    code = "bad_config"
    status = 500
