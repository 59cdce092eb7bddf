"""read_media_file: the byte limit is enforced without reading a huge file."""

from __future__ import annotations

import pytest

from rempart.errors import MediaError
from rempart.media import read_media_file
from rempart.settings import MediaLimits


def test_reads_the_bytes(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"\x89PNG rest")
    assert read_media_file(path, MediaLimits()) == b"\x89PNG rest"
    assert read_media_file(str(path), MediaLimits()) == b"\x89PNG rest"


def test_a_huge_file_is_refused_from_its_size(tmp_path):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as f:
        f.truncate(10 * 1024**3)  # 10 GiB, sparse: reading it would take a while
    with pytest.raises(MediaError) as info:
        read_media_file(path, MediaLimits(max_bytes=1024))
    assert info.value.code == "too_large"
    assert "10,737,418,240" in info.value.message


def test_exactly_the_limit_is_allowed(tmp_path):
    path = tmp_path / "edge.bin"
    path.write_bytes(b"x" * 100)
    assert len(read_media_file(path, MediaLimits(max_bytes=100))) == 100
    with pytest.raises(MediaError):
        read_media_file(path, MediaLimits(max_bytes=99))


def test_file_system_errors_are_left_to_the_caller(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_media_file(tmp_path / "missing.jpg", MediaLimits())
    with pytest.raises(IsADirectoryError):
        read_media_file(tmp_path, MediaLimits())
