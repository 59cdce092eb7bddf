"""ZIP and TAR archives, read in place and safely: nothing is ever extracted to disk.

Refused, each as a result row with its code, while the rest of the archive is scanned:

- names that climb out (``../``, absolute paths: ``unsafe_path``) and links or devices
  (``unsafe_member``): a link is never followed, inside or out;
- encrypted members (``encrypted``) and members over the media byte limit (``too_large``);
- bombs (``archive_bomb``), by what the archive declares *and* by what it really inflates
  to: a member whose declared size is far beyond its compressed size, a member that inflates
  past the size it declared, a compressed TAR whose stream inflates past the ratio allowed;
- archives declaring more members or more bytes in total than the limits
  (``too_many_members``, ``archive_too_large``), and broken ones (``broken_archive``).

ZIP members and members of uncompressed TARs are read by the worker that scans them (random
access); a compressed TAR can only be read in order, so the driver streams it once
(:class:`TarStreamReader`) and hands each member's bytes on.
"""

from __future__ import annotations

import itertools
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal, cast

from rempart.batch.items import (
    BatchError,
    Item,
    TarRef,
    TarStreamRef,
    ZipCache,
    ZipRef,
    absolute,
    open_regular,
    os_error,
)
from rempart.batch.paths import hidden, unsafe_reason
from rempart.errors import MediaError
from rempart.settings import MediaLimits

ArchiveKind = Literal["zip", "tar", "tar_stream"]

#: Errors the standard library raises on broken archives (besides BadZipFile/ReadError).
_BROKEN = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,  # an unsupported ZIP compression method
    ValueError,
)


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold before it is refused.

    Media files compress poorly (JPEG, MP4: ratio close to 1; PNG rarely beyond 10), so a
    ratio of 100 leaves room for text and raw images while refusing bombs, whose ratios run
    to 1000 and more. The ratio is only judged past ``ratio_floor`` bytes: a few kilobytes of
    TAR padding compress 100-fold and harm nobody.
    """

    max_members: int = 100_000
    max_total_bytes: int = 16 * 1024**3
    max_ratio: float = 100.0
    ratio_floor: int = 1024**2


def sniff_archive(path: str) -> ArchiveKind | None:
    """``zip``, ``tar`` (uncompressed) or ``tar_stream`` (gzip/bzip2/xz: maybe a TAR) from
    the first bytes of ``path``, never its name; ``None`` for anything else. Only a regular
    file is opened (``not_a_regular_file`` otherwise: a FIFO would block the scan)."""
    with open_regular(path) as f:
        head = f.read(265)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "tar_stream"
    return None


def iter_archive(
    path: str, kind: ArchiveKind, limits: ArchiveLimits, media: MediaLimits
) -> Iterator[Item]:
    """The items of the archive at ``path`` (failures included, as items with an error)."""
    if kind == "zip":
        yield from _iter_zip(path, limits, media)
    else:
        yield from _iter_tar(path, kind == "tar_stream", limits, media)


def _archive_failure(path: str, kind: str, error: BatchError) -> Item:
    return Item(f"{kind}:{absolute(path)}", path, {"kind": kind, "archive": path}).failed(error)


class _Keys:
    """Member keys, unique even when an archive holds the same name twice (ZIP allows it)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._seen: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        n = self._seen.get(name, 0) + 1
        self._seen[name] = n
        return f"{self._prefix}!{name}" + (f"#{n}" if n > 1 else "")


def _member_check(name: str) -> BatchError | None:
    reason = unsafe_reason(name)
    if reason:
        return BatchError(
            f"member {name!r} has {reason}: not read",
            code="unsafe_path",
            hint="an archive member must have a relative name inside the archive",
        )
    return None


def _too_large(name: str, size: int, media: MediaLimits) -> MediaError:
    return MediaError(
        f"member {name!r} is {size} bytes, over the limit of {media.max_bytes}",
        code="too_large",
        hint="raise REMPART_LIMITS__MAX_BYTES if such files are expected",
    )


def _too_large_archive(path: str, declared: int, limits: ArchiveLimits) -> BatchError:
    return BatchError(
        f"{path}: {declared} bytes in all, over the limit of {limits.max_total_bytes}",
        code="archive_too_large",
        hint="unpack it and scan the folder, or raise ArchiveLimits.max_total_bytes",
    )


def _bomb(message: str) -> BatchError:
    return BatchError(
        message,
        code="archive_bomb",
        hint="an archive that inflates this much is refused as a decompression bomb",
    )


# -- ZIP ------------------------------------------------------------------------------------


