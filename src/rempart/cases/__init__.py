"""Cases: what a victim brings to Rempart.

:func:`build_submission` runs offline on her own device and produces a file holding only
hashes (and, if she asks, a face template sealed to the service's key); the service reads it
with :func:`load_submission` and opens a template with :func:`unseal_template`.
"""

from rempart.cases.submission import (
    FORMAT,
    VERSION,
    SealedTemplate,
    Submission,
    SubmissionError,
    build_submission,
    key_fingerprint,
    load_submission,
    parse_service_key,
    seal_template,
    unseal_template,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "SealedTemplate",
    "Submission",
    "SubmissionError",
    "build_submission",
    "key_fingerprint",
    "load_submission",
    "parse_service_key",
    "seal_template",
    "unseal_template",
]
