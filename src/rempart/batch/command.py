"""``rempart scan PATH... --out DIR``: the command line's door into a batch run.

Kept here so that ``rempart.cli`` stays a thin parser: this turns the options into a
:class:`~rempart.batch.BatchConfig`, shows progress, prints the summary as JSON and says
what the exit status is (0; 1 when some item failed; 130 when interrupted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from rempart.batch.progress import RichProgress
from rempart.batch.run import BatchConfig, run_batch
from rempart.errors import RempartError
from rempart.settings import Settings


def batch_scan(
    paths: Sequence[Path],
    out: Path,
    settings: Settings,
    console: Console,
    *,
    signals: str,
    banks: list[str] | None,
    policy: Path | None,
    tenant: str,
    engine: str,
    workers: int | None,
    address: str | None,
    previews: bool,
    limit: int | None,
    force: bool = False,
    record: bool = True,
    emit: Callable[[dict[str, Any]], None],
    fail: Callable[[RempartError], NoReturn],
) -> int:
    """Run the batch scan and print its summary; the exit status."""
    from rempart.evidence.collect import parse_signals
    from rempart.policy import DEFAULT_POLICY, load_policy

    try:
        config = BatchConfig(
            paths=list(paths),
            out=out,
            settings=settings,
            policy=load_policy(policy) if policy else DEFAULT_POLICY,
            policy_name=str(policy.resolve()) if policy else "default",
            banks=tuple(banks) if banks else None,
            tenant=tenant,
            signals=parse_signals(signals),
            engine=engine,
            workers=workers,
            address=address,
            previews=previews,
            limit=limit,
            force=force,
            record=record,
        )
        with RichProgress(console) as progress:
            summary = run_batch(config, progress=progress)
    except RempartError as e:
        fail(e)
    except OSError as e:
        fail(RempartError(f"cannot read {policy}: {e.strerror}", code="unreadable"))
    except KeyboardInterrupt:
        console.print(
            f"interrupted: finished items are kept in {out}; run the same command to go on"
        )
        return 130
    emit(summary.to_dict())
    if summary.tally.errors:
        console.print(
            f"{summary.tally.errors} of {summary.tally.items} items could not be scanned "
            f"(see their `error` in {out / 'results.jsonl'})."
        )
        return 1
    return 0
