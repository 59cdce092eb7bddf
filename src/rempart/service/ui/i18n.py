"""French and English for every string of the UI: a small JSON catalogue per language.

The language is, in order: ``?lang=`` (the switch in the page header, remembered in a
cookie), that cookie, the browser's ``Accept-Language``, English.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Final

from fastapi import Request

LANGUAGES: Final = ("en", "fr")
DEFAULT: Final = "en"
LANG_COOKIE: Final = "rempart_lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The strings of ``lang`` (key -> text with ``{name}`` placeholders)."""
    text = (
        resources.files("rempart.service.ui")
        .joinpath("locales", f"{lang}.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, str] = json.loads(text)
    return data


def accept_language(header: str) -> str | None:
    """The first language of ``Accept-Language`` that the UI speaks (by q-value)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        q = 1.0
        for p in pieces[1:]:
            p = p.strip()
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, tag.split("-")[0]))
    for neg_q, _, tag in sorted(ranked):
        if tag in LANGUAGES and neg_q < 0:
            return tag
    return None


def pick_language(request: Request) -> str:
    """The language for this request."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if candidate in LANGUAGES:
            return str(candidate)
    return accept_language(request.headers.get("accept-language", "")) or DEFAULT


class Translator:
    """``t("key", name=value)``: the text in one language (English, then the key, when a
    string is missing, so a page never breaks on a missing translation)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT
        self._strings = catalogue(self.lang)
        self._fallback = catalogue(DEFAULT)

    def __call__(self, key: str, **values: Any) -> str:
        text = self._strings.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text

    def value(self, kind: str, value: object) -> str:
        """A stored value shown to people (an alert kind, a notice status): its translation
        ``kind.value`` when the catalogue has one, else the value itself."""
        key = f"{kind}.{value}"
        return self._strings.get(key) or self._fallback.get(key) or str(value)
