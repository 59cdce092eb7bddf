"""One settings object for the whole of Rempart.

Values come from (in order of precedence) explicit arguments, ``REMPART_*`` environment
variables, and a TOML file named by ``REMPART_CONFIG``. The object is passed in to whatever
needs it; nothing reads settings from globals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_database_url() -> str:
    """A SQLite file in the user's data directory (created on first use)."""
    data_dir = Path(platformdirs.user_data_dir("rempart", appauthor=False))
    return f"sqlite:///{data_dir / 'rempart.db'}"


class MediaLimits(BaseModel):
    """Limits applied before and while decoding untrusted media.

    The pixel limit is what stops decompression bombs: a PNG can declare 30000 x 30000 pixels
    (2.7 GB of RGB) in a few kilobytes, so dimensions are checked from the header, before any
    pixel is decoded.
    """

    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=100_000_000, gt=0)
    max_frames: int = Field(default=1_000, gt=0)
    max_duration_s: float = Field(default=3 * 3600.0, gt=0)
    #: Frames decoded per second of video (vPDQ-style sampling).
    video_fps: float = Field(default=1.0, gt=0)


class ServiceSettings(BaseModel):
    """The HTTP service (``rempart serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    #: Requests per second allowed per API key (token bucket, per worker process); 0 = off.
    rate_limit_per_s: float = Field(default=200.0, ge=0)
    rate_limit_burst: int = Field(default=400, ge=1)
    #: How often each worker applies the store's change log to its in-memory index.
    refresh_interval_s: float = Field(default=0.25, gt=0, le=60)
    #: Keep scan records (hashes, matches, verdict -- never the bytes) for feedback.
    record_scans: bool = True
    #: Largest hash-list upload to /v1/banks/{bank}/import.
    max_import_bytes: int = Field(default=2 * 1024**3, gt=0)
    #: Run the webhook dispatcher and feed scheduler in this process.
    background_jobs: bool = True
    #: Let webhooks, feeds and alert webhooks reach loopback, private and link-local
    #: addresses (off: tenants could use the service to probe the operator's network).
    egress_allow_private: bool = False


class WebhookSettings(BaseModel):
    """Delivery of the tenants' webhooks (the dispatcher each ``rempart serve`` worker runs).

    A failed attempt is retried after ``backoff_base_s``, doubling each time up to
    ``backoff_cap_s`` (with jitter); after ``max_attempts`` the delivery is dead until someone
    redelivers it. The defaults give up after about ten minutes; 14 attempts keep trying for
    about four hours.
    """

    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_s: float = Field(default=5.0, gt=0, le=86_400)
    backoff_cap_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    #: Per phase of one send (connect, write, read): a slow receiver holds one of
    #: ``concurrency`` senders at most this long.
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    concurrency: int = Field(default=4, ge=1, le=64)
    #: How often the outbox is polled when nothing woke the dispatcher.
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> WebhookSettings:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("webhooks.backoff_cap_s must be at least webhooks.backoff_base_s")
        return self


class SmtpSettings(BaseModel):
    """Outgoing mail for case alerts and notices. No host: e-mail is off."""

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    #: Sender address of alert and notice e-mails.
    sender: str = "rempart@localhost"
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class CaseSettings(BaseModel):
    """Victims' cases (``rempart.cases``)."""

    #: Wrong PINs one client address may send for one case number before that address is
    #: locked out of that number (every worker counts together, in the store).
    pin_attempts: int = Field(default=5, ge=1, le=100)
    #: How long such an address is locked out; each further lockout in the window doubles it.
    lockout_s: float = Field(default=900.0, gt=0)
    #: Wrong PINs for one case number from all addresses together, within ``pin_window_s``,
    #: that lock the number for everyone until the window ends. Much higher than
    #: ``pin_attempts``, so that nobody can lock her out from one address (docs/cases.md).
    case_pin_attempts: int = Field(default=100, ge=1, le=100_000)
    #: The window wrong PINs are counted in.
    pin_window_s: float = Field(default=86_400.0, gt=0)
    #: The service's X25519 private key (file written by ``rempart cases keygen``): opens
    #: face templates sealed by ``rempart protect --enrol-face``.
    service_key_file: Path | None = None
    #: Tenants whose alerts wait for a moderator to confirm the scan (true-positive feedback)
    #: before they reach the victim. The default: a tenant's policy file overrides it with
    #: ``[alerts] after_review = true|false`` (docs/policy.md).
    alert_after_review: list[str] = Field(default_factory=list)
    #: Public address of the service, used in alert e-mails to link the case page.
    public_url: str = "http://127.0.0.1:8000"
    #: Largest submission accepted by POST /v1/cases (hashes only: a few KB per file).
    max_submission_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    #: Cases one client address may open per hour (per worker process); 0 = no limit.
    submissions_per_hour: float = Field(default=20.0, ge=0)
    #: Case-number + PIN checks one client address may make per minute (per worker
    #: process; the per-case lockout above is shared by all workers); 0 = no limit.
    pin_checks_per_minute: float = Field(default=30.0, ge=0)
    #: Attempts to deliver one alert (e-mail, webhook) before giving up.
    alert_attempts: int = Field(default=8, ge=1, le=100)

    @model_validator(mode="after")
    def _case_limit_not_below_address_limit(self) -> CaseSettings:
        if self.case_pin_attempts < self.pin_attempts:
            raise ValueError("cases.case_pin_attempts must be at least cases.pin_attempts")
        return self