def _iter_zip(path: str, limits: ArchiveLimits, media: MediaLimits) -> Iterator[Item]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            end = int(getattr(zf, "start_dir", os.path.getsize(path)))
    except OSError as e:
        yield _archive_failure(path, "zip", os_error(path, e))
        return
    except _BROKEN as e:
        yield _archive_failure(path, "zip", _broken(path, e))
        return
    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.max_members:
        yield _archive_failure(
            path,
            "zip",
            BatchError(
                f"{path}: {len(files)} members, over the limit of {limits.max_members}",
                code="too_many_members",
                hint="split the archive, or scan it unpacked",
            ),
        )
        return
    declared = sum(i.file_size for i in files)
    if declared > limits.max_total_bytes:
        # Far beyond its size on disk, a bomb; at an ordinary ratio, only too large.
        refusal = (
            _bomb(f"{path}: members declare {declared} bytes in all, from {end} on disk")
            if _over_ratio(declared, end, limits)
            else _too_large_archive(path, declared, limits)
        )
        yield _archive_failure(path, "zip", refusal)
        return
    spans = _spans(infos, end)
    keys = _Keys(f"zip:{absolute(path)}")
    for index, info in enumerate(infos):
        if info.is_dir():
            continue
        name = info.filename
        problem = _member_check(name)
        if problem is None and hidden(name):
            continue
        item = Item(keys(name), f"{path}!{name}", {"kind": "zip", "archive": path, "member": name})
        mode = info.external_attr >> 16
        if problem is not None:
            yield item.failed(problem)
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # links, devices, FIFOs
            yield item.failed(_unsafe_member(name, "a link or special file"))
        elif info.flag_bits & 0x1:
            yield item.failed(
                BatchError(f"member {name!r} is encrypted: not read", code="encrypted")
            )
        elif info.file_size > media.max_bytes:
            yield item.failed(_too_large(name, info.file_size, media))
        elif _over_ratio(info.file_size, min(info.compress_size, spans[index]), limits):
            compressed = min(info.compress_size, spans[index])
            yield item.failed(
                _bomb(
                    f"member {name!r} declares {info.file_size} bytes from {compressed} compressed"
                )
            )
        else:
            compressed = min(info.compress_size, spans[index])
            yield item.with_locator(ZipRef(absolute(path), index, name, info.file_size, compressed))


def _spans(infos: list[zipfile.ZipInfo], end: int) -> list[int]:
    """Bytes each member really occupies in the file (up to the next member, or the central
    directory): a member cannot hold more compressed data than that, whatever it declares."""
    starts = sorted({i.header_offset for i in infos} | {end})
    nxt = dict(itertools.pairwise(starts))
    return [max(0, nxt.get(i.header_offset, end) - i.header_offset) for i in infos]


def _over_ratio(size: int, compressed: int, limits: ArchiveLimits) -> bool:
    return size > limits.ratio_floor and size / max(compressed, 1) > limits.max_ratio


def _unsafe_member(name: str, what: str) -> BatchError:
    return BatchError(
        f"member {name!r} is {what}: never followed",
        code="unsafe_member",
        hint="links in an archive could point outside it; scan the file they name instead",
    )


def _broken(path: str, error: BaseException) -> BatchError:
    return BatchError(
        f"{path}: broken archive ({type(error).__name__}: {error})",
        code="broken_archive",
        hint="the archive is damaged or truncated; members read before the damage are kept",
    )


