"""What crosses the store's boundary: plain, immutable records (never ORM objects).

:class:`NewEntry` validates itself when built, so an entry that exists is a valid one: the
hash is canonical lowercase hex for its signal type, the quality is 0..100, tags and metadata
are JSON-clean. The importer and the API build ``NewEntry`` objects; the store trusts them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt

from rempart.errors import HashFormatError, RempartError
from rempart.signals import MD5, PDQ, get_signal

BankKind = Literal["block", "allow"]
BANK_KINDS: Final[tuple[str, ...]] = get_args(BankKind)

#: Op codes in the change log. Entry ops carry ``entry_id``/``signal``/``value``; bank ops
#: carry only ``bank_id``.
ChangeOp = Literal["add", "remove", "bank_created", "bank_updated", "bank_deleted"]
CHANGE_OPS: Final[tuple[str, ...]] = get_args(ChangeOp)

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_BAD_TAG_CHAR = re.compile("[;\x00-\x1f\x7f\ud800-\udfff]")
#: What neither database can store in text: NUL (PostgreSQL refuses it) and lone UTF-16
#: surrogates (not encodable as UTF-8; JSON input such as "\ud800" produces them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_THRESHOLD: Final = 64
#: A video entry: ``value`` is the MD5 of the video file (its identity in the bank) and
#: ``frames`` the PDQ hashes of its sampled frames (vPDQ-style, one per second).
VIDEO_SIGNAL: Final = "vpdq"
#: Frames kept per video entry: over half an hour at one frame a second, and small enough
#: that the frame list fits a CSV field under Python's default field-size limit.
MAX_FRAMES: Final = 2000
MAX_TAGS: Final = 64
MAX_TAG_LEN: Final = 100
MAX_SOURCE_LEN: Final = 1000
#: Metadata is for provenance notes (case numbers, reviewer, origin list), not documents;
#: the cap keeps a bad import from bloating the store.
MAX_METADATA_BYTES: Final = 16 * 1024


def canonical_signal(name: object) -> str:
    """The canonical name of a stored signal: ``pdq``, ``md5``, ``sha256`` or ``vpdq``."""
    if isinstance(name, str) and name.strip().lower() == VIDEO_SIGNAL:
        return VIDEO_SIGNAL
    if not isinstance(name, str):
        raise HashFormatError(
            f"signal must be a string, got {type(name).__name__}",
            code="unknown_signal",
            hint="use one of: md5, pdq, sha256, vpdq",
        )
    return get_signal(name).name


def validate_frames(value: object) -> tuple[str, ...]:
    """A video's frame hashes: a list of PDQ hex strings, canonicalised.

    All-zero frames (black or blank frames, common at the start of a video) are dropped:
    matching them would flag every video that fades in from black.
    """
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _entry_error(
            f"frames must be a list of PDQ hashes, got {type(value).__name__}",
            "bad_frames",
            "give the PDQ hex of each sampled frame, in order",
        )
    out: list[str] = []
    for n, frame in enumerate(value, start=1):
        try:
            out.append(PDQ.validate(frame))
        except HashFormatError as exc:
            if isinstance(frame, str) and frame.strip().lower().removeprefix("0x") == "0" * 64:
                continue  # a blank frame
            raise _entry_error(
                f"frame {n}: {exc.message}", "bad_frames", "each frame is a 64-hex PDQ hash"
            ) from None
    if not out:
        raise _entry_error(
            "a video entry needs at least one non-blank frame hash",
            "bad_frames",
            "hash the video's frames first (rempart hash)",
        )
    if len(out) > MAX_FRAMES:
        raise _entry_error(
            f"{len(out)} frame hashes in one entry",
            "bad_frames",
            f"keep to {MAX_FRAMES} frames (sample one per second)",
        )
    return tuple(out)


def validate_name(value: object, what: str = "bank name") -> str:
    """Return ``value`` if it is a valid bank or tenant name, else raise ``bad_name``.

    Names are 1-64 characters of letters, digits, ``-``, ``_`` and ``.`` so that they are
    safe in URLs, file names and log lines without escaping.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise RempartError(
            f"invalid {what} {value!r}",
            code="bad_name",
            hint="use 1-64 characters of letters, digits, '-', '_' and '.'",
        )
    return value


