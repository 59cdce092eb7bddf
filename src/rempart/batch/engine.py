"""What an engine is: something that runs items through workers' Scanners and hands each
finished row to a sink. The local process pool and Ray are the two there are."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from rempart.batch.items import Item
from rempart.batch.worker import ScanOptions

#: Receives each finished row, and its preview (a data URI) when one was made.
Sink = Callable[[dict[str, Any], str | None], None]

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineStats:
    """How a run went: workers, items scanned, seconds to start them and to scan."""

    engine: str
    workers: int
    scanned: int
    startup_s: float
    scan_s: float


class Engine(Protocol):
    """Runs a batch."""

    name: str
    workers: int

    def run(self, items: Iterable[Item], options: ScanOptions, sink: Sink) -> EngineStats:
        """Scan every item, calling ``sink`` once per finished item."""
        ...
