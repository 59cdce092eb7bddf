"""What a batch scan reads: folders, ZIP and TAR archives, Telegram Desktop exports.

:func:`iter_items` turns the paths an investigator names into :class:`~rempart.batch.Item`
objects, in a stable order (sorted, recursive; dot files skipped). Archives are recognised
from their bytes wherever they are found, a folder whose ``result.json`` looks like one is a
Telegram export (any other ``result.json`` is an ordinary file), a link inside a folder that
leads out of it is refused (``symlink_outside``), and only regular files are opened (a FIFO,
socket or device is a ``not_a_regular_file`` row: opening a FIFO would block the scan).
Archives inside archives are not opened: they are scanned as files (and reported as an
unsupported format).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from rempart.batch import archives, telegram
from rempart.batch.archives import ArchiveLimits
from rempart.batch.items import BatchError, FileRef, Item, absolute, os_error
from rempart.batch.paths import within
from rempart.settings import MediaLimits


def iter_items(
    paths: Iterable[Path],
    *,
    media: MediaLimits | None = None,
    limits: ArchiveLimits | None = None,
) -> Iterator[Item]:
    """Every item under ``paths``, each once (the first time its key is seen)."""
    media = media or MediaLimits()
    limits = limits or ArchiveLimits()
    seen: set[str] = set()
    for path in paths:
        for item in _items_for(Path(path), media, limits):
            if item.key not in seen:
                seen.add(item.key)
                yield item


def _items_for(path: Path, media: MediaLimits, limits: ArchiveLimits) -> Iterator[Item]:
    if not os.path.lexists(path):
        item = Item(f"file:{absolute(path)}", str(path), {"kind": "file"})
        yield item.failed(BatchError(f"{path}: no such file or folder", code="not_found"))
    elif path.is_dir():
        if telegram.is_export(path):
            yield from telegram.iter_export(path)
        else:
            yield from _walk(path, media, limits)
    elif path.name == "result.json" and path.is_file():
        # Named on its own, it is taken for an export (a broken one says so).
        yield from telegram.iter_export(path.parent)
    else:
        yield from _file(path, None, media, limits)


def _walk(root: Path, media: MediaLimits, limits: ArchiveLimits) -> Iterator[Item]:
    # os.walk does not follow links to folders; links to files are checked in _file.
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for d in list(dirs):
            sub = Path(dirpath) / d
            if d.startswith("."):
                dirs.remove(d)
            elif telegram.is_export(sub):
                dirs.remove(d)
                yield from telegram.iter_export(sub)
        for name in sorted(files):
            if not name.startswith("."):
                yield from _file(Path(dirpath) / name, root, media, limits)


def _file(
    path: Path, root: Path | None, media: MediaLimits, limits: ArchiveLimits
) -> Iterator[Item]:
    item = Item(f"file:{absolute(path)}", str(path), {"kind": "file"}, FileRef(str(path)))
    if root is not None and path.is_symlink() and not within(path, root):
        yield item.failed(
            BatchError(
                f"{path} is a link to {os.path.realpath(path)}, outside {root}: not read",
                code="symlink_outside",
                hint="name the target itself if it should be scanned",
            )
        )
        return
    try:
        kind = archives.sniff_archive(str(path))
    except BatchError as e:  # a FIFO, socket or device: never read (it could block)
        yield item.failed(e)
        return
    except OSError as e:
        yield item.failed(os_error(str(path), e))
        return
    if kind is None:
        yield item
    else:
        yield from archives.iter_archive(str(path), kind, limits, media)