class EvidenceSettings(BaseModel):
    """Evidence packages and takedown notices."""

    #: Ed25519 private key file (``rempart evidence keygen``) that signs packages.
    signing_key_file: Path | None = None
    #: Hours between reminders of a notice until the content is removed (Arachnid: 24).
    renotice_hours: float = Field(default=24.0, gt=0)


class UISettings(BaseModel):
    """The moderators' web UI at ``/ui``."""

    enabled: bool = True
    #: Keep a small blurred, encrypted preview of items that enter the review queue.
    previews: bool = True
    preview_retention_days: float = Field(default=7.0, gt=0)
    #: Session lifetime.
    session_hours: float = Field(default=12.0, gt=0)
    #: Secret that signs session cookies and CSRF tokens; generated per process when unset
    #: (sessions then do not survive a restart and do not cross workers).
    session_secret: SecretStr | None = None
    #: Key (32 bytes, base64 or hex) that seals review previews (AES-GCM). When unset it is
    #: derived from ``session_secret`` (HKDF-SHA256, see docs/ui.md).
    preview_key: SecretStr | None = None
    #: UI admins (user names) who act as the service's operator and see victims' cases: a
    #: case spans every platform, so a tenant's admin is not enough (as the API's ``cases``
    #: scope).
    case_operators: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    """Everything configurable in Rempart."""

    model_config = SettingsConfigDict(
        env_prefix="REMPART_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(default_factory=default_database_url)
    limits: MediaLimits = Field(default_factory=MediaLimits)
    #: PDQ distance at or under which two hashes match (Meta's recommended 31).
    pdq_threshold: int = Field(default=31, ge=0, le=256)
    #: PDQ hashes of lower quality are reported but never matched (Meta's gate: 50).
    pdq_quality_gate: int = Field(default=50, ge=0, le=100)
    #: Share of a query video's frames that must match a bank video (vPDQ rule).
    vpdq_match_share: float = Field(default=0.8, gt=0, le=1)
    #: Hash borderless copies too when matching (letterboxed re-uploads).
    trim_borders: bool = True
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    #: Key (32 bytes, base64 or hex) that seals enrolled face templates (AES-GCM). Without it,
    #: faces are detected but never matched or enrolled.
    face_template_key: SecretStr | None = None
    #: Keys being rotated out (same form, a JSON list in REMPART_FACE_TEMPLATE_PREVIOUS_KEYS):
    #: templates sealed with them still open, so matching goes on while
    #: ``rempart faces rotate-key`` re-seals them under ``face_template_key``. Remove a key
    #: once ``rempart faces key-status`` shows no row left under it (docs/faces.md).
    face_template_previous_keys: list[SecretStr] = Field(default_factory=list)
    #: Face distance at or under which a face is a lead for an enrolled person.
    face_threshold: float = Field(default=0.6, gt=0, le=2)
    #: PEM file of C2PA trust anchors (issuers whose credentials count as trusted).
    c2pa_trust_anchors: Path | None = None
    #: Manifests (TOML) of the operator's learned detectors.
    detectors: list[Path] = Field(default_factory=list)
    #: Policy file (TOML) per tenant; tenants not named use the shipped policy.
    policies: dict[str, Path] = Field(default_factory=dict)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    cases: CaseSettings = Field(default_factory=CaseSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    ui: UISettings = Field(default_factory=UISettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("REMPART_CONFIG")
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with ``overrides`` on top.

    ``None`` overrides are ignored, so CLI options can be passed straight through.
    """
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
