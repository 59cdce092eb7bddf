"""Fixtures for batch scanning: a store with banks, images Rempart draws itself, a corpus
(folder, archives, a Telegram Desktop export) and an in-process engine for quick runs."""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rempart.batch import BatchConfig, EngineStats, Item, ItemScanner, ScanOptions
from rempart.batch.engine import Sink
from rempart.entries import entries_for_values
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.hashing import hash_media
from rempart.settings import MediaLimits, Settings, load_settings
from rempart.store import Store


class SerialEngine:
    """Runs items in this process through one ItemScanner (fast for tests; the local pool
    and Ray run the very same ItemScanner in their workers)."""

    name = "serial"
    workers = 1

    def __init__(self, scanner: Callable[[ScanOptions], ItemScanner] = ItemScanner) -> None:
        self._factory = scanner

    def run(self, items: Iterable[Item], options: ScanOptions, sink: Sink) -> EngineStats:
        scanner = self._factory(options)
        t0 = time.perf_counter()
        n = 0
        try:
            for item in items:
                sink(*scanner.scan(item))
                n += 1
        finally:
            scanner.close()
        return EngineStats(self.name, 1, n, 0.0, time.perf_counter() - t0)


@pytest.fixture
def serial() -> SerialEngine:
    return SerialEngine()


def image(seed: int) -> bytes:
    """A JPEG drawn by Rempart (``rempart.examples``), different for each seed."""
    return jpeg_bytes(synthetic_photo(seed))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture
def add_to_bank(settings: Settings) -> Callable[..., list[int]]:
    """``add_to_bank(bank, data...)``: put the PDQ of each image in ``bank`` (created if
    needed); the new entry ids."""

    def add(bank: str, *datas: bytes) -> list[int]:
        store = Store.open(settings.database_url)
        try:
            if bank not in {b.name for b in store.list_banks(tenant="default")}:
                store.create_bank(bank)
            pdqs = [hash_media(d, limits=MediaLimits()).pdq for d in datas]
            entries = entries_for_values({"pdq": pdqs})
            return list(store.add_entries(bank, entries).ids)
        finally:
            store.close()

    return add


@pytest.fixture
def config(settings: Settings, tmp_path: Path) -> Callable[..., BatchConfig]:
    """``config(*paths, **options)``: a BatchConfig writing into ``tmp_path / "out"``."""

    def make(*paths: Path, **options: Any) -> BatchConfig:
        options.setdefault("out", tmp_path / "out")
        return BatchConfig(paths=list(paths), settings=settings, **options)

    return make


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@dataclass
class Export:
    """A synthetic Telegram Desktop export and what its messages hold."""

    root: Path
    photos: dict[int, bytes]


def write_export(root: Path, *, seeds: tuple[int, ...] = (40, 41)) -> Export:
    """A one-chat Telegram Desktop JSON export: a photo per seed, a video-file message whose
    file is missing, a service message, and a file Telegram did not export."""
    (root / "photos").mkdir(parents=True)
    (root / "video_files").mkdir()
    messages: list[dict[str, Any]] = [
        {"id": 1, "type": "service", "date": "2020-10-20T10:00:00", "actor": "Channel"}
    ]
    photos: dict[int, bytes] = {}
    for n, seed in enumerate(seeds, start=2):
        data = image(seed)
        rel = f"photos/photo_{n}@20-10-2020_12-00-00.jpg"
        (root / rel).write_bytes(data)
        photos[n] = data
        messages.append(
            {
                "id": n,
                "type": "message",
                "date": f"2020-10-20T12:0{n}:00",
                "from": "nudify_bot",
                "from_id": "user777",
                "photo": rel,
                "width": 640,
                "height": 480,
                "text": "",
            }
        )
    messages.append(
        {
            "id": 10,
            "type": "message",
            "date": "2020-10-21T08:00:00",
            "from": "someone",
            "from_id": "user1",
            "file": "video_files/clip.mp4",
            "thumbnail": "video_files/clip.mp4_thumb.jpg",
            "media_type": "video_file",
        }
    )
    messages.append(
        {
            "id": 11,
            "type": "message",
            "date": "2020-10-21T09:00:00",
            "from": "someone",
            "file": "(File not included. Change data exporting settings to download.)",
        }
    )
    chat = {"name": "Gallery", "type": "public_channel", "id": 1234567, "messages": messages}
    (root / "result.json").write_text(json.dumps(chat), encoding="utf-8")
    return Export(root, photos)
