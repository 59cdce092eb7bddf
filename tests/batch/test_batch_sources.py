"""Listing a corpus: folders, ZIP/TAR archives (malicious ones included) and Telegram exports,
built for real with zipfile, tarfile and json."""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import image, write_export, write_tar, write_zip
from rempart.batch import ArchiveLimits, BatchError, iter_items
from rempart.batch.archives import read_zip_member
from rempart.batch.items import FileRef, ZipCache, ZipRef, read_item
from rempart.settings import MediaLimits


def _by_path(items: list) -> dict:  # type: ignore[type-arg]
    return {i.path: i for i in items}


def _codes(items: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {i.path: i.error["code"] for i in items if i.error}


def test_folder_archives_and_export_with_provenance(tmp_path: Path) -> None:
    root = tmp_path / "seized"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(image(1))
    (root / "sub" / "b.jpg").write_bytes(image(2))
    (root / ".hidden.jpg").write_bytes(image(3))
    write_zip(root / "leak.zip", {"x/c.jpg": image(4), "__MACOSX/._c.jpg": b"junk", "d/": b""})
    write_tar(root / "plain.tar", {"e.jpg": image(5)})
    write_tar(root / "packed.tar.gz", {"f.jpg": image(6), "g.jpg": image(7)}, mode="w:gz")
    write_export(root / "telegram")
    items = list(iter_items([root, root / "a.jpg"]))  # a.jpg named twice: listed once
    by = _by_path(items)
    assert [i.key for i in items].count(f"file:{root / 'a.jpg'}") == 1
    assert by[str(root / "a.jpg")].source == {"kind": "file"}
    assert str(root / ".hidden.jpg") not in by
    zipped = by[f"{root / 'leak.zip'}!x/c.jpg"]
    assert zipped.source == {"kind": "zip", "archive": str(root / "leak.zip"), "member": "x/c.jpg"}
    assert zipped.key == f"zip:{root / 'leak.zip'}!x/c.jpg"
    assert read_item(zipped.locator, MediaLimits()) == image(4)
    assert not any("__MACOSX" in p for p in by)
    assert read_item(by[f"{root / 'plain.tar'}!e.jpg"].locator, MediaLimits()) == image(5)
    packed = by[f"{root / 'packed.tar.gz'}!g.jpg"]
    assert type(packed.locator).__name__ == "TarStreamRef"  # read in order by the driver
    photo = by[f"{root / 'telegram'}/photos/photo_2@20-10-2020_12-00-00.jpg"]
    assert photo.source["chat"] == "Gallery" and photo.source["chat_id"] == 1234567
    assert photo.source["message_id"] == 2 and photo.source["sender"] == "nudify_bot"
    assert photo.source["date"] == "2020-10-20T12:02:00"
    assert photo.error is None
    codes = _codes(items)
    assert codes[f"{root / 'telegram'}/video_files/clip.mp4"] == "missing_media"
    assert (
        codes[
            f"{root / 'telegram'}/(File not included. Change data exporting settings to download.)"
        ]
        == "not_exported"
    )
    # The same listing twice gives the same keys, in the same order (resumable runs).
    assert [i.key for i in iter_items([root, root / "a.jpg"])] == [i.key for i in items]


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_traversal_absolute_links_encrypted_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.jpg", image(1))
        zf.writestr("../../escape.jpg", image(2))
        zf.writestr("/etc/abs.jpg", image(3))
        zf.writestr("C:\\windows\\x.jpg", image(3))
        zf.writestr("a\\..\\..\\b.jpg", image(3))
        link = zipfile.ZipInfo("link.jpg")
        link.create_system = 3
        link.external_attr = 0o120777 << 16  # a symlink to /etc/passwd
        zf.writestr(link, "/etc/passwd")
        zf.writestr("ok.jpg", image(4))  # the same name twice
    items = list(iter_items([path]))
    codes = _codes(items)
    assert codes[f"{path}!../../escape.jpg"] == "unsafe_path"
    assert codes[f"{path}!/etc/abs.jpg"] == "unsafe_path"
    assert codes[f"{path}!C:\\windows\\x.jpg"] == "unsafe_path"
    assert codes[f"{path}!a\\..\\..\\b.jpg"] == "unsafe_path"
    assert codes[f"{path}!link.jpg"] == "unsafe_member"
    keys = [i.key for i in items if i.path == f"{path}!ok.jpg"]
    assert keys == [f"zip:{path}!ok.jpg", f"zip:{path}!ok.jpg#2"]
    both = [read_item(i.locator, MediaLimits()) for i in items if i.path == f"{path}!ok.jpg"]
    assert both == [image(1), image(4)]
    # An encrypted member (flag bit 0 set in both headers) is refused, not guessed at.
    enc = tmp_path / "enc.zip"
    write_zip(enc, {"secret.jpg": image(5)})
    data = bytearray(enc.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        flags = struct.unpack_from("<H", data, at + off)[0]
        struct.pack_into("<H", data, at + off, flags | 1)
    enc.write_bytes(bytes(data))
    assert _codes(list(iter_items([enc])))[f"{enc}!secret.jpg"] == "encrypted"


def test_tar_traversal_links_and_devices(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in (("ok.jpg", image(1)), ("../up.jpg", image(2)), ("/abs.jpg", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, kind in (("sym.jpg", tarfile.SYMTYPE), ("hard.jpg", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        fifo = tarfile.TarInfo("pipe")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
    items = list(iter_items([path]))
    codes = _codes(items)
    assert codes == {
        f"{path}!../up.jpg": "unsafe_path",
        f"{path}!/abs.jpg": "unsafe_path",
        f"{path}!sym.jpg": "unsafe_member",
        f"{path}!hard.jpg": "unsafe_member",
        f"{path}!pipe": "unsafe_member",
    }
    ok = _by_path(items)[f"{path}!ok.jpg"]
    assert read_item(ok.locator, MediaLimits()) == image(1)


def test_zip_bombs_refused_by_declared_and_by_real_size(tmp_path: Path) -> None:
    zeros = b"\0" * (8 * 1024 * 1024)
    bomb = write_zip(tmp_path / "bomb.zip", {"a.jpg": image(1), "zeros.bin": zeros})
    codes = _codes(list(iter_items([bomb])))
    assert codes == {f"{bomb}!zeros.bin": "archive_bomb"}
    # A member lying about its compressed size (it claims 8 MiB of room): the room it really
    # has in the file is what counts.
    liar = tmp_path / "liar.zip"
    data = bytearray(bomb.read_bytes())
    for sig, off in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        at = data.find(sig, data.find(sig) + 1)  # the second member's headers
        struct.pack_into("<I", data, at + off, len(zeros))
    liar.write_bytes(bytes(data))
    assert _codes(list(iter_items([liar]))) == {f"{liar}!zeros.bin": "archive_bomb"}
    # Streamed: a member inflating past the ratio is stopped while being read.
    small = write_zip(tmp_path / "small.zip", {"z.bin": b"\0" * 300_000})
    info = zipfile.ZipFile(small).infolist()[0]
    ref = ZipRef(str(small), 0, "z.bin", info.file_size, info.compress_size)
    strict = ArchiveLimits(max_ratio=10, ratio_floor=10_000)
    with pytest.raises(BatchError) as exc:
        read_zip_member(ref, MediaLimits(), ZipCache(), strict)
    assert exc.value.code == "archive_bomb"
    # Totals and counts.
    many = write_zip(tmp_path / "many.zip", {f"{n}.jpg": b"x" for n in range(5)})
    assert _codes(list(iter_items([many], limits=ArchiveLimits(max_members=4)))) == {
        str(many): "too_many_members"
    }
    big = write_zip(tmp_path / "big.zip", {"a.bin": b"\1" * 2000, "b.bin": b"\2" * 2000})
    # More bytes in all than allowed, at an ordinary ratio: too large, not a bomb.
    assert _codes(list(iter_items([big], limits=ArchiveLimits(max_total_bytes=3000)))) == {
        str(big): "archive_too_large"
    }
    # The same totals far beyond the archive's size on disk: a bomb.
    ratio = ArchiveLimits(max_total_bytes=3000, max_ratio=2, ratio_floor=100)
    assert _codes(list(iter_items([big], limits=ratio))) == {str(big): "archive_bomb"}
    plain = write_tar(tmp_path / "big.tar", {"a.jpg": image(1), "b.jpg": image(2)})
    items = list(iter_items([plain], limits=ArchiveLimits(max_total_bytes=len(image(1)) + 10)))
    assert _codes(items) == {str(plain): "archive_too_large"}
    assert f"{plain}!a.jpg" in _by_path(items)  # members within the limit are kept
    # A member over the media byte limit is refused without reading it.
    assert _codes(list(iter_items([big], media=MediaLimits(max_bytes=1000)))) == {
        f"{big}!a.bin": "too_large",
        f"{big}!b.bin": "too_large",
    }


def test_compressed_tar_bomb_and_member_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tf:
        info = tarfile.TarInfo("a.jpg")
        data = image(1)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("zeros.bin")
        info.size = 64 * 1024 * 1024
        tf.addfile(info, io.BytesIO(b"\0" * info.size))
    assert bomb.stat().st_size < 1024 * 1024
    items = list(iter_items([bomb]))
    assert _codes(items) == {str(bomb): "archive_bomb"}
    assert f"{bomb}!a.jpg" in _by_path(items)  # members before the bomb are kept
    many = write_tar(tmp_path / "many.tar", {f"{n}.jpg": b"x" for n in range(5)})
    items = list(iter_items([many], limits=ArchiveLimits(max_members=3)))
    assert _codes(items) == {str(many): "too_many_members"}
    assert len(items) == 4


def test_broken_archives(tmp_path: Path) -> None:
    good = write_zip(tmp_path / "good.zip", {"a.jpg": image(1)})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[:-30])  # the central directory is gone
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04" + os.urandom(200))
    packed = write_tar(
        tmp_path / "p.tar.gz", {"a.jpg": image(1), "b.jpg": image(2), "c.jpg": image(3)}, "w:gz"
    )
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    items = list(iter_items([cut, garbage, truncated]))
    codes = _codes(items)
    assert codes[str(cut)] == "broken_archive"
    assert codes[str(garbage)] == "broken_archive"
    assert codes[str(truncated)] == "broken_archive"
    # A CRC error shows when the member is read.
    bad_crc = tmp_path / "crc.zip"
    data = bytearray(write_zip(tmp_path / "src.zip", {"a.bin": b"hello" * 1000}).read_bytes())
    at = data.find(b"PK\x03\x04") + 30 + len("a.bin")
    data[at + 5] ^= 0xFF  # damage the deflate stream
    bad_crc.write_bytes(bytes(data))
    (item,) = iter_items([bad_crc])
    with pytest.raises(BatchError) as exc:
        read_item(item.locator, MediaLimits())
    assert exc.value.code == "broken_archive"


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "private.jpg"
    outside.write_bytes(image(1))
    root = tmp_path / "seized"
    root.mkdir()
    (root / "in.jpg").write_bytes(image(2))
    (root / "out.jpg").symlink_to(outside)
    (root / "inside-link.jpg").symlink_to(root / "in.jpg")
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)  # never walked into
    items = list(iter_items([root, tmp_path / "missing"]))
    assert _codes(items) == {
        str(root / "out.jpg"): "symlink_outside",
        str(tmp_path / "missing"): "not_found",
    }
    assert str(root / "inside-link.jpg") in _by_path(items)
    assert not any("outdir" in i.path for i in items)


def test_telegram_bad_exports(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "result.json").write_text('{"name": "x", "messages": [', encoding="utf-8")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "result.json").write_text('["not", "an", "export"]', encoding="utf-8")
    sneaky = tmp_path / "sneaky"
    (sneaky / "photos").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(image(9))
    (sneaky / "photos" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    chat = {
        "name": "c",
        "id": 5,
        "type": "private_group",
        "messages": [
            {"id": 1, "type": "message", "photo": "../secret.jpg", "from": "a"},
            {"id": 2, "type": "message", "photo": "/etc/passwd", "from": "a"},
            {"id": 3, "type": "message", "photo": "photos/link.jpg", "from": "a"},
            {"id": 4, "type": "message", "photo": 42, "from": "a"},
            "not a message",
        ],
    }
    (sneaky / "result.json").write_text(json.dumps(chat), encoding="utf-8")
    items = list(iter_items([broken, wrong, sneaky]))
    codes = _codes(items)
    assert codes[str(broken)] == "malformed_export"
    # A result.json that is not an export at all: an ordinary file of an ordinary folder.
    assert str(wrong) not in codes
    assert _by_path(items)[f"{wrong}/result.json"].source == {"kind": "file"}
    assert codes[f"{sneaky}/../secret.jpg"] == "unsafe_path"
    assert codes[f"{sneaky}//etc/passwd"] == "unsafe_path"
    assert codes[f"{sneaky}/photos/link.jpg"] == "unsafe_path"
    assert codes[f"{sneaky}/42"] == "malformed_export"
    # Nothing from outside the export is ever read.
    assert all(i.error for i in items if i.path != f"{wrong}/result.json")


def test_telegram_full_account_export_and_unreferenced_media(tmp_path: Path) -> None:
    root = tmp_path / "DataExport_2020"
    chat_dir = root / "chats" / "chat_001" / "photos"
    chat_dir.mkdir(parents=True)
    (chat_dir / "photo_1.jpg").write_bytes(image(1))
    (chat_dir / "orphan.jpg").write_bytes(image(2))
    data = {
        "about": "export",
        "chats": {
            "about": "chats",
            "list": [
                {
                    "name": "Bot chat",
                    "type": "bot_chat",
                    "id": 99,
                    "messages": [
                        {
                            "id": 7,
                            "type": "message",
                            "date": "2020-07-01T00:00:00",
                            "from": "DeepNudeBot",
                            "from_id": "user4242",
                            "photo": "chats/chat_001/photos/photo_1.jpg",
                        }
                    ],
                }
            ],
        },
        "left_chats": {"about": "left", "list": []},
    }
    (root / "result.json").write_text(json.dumps(data), encoding="utf-8")
    items = list(iter_items([tmp_path]))  # found inside a folder, too
    by = _by_path(items)
    photo = by[f"{root}/chats/chat_001/photos/photo_1.jpg"]
    assert photo.source["chat"] == "Bot chat" and photo.source["message_id"] == 7
    assert photo.source["sender_id"] == "user4242"
    orphan = by[f"{root}/chats/chat_001/photos/orphan.jpg"]
    assert orphan.source["message_id"] is None and orphan.error is None
    assert orphan.source["note"] == "not referenced by the export"
    assert len(items) == 2


def test_a_stray_result_json_does_not_hide_a_folder(tmp_path: Path) -> None:
    """Any tool may write a result.json: only one that looks like a Telegram export makes
    its folder an export; the images of any other folder are scanned as usual."""
    root = tmp_path / "seized"
    (root / "ml-run" / "sub").mkdir(parents=True)
    (root / "ml-run" / "a.jpg").write_bytes(image(1))
    (root / "ml-run" / "sub" / "b.jpg").write_bytes(image(2))
    (root / "ml-run" / "result.json").write_text('{"accuracy": 0.93, "name": "resnet"}')
    (root / "list").mkdir()
    (root / "list" / "c.jpg").write_bytes(image(3))
    (root / "list" / "result.json").write_text('["messages", "chats"]')
    items = list(iter_items([root]))
    by = _by_path(items)
    for name in ("ml-run/a.jpg", "ml-run/sub/b.jpg", "list/c.jpg"):
        item = by[f"{root}/{name}"]
        assert item.source == {"kind": "file"} and item.error is None
    assert not any(i.source["kind"] == "telegram" for i in items)
    assert len(items) == 5  # the two result.json files are listed as the files they are


def test_a_broken_export_still_scans_every_file_and_a_valid_one_its_extra_files(
    tmp_path: Path,
) -> None:
    export = write_export(tmp_path / "export", seeds=(1,))
    (export.root / "loose.jpg").write_bytes(image(2))  # dropped into the export by hand
    (export.root / "stickers").mkdir()
    (export.root / "stickers" / "s.webp").write_bytes(image(3))
    items = list(iter_items([export.root]))
    by = _by_path(items)
    for rel in ("loose.jpg", "stickers/s.webp"):
        item = by[f"{export.root}/{rel}"]
        assert item.error is None and item.source["note"] == "not referenced by the export"
        assert item.source["kind"] == "telegram" and item.source["message_id"] is None
    assert by[f"{export.root}/photos/photo_2@20-10-2020_12-00-00.jpg"].source["message_id"] == 2
    assert f"{export.root}/result.json" not in by
    # Truncated: reported, and every file is still scanned (without its message).
    text = (export.root / "result.json").read_text(encoding="utf-8")
    (export.root / "result.json").write_text(text[: len(text) // 2], encoding="utf-8")
    items = list(iter_items([export.root]))
    assert _codes(items) == {str(export.root): "malformed_export"}
    assert {i.path for i in items if not i.error} == {
        f"{export.root}/photos/photo_2@20-10-2020_12-00-00.jpg",
        f"{export.root}/loose.jpg",
        f"{export.root}/stickers/s.webp",
    }


@pytest.mark.timeout(60)
def test_fifos_sockets_and_devices_are_never_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: a scan must not hang on one
    (the test's timeout fails it if it does)."""
    import socket

    root = tmp_path / "seized"
    root.mkdir()
    (root / "a.jpg").write_bytes(image(1))
    os.mkfifo(root / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    (root / "null.jpg").symlink_to("/dev/null")  # a device, through a link
    export = write_export(tmp_path / "export", seeds=(2,))
    os.mkfifo(export.root / "photos" / "extra.jpg")
    os.remove(export.root / "photos" / "photo_2@20-10-2020_12-00-00.jpg")
    os.mkfifo(export.root / "photos" / "photo_2@20-10-2020_12-00-00.jpg")
    try:
        items = list(iter_items([root, export.root, root / "pipe.jpg"]))
    finally:
        sock.close()
    codes = _codes(items)
    assert codes[str(root / "pipe.jpg")] == "not_a_regular_file"
    assert codes[str(root / "sock")] == "not_a_regular_file"
    assert codes[f"{export.root}/photos/extra.jpg"] == "not_a_regular_file"
    assert codes[f"{export.root}/photos/photo_2@20-10-2020_12-00-00.jpg"] == "not_a_regular_file"
    assert _by_path(items)[str(root / "a.jpg")].error is None
    # /dev/null is outside the folder: refused as such before anything else.
    assert codes[str(root / "null.jpg")] == "symlink_outside"
    # Named on its own, a device is refused too; and a worker never opens one either.
    (null,) = iter_items([Path("/dev/null")])
    assert null.error is not None and null.error["code"] == "not_a_regular_file"
    with pytest.raises(BatchError) as exc:
        read_item(FileRef(str(root / "pipe.jpg")), MediaLimits())
    assert exc.value.code == "not_a_regular_file"
