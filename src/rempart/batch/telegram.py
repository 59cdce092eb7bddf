"""Telegram Desktop exports: ``result.json`` with ``photos/``, ``video_files/``, ``files/``.

"Export chat history" (one chat) writes ``{"name", "type", "id", "messages": [...]}``; "Export
Telegram data" (the whole account) writes ``{"chats": {"list": [chat, ...]}, "left_chats":
...}`` with media paths such as ``chats/chat_001/photos/photo_1@...jpg``. Each message with a
``photo`` or a ``file`` becomes an item that keeps its chat, message id, sender and date, so
the results and the evidence say where the media was posted.

Untrusted like any seized data: a media path that climbs out of the export (``../``, an
absolute path, a link out) is refused (``unsafe_path``); media the export names but does not
hold is reported (``missing_media``), as are files Telegram did not export (``not_exported``:
it writes ``"(File not included. ...)"`` in their place). Every other file in the export
folder (profile photos, partial exports, files added by hand) is scanned too, its source
saying it is ``not referenced by the export``.

A folder is taken for an export only when its ``result.json`` looks like one (a JSON object
with a chat's ``"messages": [`` or a full export's ``"chats"``/``"personal_information"``
near its start): any other ``result.json`` is an ordinary file of an ordinary folder. An
export whose ``result.json`` turns out broken is reported (``malformed_export``) and its files
are still scanned, without their messages: nothing in it is ever left out.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rempart.batch.items import (
    BatchError,
    FileRef,
    Item,
    absolute,
    not_regular,
    open_regular,
    os_error,
)
from rempart.batch.paths import hidden, unsafe_reason, within

#: Message fields that hold media. ``thumbnail`` is left out: Telegram derives it from the
#: video next to it, which is scanned.
MEDIA_FIELDS = ("photo", "file")
#: A ``result.json`` is read whole; this bounds the memory it can take.
MAX_RESULT_JSON_BYTES = 1024**3
#: What the source of a file no message names says.
UNREFERENCED = "not referenced by the export"
#: How much of ``result.json`` is read to tell an export from any other JSON file. Telegram
#: writes a chat's ``name``, ``type`` and ``id`` before its ``messages``, and a full export's
#: ``about`` before ``personal_information``: both come within the first few hundred bytes.
HEAD_BYTES = 64 * 1024
_EXPORT_HEAD = re.compile(
    rb'"messages"\s*:\s*\[|"(?:chats|left_chats|personal_information)"\s*:\s*\{'
)


def is_export(folder: Path) -> bool:
    """Whether ``folder`` is a Telegram Desktop JSON export: it holds a regular
    ``result.json`` that starts like one (a JSON object with a chat's ``"messages"`` list or a
    full export's sections). Cheap: only the head of the file is read."""
    try:
        with open_regular(str(folder / "result.json")) as f:
            head = f.read(HEAD_BYTES)
    except (OSError, BatchError):
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" and bool(_EXPORT_HEAD.search(head))


def _malformed(root: str, message: str) -> BatchError:
    return BatchError(
        f"{root}/result.json: {message}",
        code="malformed_export",
        hint="export again from Telegram Desktop in the JSON format ('Machine-readable JSON')",
    )


def _chats(data: Any, root: str) -> list[Any]:
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return [data]
    if isinstance(data, dict) and ("chats" in data or "left_chats" in data):
        chats: list[Any] = []
        for section in ("chats", "left_chats"):
            part = data.get(section)
            if part is None:
                continue
            if not isinstance(part, dict) or not isinstance(part.get("list"), list):
                raise _malformed(root, f"{section!r} has no 'list' of chats")
            chats += part["list"]
        return chats
    raise _malformed(root, "neither a chat ('messages') nor a full export ('chats')")


def iter_export(folder: Path) -> Iterator[Item]:
    """The media items of the export in ``folder`` (failures included, as items)."""
    root = str(folder)
    base = absolute(folder)
    try:
        path = folder / "result.json"
        if path.stat().st_size > MAX_RESULT_JSON_BYTES:
            raise _malformed(root, f"over {MAX_RESULT_JSON_BYTES} bytes")
        data = json.loads(path.read_bytes())
        chats = _chats(data, root)
    except OSError as e:
        failure: BatchError = os_error(f"{root}/result.json", e)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, deep nesting
        failure = _malformed(root, f"not valid JSON ({e})")
    except BatchError as e:
        failure = e
    else:
        yield from _messages(folder, root, base, chats)
        return
    # The messages are lost, not the files: each is still scanned, without its message.
    yield _export_failure(root, base, failure)
    yield from _unreferenced(folder, root, base, set())


def _messages(folder: Path, root: str, base: str, chats: list[Any]) -> Iterator[Item]:
    referenced: set[str] = set()
    for n, chat in enumerate(chats):
        if not isinstance(chat, dict) or not isinstance(chat.get("messages", []), list):
            item = Item(f"telegram:{base}#chat-{n}", root, {"kind": "telegram", "export": root})
            yield item.failed(_malformed(root, f"chat {n} is not an object with 'messages'"))
            continue
        for message in chat.get("messages", []):
            if not isinstance(message, dict) or message.get("type", "message") != "message":
                continue
            thumb = message.get("thumbnail")
            if isinstance(thumb, str):
                referenced.add(os.path.normpath(thumb))
            for field in MEDIA_FIELDS:
                rel = message.get(field)
                if rel is None or rel == "":
                    continue
                item = _message_item(folder, root, base, chat, message, field, rel)
                if isinstance(rel, str):
                    referenced.add(os.path.normpath(rel))
                yield item
    yield from _unreferenced(folder, root, base, referenced)


def _export_failure(root: str, base: str, error: BatchError) -> Item:
    return Item(f"telegram:{base}", root, {"kind": "telegram", "export": root}).failed(error)


def _text(value: Any) -> Any:
    """A JSON scalar kept as it is; anything else (lists, objects) as a string."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def _message_item(
    folder: Path,
    root: str,
    base: str,
    chat: dict[str, Any],
    message: dict[str, Any],
    field: str,
    rel: Any,
) -> Item:
    source = {
        "kind": "telegram",
        "export": root,
        "chat": _text(chat.get("name")),
        "chat_id": _text(chat.get("id")),
        "chat_type": _text(chat.get("type")),
        "message_id": _text(message.get("id")),
        "sender": _text(message.get("from", message.get("actor"))),
        "sender_id": _text(message.get("from_id", message.get("actor_id"))),
        "date": _text(message.get("date")),
        "media": field,
        "media_type": _text(message.get("media_type") or message.get("mime_type")),
        "file": _text(rel),
    }
    key = f"telegram:{base}#{source['chat_id']}/{source['message_id']}/{field}:{rel}"
    item = Item(key, f"{root}/{rel}", source)
    if not isinstance(rel, str):
        return item.failed(
            _malformed(root, f"message {source['message_id']}: {field} is not a path")
        )
    if rel.startswith("("):
        return item.failed(
            BatchError(
                f"message {source['message_id']}: Telegram did not export this file: {rel}",
                code="not_exported",
                hint="export again with media of this kind and size included",
            )
        )
    reason = unsafe_reason(rel)
    full = folder / rel
    if reason is None and not within(full, folder):
        reason = "a link out of the export"
    if reason:
        return item.failed(
            BatchError(
                f"message {source['message_id']}: {field} {rel!r} has {reason}: not read",
                code="unsafe_path",
                hint="an export names its media by paths inside the export folder",
            )
        )
    try:
        mode = full.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        return item.failed(os_error(str(full), e))
    if mode is None or stat.S_ISDIR(mode):
        return item.failed(
            BatchError(
                f"message {source['message_id']}: {rel} is named by result.json but missing",
                code="missing_media",
                hint="the export is incomplete; copy the whole export folder",
            )
        )
    if not stat.S_ISREG(mode):
        return item.failed(not_regular(str(full)))
    return item.with_locator(FileRef(str(full)))


def _unreferenced(folder: Path, root: str, base: str, referenced: set[str]) -> Iterator[Item]:
    """Every file of the export that no message names (``result.json`` aside)."""
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not hidden(d))
        rel_dir = os.path.relpath(dirpath, folder)
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if hidden(name) or rel in referenced or rel == "result.json":
                continue
            full = os.path.join(dirpath, name)
            item = Item(
                f"telegram:{base}#/{rel}",
                f"{root}/{rel}",
                {
                    "kind": "telegram",
                    "export": root,
                    "file": rel,
                    "message_id": None,
                    "note": UNREFERENCED,
                },
            )
            if not within(full, folder):
                yield item.failed(
                    BatchError(f"{rel} is a link out of the export: not read", code="unsafe_path")
                )
                continue
            try:
                regular = stat.S_ISREG(os.stat(full).st_mode)
            except OSError as e:
                yield item.failed(os_error(full, e))
                continue
            yield item.with_locator(FileRef(full)) if regular else item.failed(not_regular(full))