def read_zip_member(
    ref: ZipRef, media: MediaLimits, zips: ZipCache, limits: ArchiveLimits | None = None
) -> bytes:
    """The bytes of a ZIP member, streamed and counted: refused as soon as they pass the
    size the member declared, the media byte limit, or the compression ratio allowed."""
    limits = limits or ArchiveLimits()
    try:
        zf = zips.get(ref.archive)
        info = zf.infolist()[ref.index]
        if info.filename != ref.name or info.file_size != ref.size:
            raise BatchError(
                f"{ref.archive} changed while it was being scanned", code="broken_archive"
            )
        cap = min(media.max_bytes, info.file_size)
        chunks: list[bytes] = []
        n = 0
        with zf.open(info) as member:
            while chunk := member.read(1024 * 1024):
                n += len(chunk)
                if n > cap:
                    raise _bomb(f"member {ref.name!r} inflates past its declared {cap} bytes")
                if _over_ratio(n, min(info.compress_size, ref.compressed_size), limits):
                    raise _bomb(
                        f"member {ref.name!r} inflates over {limits.max_ratio:g} times its "
                        "compressed size"
                    )
                chunks.append(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise os_error(ref.archive, e) from None
    except _BROKEN as e:
        raise _broken(f"{ref.archive}!{ref.name}", e) from None
    except RuntimeError as e:  # zipfile: "File ... is encrypted, password required"
        raise BatchError(f"member {ref.name!r}: {e}", code="encrypted") from None


# -- TAR ------------------------------------------------------------------------------------


class _Counting:
    """A read-only file that counts the compressed bytes consumed (for the real ratio)."""

    def __init__(self, f: BinaryIO) -> None:
        self.file = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.file.read(n)
        self.count += len(data)
        return data

    def close(self) -> None:
        self.file.close()


def _open_tar(path: str, stream: bool) -> tuple[tarfile.TarFile, _Counting]:
    raw = _Counting(open(path, "rb"))  # noqa: SIM115 - closed with the TarFile by the caller
    try:
        if stream:
            tf = tarfile.open(fileobj=cast(IO[bytes], raw), mode="r|*")  # noqa: SIM115
        else:
            tf = tarfile.open(fileobj=raw.file, mode="r:")  # noqa: SIM115
    except BaseException:
        raw.close()
        raise
    return tf, raw


def _iter_tar(path: str, stream: bool, limits: ArchiveLimits, media: MediaLimits) -> Iterator[Item]:
    kind = "tar"
    try:
        size_on_disk = os.path.getsize(path)
        tf, raw = _open_tar(path, stream)
    except OSError as e:
        yield _archive_failure(path, kind, os_error(path, e))
        return
    except _BROKEN as e:
        yield _archive_failure(path, kind, _broken(path, e))
        return
    keys = _Keys(f"tar:{absolute(path)}")
    declared = 0
    count = 0
    try:
        for index, member in enumerate(_members(tf)):
            name = member.name
            problem = _member_check(name)
            if member.isdir() or (problem is None and hidden(name)):
                continue
            count += 1
            if count > limits.max_members:
                yield _archive_failure(
                    path,
                    kind,
                    BatchError(
                        f"{path}: more than {limits.max_members} members; the rest is not read",
                        code="too_many_members",
                        hint="split the archive, or scan it unpacked",
                    ),
                )
                return
            item = Item(
                keys(name), f"{path}!{name}", {"kind": kind, "archive": path, "member": name}
            )
            if problem is not None:
                yield item.failed(problem)
                continue
            if not member.isreg():
                what = "a link" if (member.issym() or member.islnk()) else "a special file"
                yield item.failed(_unsafe_member(name, what))
                continue
            declared += member.size
            # Judged before the stream is advanced past the member: skipping its data would
            # already mean inflating it.
            if stream and _over_ratio(tf.offset + member.size, size_on_disk, limits):
                yield _archive_failure(
                    path,
                    kind,
                    _bomb(f"{path}: member {name!r} would inflate the archive past its limits"),
                )
                return
            if declared > limits.max_total_bytes:
                yield _archive_failure(path, kind, _too_large_archive(path, declared, limits))
                return
            if member.size > media.max_bytes:
                yield item.failed(_too_large(name, member.size, media))
                continue
            if stream:
                yield item.with_locator(TarStreamRef(absolute(path), index, name, member.size))
            else:
                yield item.with_locator(TarRef(absolute(path), member.offset_data, member.size))
            if stream and _over_ratio(tf.offset, raw.count, limits):
                yield _archive_failure(
                    path, kind, _bomb(f"{path}: the stream inflates past the ratio allowed")
                )
                return
    except OSError as e:
        yield _archive_failure(path, kind, _broken(path, e))
    except _BROKEN as e:
        yield _archive_failure(path, kind, _broken(path, e))
    finally:
        tf.close()
        raw.close()


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tf.next()) is not None:
        yield member


def read_tar_member(ref: TarRef, media: MediaLimits) -> bytes:
    """The bytes of a member of an uncompressed TAR (the offset found when listing it)."""
    if ref.size > media.max_bytes:
        raise _too_large(ref.archive, ref.size, media)
    try:
        with open(ref.archive, "rb") as f:
            f.seek(ref.offset)
            data = f.read(ref.size)
    except OSError as e:
        raise os_error(ref.archive, e) from None
    if len(data) != ref.size:
        raise BatchError(f"{ref.archive}: truncated member", code="broken_archive")
    return data


class TarStreamReader:
    """Reads members of compressed TARs in order, for the driver (one pass per archive as
    long as members are asked for in order, which is how the sources list them)."""

    def __init__(self, media: MediaLimits, limits: ArchiveLimits) -> None:
        self._media = media
        self._limits = limits
        self._archive: str | None = None
        self._tf: tarfile.TarFile | None = None
        self._raw: _Counting | None = None
        self._index = -1

    def read(self, ref: TarStreamRef) -> bytes:
        """The bytes of member ``ref.index``."""
        try:
            return self._read(ref)
        except OSError as e:
            self.close()
            raise _broken(ref.archive, e) from None
        except _BROKEN as e:
            self.close()
            raise _broken(ref.archive, e) from None

    def _read(self, ref: TarStreamRef) -> bytes:
        if self._archive != ref.archive or self._index >= ref.index or self._tf is None:
            self.close()
            self._tf, self._raw = _open_tar(ref.archive, stream=True)
            self._archive, self._index = ref.archive, -1
        member: Any = None
        while self._index < ref.index:
            member = self._tf.next()
            self._index += 1
            if member is None:
                raise tarfile.ReadError("the archive ended early")
        assert self._raw is not None
        if member.name != ref.name or member.size != ref.size or not member.isreg():
            raise BatchError(
                f"{ref.archive} changed while it was being scanned", code="broken_archive"
            )
        if _over_ratio(self._tf.offset, self._raw.count, self._limits):
            raise _bomb(f"{ref.archive}: the stream inflates past the ratio allowed")
        f = self._tf.extractfile(member)
        assert f is not None
        data = f.read(self._media.max_bytes + 1)
        if len(data) > self._media.max_bytes:
            raise _too_large(ref.name, len(data), self._media)
        return data

    def close(self) -> None:
        """Close the archive being read."""
        if self._tf is not None:
            self._tf.close()
        if self._raw is not None:
            self._raw.close()
        self._archive, self._tf, self._raw, self._index = None, None, None, -1
