"""One worker's side of a batch scan: the same :class:`~rempart.scan.Scanner` as ``rempart
scan`` and the service, built once per worker process (store opened, banks loaded once), then
applied to item after item. Every engine runs items through :meth:`ItemScanner.scan`; no step
of the scan is re-implemented here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from rempart.batch.archives import ArchiveLimits
from rempart.batch.items import Item, ZipCache, error_row, os_error, read_item
from rempart.batch.previews import make_preview
from rempart.batch.rows import flagged
from rempart.errors import RempartError
from rempart.policy import DEFAULT_POLICY, Policy
from rempart.settings import Settings


@dataclass(frozen=True)
class ScanOptions:
    """What every worker needs to scan like the others (picklable: it crosses processes)."""

    settings: Settings
    policy: Policy = DEFAULT_POLICY
    banks: tuple[str, ...] | None = None
    tenant: str = "default"
    signals: frozenset[str] = frozenset()
    previews: bool = False
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)


class ItemScanner:
    """A worker's Scanner and open archives; :meth:`scan` turns an item into its row."""

    def __init__(self, options: ScanOptions) -> None:
        from rempart.scan import Scanner
        from rempart.store import Store

        self.options = options
        # The driver migrated the store before starting workers; workers only read it.
        self._store = Store.open(options.settings.database_url, migrate=False)
        self.scanner = Scanner(self._store, options.settings, policy=options.policy)
        self._zips = ZipCache()
        self._warm_up()

    def _warm_up(self) -> None:
        """Scan one small drawn image, so the one-time costs (decoders, the index's compiled
        kernels, the first query) are paid at start, not by the first items."""
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(buf, "JPEG")
        opts = self.options
        # A warm-up failure shows up again, and is reported, on a real item.
        with contextlib.suppress(Exception):
            self.scanner.scan_bytes(buf.getvalue(), banks=opts.banks, tenant=opts.tenant)

    def scan(self, item: Item) -> tuple[dict[str, Any], str | None]:
        """The result row of ``item`` and, with previews on and the item flagged, its
        blurred thumbnail. Never raises for a bad item: the error goes in the row."""
        opts = self.options
        if item.error is not None or item.locator is None:
            return error_row(
                item, item.error or {"code": "internal", "message": "no locator"}
            ), None
        try:
            data = read_item(item.locator, opts.settings.limits, self._zips, opts.archive_limits)
            result = self.scanner.scan_bytes(
                data, banks=opts.banks, tenant=opts.tenant, signals=opts.signals
            )
        except RempartError as e:
            return error_row(item, e.to_dict()), None
        except OSError as e:
            return error_row(item, os_error(item.path, e).to_dict()), None
        except Exception as e:  # a decoder bug must not end a scan of a million files
            message = f"{item.path}: {type(e).__name__}: {e}"
            return error_row(item, {"code": "internal", "message": message}), None
        row: dict[str, Any] = {
            "key": item.key,
            "path": item.path,
            "source": item.source,
            "bytes": len(data),
        }
        row.update(result.to_dict())
        # Bank ids, as in the service's scan records: they tell the global ``cases`` bank
        # from a tenant's bank of the same name (case alerts, the report's case groups).
        for part in ("matches", "suppressed"):
            found: list[Any] = getattr(result.match, part)
            if part in row and len(row[part]) == len(found):
                row[part] = [
                    {**m, "bank_id": f.bank_id} for m, f in zip(row[part], found, strict=True)
                ]
        preview = None
        if opts.previews and flagged(row):
            try:
                preview = self.preview(data)
            except Exception as e:  # a thumbnail is a convenience: never lose the row for it
                message = f"{item.path}: {type(e).__name__}: {e}"
                row["preview_error"] = {"code": "preview_failed", "message": message}
        return row, preview

    def preview(self, data: bytes) -> str | None:
        """The blurred thumbnail of a flagged item (see :mod:`rempart.batch.previews`)."""
        return make_preview(data, self.options.settings.limits)

    def close(self) -> None:
        """Close archives and the store."""
        self._zips.close()
        self._store.close()