def validate_threshold(value: object) -> int:
    """A PDQ distance threshold: an int in 0..64 (Meta recommends 31)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_THRESHOLD:
        raise RempartError(
            f"invalid threshold {value!r}",
            code="bad_threshold",
            hint=f"give a PDQ Hamming distance from 0 to {MAX_THRESHOLD} (31 is Meta's default)",
        )
    return value


def validate_kind(value: object) -> BankKind:
    """``block`` (matches flag content) or ``allow`` (matches suppress other matches)."""
    if value not in BANK_KINDS:
        raise RempartError(
            f"invalid bank kind {value!r}",
            code="bad_bank_kind",
            hint="use 'block' (matches flag content) or 'allow' (known false positives)",
        )
    return value  # type: ignore[return-value]


def _entry_error(message: str, code: str, hint: str) -> HashFormatError:
    # Entry fields other than the hash are reported as the same (422) error family as a
    # malformed hash, with their own code: to a user they are all "this row is wrong".
    return HashFormatError(message, code=code, hint=hint)


def validate_quality(value: object) -> int | None:
    """A PDQ quality score 0..100, or ``None`` when the list does not give one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise _entry_error(
            f"invalid quality {value!r}",
            "bad_quality",
            "quality is an integer from 0 to 100, or empty",
        )
    return value


def validate_tags(value: object) -> tuple[str, ...]:
    """Tags: short strings without ``;`` (the CSV separator) or control characters."""
    if value is None or value == ():
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _entry_error(
            f"tags must be a list of strings, got {type(value).__name__}",
            "bad_tags",
            'give tags as a list, e.g. ["ncii", "case-17"]',
        )
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str):
            raise _entry_error(
                f"tag {tag!r} is not a string", "bad_tags", "every tag is a short string"
            )
        t = tag.strip()
        if not t:
            continue
        if len(t) > MAX_TAG_LEN or _BAD_TAG_CHAR.search(t):
            raise _entry_error(
                f"invalid tag {tag[:120]!r}",
                "bad_tags",
                f"a tag is at most {MAX_TAG_LEN} characters, without ';' or control characters",
            )
        if t not in tags:
            tags.append(t)
    if len(tags) > MAX_TAGS:
        raise _entry_error(
            f"{len(tags)} tags on one entry", "bad_tags", f"keep to {MAX_TAGS} tags per entry"
        )
    return tuple(tags)


def _unstorable(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, Mapping):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_unstorable(v) for v in value)
    return False


def validate_metadata(value: object) -> dict[str, Any]:
    """Metadata: a JSON object (string keys, JSON values, no NaN), at most 16 KiB."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _entry_error(
            f"metadata must be a JSON object, got {type(value).__name__}",
            "bad_metadata",
            'give an object such as {"case": "17"}',
        )
    if not value:
        return {}
    # json.dumps would quietly turn non-string keys into strings; say so instead.
    if any(not isinstance(k, str) for k in value):
        raise _entry_error("metadata keys must be strings", "bad_metadata", "use string keys")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _entry_error(
            f"metadata is not JSON-serialisable: {exc}",
            "bad_metadata",
            "use only strings, numbers, booleans, null, lists and objects",
        ) from None
    if _unstorable(value):
        raise _entry_error(
            "metadata contains a NUL character or invalid Unicode (a lone surrogate)",
            "bad_metadata",
            "remove the character; text must be valid UTF-8 without NUL",
        )
    size = len(text.encode())
    if size > MAX_METADATA_BYTES:
        raise _entry_error(
            f"metadata is {size} bytes",
            "bad_metadata",
            f"keep metadata under {MAX_METADATA_BYTES} bytes; store documents elsewhere",
        )
    # Stored exactly as JSON will give it back (tuples become lists, and so on).
    out: dict[str, Any] = json.loads(text)
    return out


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A hash to add to a bank; validated and canonicalised on construction.

    ``signal`` is ``pdq``, ``md5``, ``sha256``, or ``vpdq`` for a video: then ``value`` is
    the MD5 of the video file and ``frames`` the PDQ hashes of its sampled frames.

    Raises :class:`~rempart.errors.HashFormatError` (codes ``malformed_hash``,
    ``unknown_signal``, ``bad_quality``, ``bad_tags``, ``bad_metadata``, ``bad_source``,
    ``bad_frames``) when a field is wrong.
    """

    signal: str
    value: str
    quality: int | None = None
    source: str | None = None
    tags: tuple[str, ...] = ()
    #: Free-form JSON object (written as ``metadata`` in hash lists).
    meta: Mapping[str, Any] = field(default_factory=dict)
    frames: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Runs once per imported row: kept lean (bulk imports do millions of these).
        setattr_ = object.__setattr__
        signal = canonical_signal(self.signal)
        setattr_(self, "signal", signal)
        if signal == VIDEO_SIGNAL:
            setattr_(self, "value", MD5.validate(self.value))
            setattr_(self, "frames", validate_frames(self.frames))
        else:
            setattr_(self, "value", get_signal(signal).validate(self.value))
            if self.frames:
                raise _entry_error(
                    f"only {VIDEO_SIGNAL} entries have frames, not {signal}",
                    "bad_frames",
                    f"use signal {VIDEO_SIGNAL!r} for a video's frame hashes",
                )
            if self.frames != ():
                setattr_(self, "frames", ())
        if self.quality is not None:
            validate_quality(self.quality)
        source = self.source
        if source is not None:
            if (
                not isinstance(source, str)
                or len(source) > MAX_SOURCE_LEN
                or _UNSTORABLE.search(source)
            ):
                raise _entry_error(
                    f"invalid source {str(source)[:80]!r}",
                    "bad_source",
                    f"source is text of at most {MAX_SOURCE_LEN} characters, without NUL",
                )
            source = source.strip() or None
        setattr_(self, "source", source)
        setattr_(self, "tags", validate_tags(self.tags))
        meta = self.meta
        empty = meta is None or (type(meta) is dict and not meta)
        setattr_(self, "meta", {} if empty else validate_metadata(meta))


