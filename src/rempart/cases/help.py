"""Where to get help: helplines, reporting services and the law, in English and French.

The list lives in one data file, ``cases/data/help.toml``, so that people who are not
programmers can keep it current; :func:`load_help` checks its schema every time it is read,
so a broken edit fails loudly in the tests instead of printing an empty section in a
victim's report.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from rempart.errors import ConfigError

Lang = Literal["en", "fr"]
LANGS: Final[tuple[str, ...]] = ("en", "fr")
AUDIENCES: Final = frozenset({"everyone", "adults", "minors"})
_REQUIRED: Final = ("id", "country", "audience", "url", "name", "description")
_OPTIONAL: Final = ("phone", "law")


@dataclass(frozen=True, slots=True)
class HelpEntry:
    """One service, in one language."""

    id: str
    #: ISO 3166 alpha-2 code, or ``INT`` for a service that works everywhere.
    country: str
    #: ``everyone``, ``adults`` (18 and over) or ``minors`` (images made before 18).
    audience: str
    name: str
    description: str
    url: str
    phone: str | None = None
    law: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (for the API and the evidence manifest)."""
        out: dict[str, Any] = {
            "id": self.id,
            "country": self.country,
            "audience": self.audience,
            "name": self.name,
            "description": self.description,
            "url": self.url,
        }
        if self.phone:
            out["phone"] = self.phone
        if self.law:
            out["law"] = self.law
        return out


def check_lang(lang: str) -> Lang:
    """``lang`` if Rempart writes documents in it; ConfigError ``unsupported_language``."""
    if lang not in LANGS:
        raise ConfigError(
            f"unsupported language {lang!r}",
            code="unsupported_language",
            hint="use en or fr",
        )
    return lang  # type: ignore[return-value]


def _bad(message: str) -> ConfigError:
    return ConfigError(
        f"help.toml: {message}",
        code="bad_help_data",
        hint="fix src/rempart/cases/data/help.toml (its header says which keys are required)",
    )


def validate_help(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the parsed help file; returns its services or raises ``bad_help_data``."""
    if data.get("version") != 1:
        raise _bad("version must be 1")
    services = data.get("service")
    if not isinstance(services, list) or not services:
        raise _bad("no [[service]] entries")
    seen: set[str] = set()
    for n, entry in enumerate(services, 1):
        if not isinstance(entry, dict):
            raise _bad(f"service #{n} is not a table")
        where = f"service #{n} ({entry.get('id', '?')})"
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            raise _bad(f"{where} lacks {', '.join(missing)}")
        unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise _bad(f"{where} has unknown keys {', '.join(unknown)}")
        if entry["id"] in seen:
            raise _bad(f"{where}: duplicate id")
        seen.add(entry["id"])
        if entry["audience"] not in AUDIENCES:
            raise _bad(f"{where}: audience must be one of {sorted(AUDIENCES)}")
        country = entry["country"]
        if not (isinstance(country, str) and (country == "INT" or _is_alpha2(country))):
            raise _bad(f"{where}: country must be an ISO 3166 alpha-2 code or INT")
        if not (isinstance(entry["url"], str) and entry["url"].startswith("https://")):
            raise _bad(f"{where}: url must be an https:// address")
        for key in ("name", "description"):
            texts = entry[key]
            if not isinstance(texts, dict) or set(texts) != set(LANGS):
                raise _bad(f"{where}: {key} needs exactly the languages {', '.join(LANGS)}")
            if not all(isinstance(t, str) and t.strip() for t in texts.values()):
                raise _bad(f"{where}: {key} has an empty text")
        for key in _OPTIONAL:
            if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
                raise _bad(f"{where}: {key} must be a non-empty string")
    return services


def _is_alpha2(code: str) -> bool:
    return len(code) == 2 and code.isascii() and code.isalpha() and code.isupper()


@cache
def _services() -> tuple[dict[str, Any], ...]:
    text = resources.files("rempart.cases").joinpath("data/help.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _bad(f"not valid TOML ({e})") from None
    return tuple(validate_help(data))


def load_help(lang: str = "en") -> list[HelpEntry]:
    """Every service of the help file, with its texts in ``lang`` (``en`` or ``fr``)."""
    chosen = check_lang(lang)
    return [
        HelpEntry(
            id=s["id"],
            country=s["country"],
            audience=s["audience"],
            name=s["name"][chosen].strip(),
            description=" ".join(s["description"][chosen].split()),
            url=s["url"],
            phone=s.get("phone"),
            law=s.get("law"),
        )
        for s in _services()
    ]
