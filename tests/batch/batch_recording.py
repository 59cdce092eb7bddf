"""An ItemScanner for the interruption tests that records, in any process, what it finished.

It lives in a module of its own, not in conftest.py: the local pool pickles it by module
name into spawned workers, and in a whole-suite run ``conftest`` names another folder's
conftest module."""

from __future__ import annotations

import os
import time
from typing import Any

from rempart.batch import Item, ItemScanner

#: The file a RecordingScanner appends the key of each item it finished to.
SCANNED_LOG = "REMPART_TEST_SCANNED_LOG"
#: RecordingScanners finish on ticks of this many seconds: workers finish together.
TICK_S = 0.25


class RecordingScanner(ItemScanner):
    """An ItemScanner that, in whatever process it runs, records each item it finished in
    the file named by ``$REMPART_TEST_SCANNED_LOG`` (one key a line, appended in one write),
    just before handing the row back. Items finish on a shared clock tick, so that several
    results reach the driver at once (where an interrupted driver used to drop some)."""

    def scan(self, item: Item) -> tuple[dict[str, Any], str | None]:
        out = super().scan(item)
        time.sleep(TICK_S - time.time() % TICK_S)
        fd = os.open(os.environ[SCANNED_LOG], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (item.key + "\n").encode())
        finally:
            os.close(fd)
        return out
