"""Where to get help: the data file's schema, both languages, the services the issue names."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

import pytest

from rempart.cases.help import load_help, validate_help
from rempart.errors import ConfigError


def _data() -> dict[str, Any]:
    text = resources.files("rempart.cases").joinpath("data/help.toml").read_text("utf-8")
    return tomllib.loads(text)


def test_the_shipped_file_validates() -> None:
    services = validate_help(_data())
    assert len(services) >= 6


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_every_service_has_texts_in_each_language(lang: str) -> None:
    entries = load_help(lang)
    assert entries and all(
        e.name and e.description and e.url.startswith("https://") for e in entries
    )
    ids = {e.id for e in entries}
    assert {
        "fr-3018",
        "fr-pharos",
        "fr-complaint",
        "uk-rph",
        "us-take-it-down",
        "int-stopncii",
    } <= ids
    by_id = {e.id: e for e in entries}
    assert by_id["fr-3018"].phone == "3018"
    assert "internet-signalement.gouv.fr" in by_id["fr-pharos"].url
    assert "226-8-1" in by_id["fr-complaint"].description
    assert by_id["us-take-it-down"].audience == "minors"
    assert by_id["int-stopncii"].audience == "adults"
    assert by_id["uk-rph"].country == "GB"


def test_languages_differ() -> None:
    en = {e.id: e.description for e in load_help("en")}
    fr = {e.id: e.description for e in load_help("fr")}
    assert en.keys() == fr.keys() and all(en[k] != fr[k] for k in en)


def _broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(_data())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(service=[]), "no [[service]]"),
        (lambda d: d["service"][0].pop("url"), "lacks url"),
        (lambda d: d["service"][0].update(url="http://insecure.example"), "https://"),
        (lambda d: d["service"][0]["name"].pop("fr"), "languages"),
        (lambda d: d["service"][0]["description"].update(en="  "), "empty"),
        (lambda d: d["service"][0].update(audience="teens"), "audience"),
        (lambda d: d["service"][0].update(country="France"), "country"),
        (lambda d: d["service"][1].update(id=d["service"][0]["id"]), "duplicate"),
        (lambda d: d["service"][0].update(colour="red"), "unknown keys"),
    ],
)
def test_schema_errors_are_explained(change: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_help(_broken(change))
    assert info.value.code == "bad_help_data"
    assert message in info.value.message


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_help("de")
    assert info.value.code == "unsupported_language"
