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
from pydantic import BaseModel, Field
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
