"""Reading media files from disk within the byte limit."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from rempart.errors import MediaError
from rempart.settings import MediaLimits


def _too_large(size: int, path: Path, limits: MediaLimits) -> MediaError:
    return MediaError(
        f"{path} is {size:,} bytes, more than the limit of {limits.max_bytes:,}",
        code="too_large",
        hint="raise limits.max_bytes (REMPART_LIMITS__MAX_BYTES) if you trust the file",
    )


def read_media_file(path: str | os.PathLike[str], limits: MediaLimits) -> bytes:
    """The bytes of ``path``, refusing files over ``limits.max_bytes`` without reading them.

    The size is checked before reading and again while reading (at most one byte over the
    limit is ever read), so a file that grows, a FIFO or a device cannot exhaust memory.

    Raises :class:`~rempart.errors.MediaError` ``too_large``; lets :class:`OSError` from
    the file system through (``FileNotFoundError``, ``IsADirectoryError``, ...), so callers
    can tell a missing file from a bad one.
    """
    p = Path(path)
    with p.open("rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size > limits.max_bytes:
            raise _too_large(st.st_size, p, limits)
        data = f.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), p, limits)
    return data


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files under folders named (recursively, sorted; dotfiles and dot
    folders skipped). Used by every command and library call that takes folders."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        yield Path(root) / name
        else:
            yield path
