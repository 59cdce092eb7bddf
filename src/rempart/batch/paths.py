"""Names inside archives and exports, checked before anything is opened by them.

A seized archive or a chat export is untrusted: a member called ``../../home/x/.bashrc`` or
``/etc/passwd``, or a Telegram ``result.json`` that points at ``../../secret.jpg``, must never
make Rempart read outside what the investigator gave it. Nothing is ever extracted to disk,
but reading by such a name would still leak a file into the results.
"""

from __future__ import annotations

import os
import re

_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_reason(name: str) -> str | None:
    """Why the relative ``name`` is unsafe to follow, or ``None`` when it is safe.

    Unsafe: empty, a NUL byte, absolute (``/x``, ``\\x``, ``C:x``), or any ``..`` component
    (with either slash: Windows tools write backslashes into ZIPs).
    """
    if not name or "\x00" in name:
        return "an empty name or one with a NUL byte"
    parts = name.replace("\\", "/")
    if parts.startswith("/") or _DRIVE.match(parts):
        return "an absolute path"
    if any(p == ".." for p in parts.split("/")):
        return "a '..' component (path traversal)"
    return None


def hidden(name: str) -> bool:
    """Whether a member is hidden (a dot file or folder, or macOS's ``__MACOSX`` resource
    forks): skipped, as :func:`rempart.media.iter_files` skips dot files."""
    return any(p.startswith(".") or p == "__MACOSX" for p in name.replace("\\", "/").split("/"))


def within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path``, with every link resolved, is ``root`` or lies under it."""
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)