@dataclass(frozen=True, slots=True)
class BankInfo:
    """A bank as stored, with how many entries it holds per signal type."""

    id: int
    tenant: str
    name: str
    description: str
    threshold: int
    kind: BankKind
    enabled: bool
    created_at: datetime
    updated_at: datetime
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def entry_count(self) -> int:
        """All entries in the bank, every signal type together."""
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """A stored hash, with the bank (name and tenant) it belongs to."""

    id: int
    bank_id: int
    bank: str
    tenant: str
    signal: str
    value: str
    quality: int | None
    source: str | None
    tags: tuple[str, ...]
    meta: Mapping[str, Any]
    added_at: datetime
    #: A ``vpdq`` entry's frame hashes (empty for other signals).
    frames: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddResult:
    """Outcome of :meth:`Store.add_entries`.

    ``ids`` are the new entries' ids in input order (empty when ``return_ids=False``);
    ``duplicates`` counts inputs already in the bank (or repeated in the input), which are
    skipped, not errors.
    """

    ids: list[int]
    added: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class RemoveResult:
    """Outcome of :meth:`Store.remove_entries`: which ids went, which were not in the bank."""

    removed: list[int]
    not_found: list[int]

    @property
    def count(self) -> int:
        """How many entries were deleted."""
        return len(self.removed)

    def to_dict(self) -> dict[str, Any]:
        """``{removed, not_found}`` as JSON-ready lists."""
        return {"removed": list(self.removed), "not_found": list(self.not_found)}


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change log, for workers that keep an index in step with the store.

    * ``add``: entry ``entry_id`` (``signal``, ``value``, ``quality``) joined bank ``bank_id``.
      ``quality`` is read at poll time; ``None`` if the entry has since been removed (a later
      ``remove`` follows) or has no quality.
    * ``remove``: entry ``entry_id`` (``signal``, ``value``) left bank ``bank_id``.
    * ``bank_created`` / ``bank_updated``: re-read the bank with ``Store.get_bank_by_id``
      (threshold, kind and enabled may have changed).
    * ``bank_deleted``: the bank and *all* its entries are gone; no per-entry ``remove`` rows
      are written, so drop every entry of ``bank_id``.
    """

    seq: int
    op: ChangeOp
    bank_id: int
    entry_id: int | None
    signal: str | None
    value: str | None
    quality: int | None
    at: datetime


class _Arrays(NamedTuple):
    entry_ids: npt.NDArray[np.int64]
    bank_ids: npt.NDArray[np.int64]
    codes: npt.NDArray[np.uint8]
    quality: npt.NDArray[np.int16]


class SignalArrays(_Arrays):
    """Every entry of one signal type, as arrays for building an in-memory index.

    Unpacks as ``entry_ids, bank_ids, codes, quality``: ``codes[i]`` is the hash of entry
    ``entry_ids[i]`` in bank ``bank_ids[i]``; ``quality[i]`` is -1 where unknown. ``seq``
    (an attribute, not unpacked) is the change-log position this snapshot is consistent
    with: apply ``changes_since(seq)`` to it to stay current.
    """

    seq: int

    @classmethod
    def of(
        cls,
        entry_ids: npt.NDArray[np.int64],
        bank_ids: npt.NDArray[np.int64],
        codes: npt.NDArray[np.uint8],
        quality: npt.NDArray[np.int16],
        seq: int,
    ) -> SignalArrays:
        """Build the arrays with their change-log position."""
        arrays = cls(entry_ids, bank_ids, codes, quality)
        arrays.seq = seq
        return arrays
