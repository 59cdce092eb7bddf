"""Items: one piece of media in a corpus, where it came from, and how to get its bytes.

An :class:`Item` is what the sources produce and the engines scan. It is small and picklable
(a *locator*, never the bytes, except for members of compressed TAR archives, which can only
be read in order), so it can cross into a worker process or a Ray cluster. Its ``key`` is
stable from one run to the next: the results writer uses it to skip items already done.

An item whose ``error`` is set failed before it could be scanned (a ``../`` path in an
archive, media that a Telegram export names but does not contain, a broken archive): it
becomes a result row with that error, and the scan goes on.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from rempart.errors import MediaError, RempartError
from rempart.settings import MediaLimits

if TYPE_CHECKING:
    from rempart.batch.archives import ArchiveLimits


class BatchError(RempartError):
    """An input of a batch scan could not be read safely (the item's row says why).

    Codes: ``not_found``, ``unreadable``, ``broken_archive``, ``unsafe_path`` (``../`` or an
    absolute name in an archive or an export), ``unsafe_member`` (a link or device in an
    archive), ``symlink_outside`` (a link out of the folder scanned), ``encrypted``,
    ``archive_bomb`` (a member or archive that decompresses far beyond its size),
    ``too_many_members``, ``archive_too_large`` (an archive holding more bytes in all than
    allowed, at an ordinary compression ratio), ``malformed_export``, ``missing_media``,
    ``not_exported``, ``not_a_regular_file`` (a FIFO, socket or device: never opened for
    reading, which could block forever).
    """

    code = "batch_input"
    status = 422


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file on disk (readable from the worker: a shared file system on a cluster)."""

    path: str


@dataclass(frozen=True, slots=True)
class ZipRef:
    """Member ``index`` of a ZIP archive, with the sizes its directory declares."""

    archive: str
    index: int
    name: str
    size: int
    compressed_size: int


@dataclass(frozen=True, slots=True)
class TarRef:
    """A regular file inside an uncompressed TAR: ``size`` bytes at ``offset``."""

    archive: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class TarStreamRef:
    """Member ``index`` of a compressed TAR: only readable in order, so the driver reads it
    (see :class:`rempart.batch.archives.TarStreamReader`) and hands the bytes on inline."""

    archive: str
    index: int
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class InlineRef:
    """Bytes already read (a compressed TAR member)."""

    data: bytes = field(repr=False)


Locator = FileRef | ZipRef | TarRef | TarStreamRef | InlineRef


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to scan, or one input that failed before scanning (``error`` set)."""

    #: Stable identity across runs: ``file:/abs/path``, ``zip:/abs/a.zip!member``, ...
    key: str
    #: What a person reads: the path, ``archive.zip!member``, ``export/photos/x.jpg``.
    path: str
    #: Provenance: ``kind`` (file, zip, tar, telegram) and, for archives and exports, where
    #: inside (``archive``, ``member``; ``chat``, ``message_id``, ``sender``, ``date`` ...).
    source: dict[str, Any]
    locator: Locator | None = None
    error: dict[str, Any] | None = None

    def with_locator(self, locator: Locator) -> Item:
        """The same item, read from ``locator``."""
        return Item(self.key, self.path, self.source, locator, self.error)

    def failed(self, error: RempartError | dict[str, Any]) -> Item:
        """The same item, as a failure."""
        err = error.to_dict() if isinstance(error, RempartError) else error
        return Item(self.key, self.path, self.source, None, err)


def error_row(item: Item, error: dict[str, Any]) -> dict[str, Any]:
    """The result row of an item that could not be scanned."""
    return {"key": item.key, "path": item.path, "source": item.source, "error": error}


def os_error(path: str, error: OSError) -> BatchError:
    """A file-system error as a person reads it (``not_found`` or ``unreadable``)."""
    code = "not_found" if isinstance(error, FileNotFoundError) else "unreadable"
    return BatchError(f"{path}: {error.strerror or error}", code=code)


#: Error codes worth another try on a re-run into the same folder: the file system may have
#: been fixed since (a permission, a mount, a copy finished). Rows with these are scanned again.
TRANSIENT_ERRORS = frozenset({"unreadable", "not_found", "missing_media"})


def not_regular(path: str) -> BatchError:
    """The error of a FIFO, socket or device where a file was expected."""
    return BatchError(
        f"{path} is not a regular file (a FIFO, socket or device): not read",
        code="not_a_regular_file",
        hint="only regular files are scanned; copy the data into a file to scan it",
    )


def open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading, only if it is a regular file (links followed).

    Checked by name, then opened non-blocking and checked again on the open descriptor:
    opening a FIFO for reading blocks until a writer comes, which would hang a scan, and the
    name alone would leave a window for a swap.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # a socket cannot even be opened
        raise not_regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_regular(path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file(path: str, limits: MediaLimits) -> bytes:
    """The bytes of the regular file ``path``, never more than ``limits.max_bytes``."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(limits.max_bytes + 1) if size <= limits.max_bytes else b""
    if size > limits.max_bytes or len(data) > limits.max_bytes:
        raise MediaError(
            f"{path} is {max(size, len(data))} bytes, over the limit of {limits.max_bytes}",
            code="too_large",
            hint="raise REMPART_LIMITS__MAX_BYTES if such files are expected",
        )
    return data


def read_item(
    locator: Locator,
    limits: MediaLimits,
    zips: ZipCache | None = None,
    archive_limits: ArchiveLimits | None = None,
) -> bytes:
    """The bytes of one item, never more than ``limits.max_bytes`` (refused beyond).

    ZIP members are streamed and counted: a member that inflates beyond the size its
    directory declares, or beyond the ratio allowed, is refused (``archive_bomb``) without
    ever holding more than the byte limit in memory.
    """
    from rempart.batch import archives

    if isinstance(locator, FileRef):
        try:
            return read_file(locator.path, limits)
        except OSError as e:
            raise os_error(locator.path, e) from None
    if isinstance(locator, InlineRef):
        return locator.data
    if isinstance(locator, ZipRef):
        return archives.read_zip_member(locator, limits, zips or ZipCache(), archive_limits)
    if isinstance(locator, TarRef):
        return archives.read_tar_member(locator, limits)
    raise MediaError(
        "a compressed TAR member must be read by the driver first",
        code="internal",
        hint="report this: TarStreamRef reached a worker",
    )


class ZipCache:
    """Open ZIP archives of one worker (parsing a large central directory once, not once per
    member). Keeps the few most recent open; closes the rest."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._open: dict[str, Any] = {}

    def get(self, archive: str) -> Any:
        """The open :class:`zipfile.ZipFile` for ``archive``."""
        import zipfile

        zf = self._open.pop(archive, None)
        if zf is None:
            zf = zipfile.ZipFile(archive)
        self._open[archive] = zf  # most recent last
        while len(self._open) > self._size:
            oldest = next(iter(self._open))
            self._open.pop(oldest).close()
        return zf

    def close(self) -> None:
        """Close every archive."""
        for zf in self._open.values():
            zf.close()
        self._open.clear()


def absolute(path: str | os.PathLike[str]) -> str:
    """The absolute form of ``path`` used in keys (links are not resolved: the key names the
    path the investigator gave)."""
    return os.path.abspath(os.fspath(path))
