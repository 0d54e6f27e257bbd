"""`interlock retry` and the history options of `interlock runs` and `summary` (DESIGN 4, 6).

Contract: `retry RUN [--node N]...` starts a retry from failure (`engine.retry_from`) in this
process, prints the new run id first and exits as `run` does; a run that cannot be retried (not
finished, an unknown node, nothing to run) is one sentence on stderr and exit 2. `runs --state S
--pipeline ID` filters in the store, over every stored run. `summary` lists the runs made from
the run (its retries and replays), the other end of their `retry_of` / `replay_of` link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from engine.manager import RunHandle, RunManager
    from engine.store import RunRow, Store


async def cmd_retry(args: argparse.Namespace) -> int:
    from engine.retry_from import RetryRefusedError
    from tui.cli_common import UsageError, _find_run, _open_store
    from tui.cli_run import _run_with_manager

    async with _open_store(args, create=False) as store:
        run_id = (await _find_run(store, args.run)).run_id

    async def start(manager: RunManager) -> RunHandle:
        try:
            return await manager.retry(run_id, nodes=args.node, actor="cli")
        except RetryRefusedError as exc:
            raise UsageError(f"cannot retry: {exc}") from None

    return await _run_with_manager(args, start)


async def listed_rows(store: Store, args: argparse.Namespace) -> list[RunRow]:
    """The rows `interlock runs` lists: newest first, filtered by `--state`/`--pipeline`."""
    from engine.run_filter import RunFilter

    states = tuple(s for given in args.state for s in given.lower().split(",") if s)
    query = RunFilter(states, args.pipeline)
    if args.limit is not None:
        return (await store.list_runs_page(limit=args.limit, query=query)).rows
    rows: list[RunRow] = []
    after = None
    while True:  # a page at a time: each costs the same, however deep in the history
        page = await store.list_runs_page(limit=5000, query=query, after=after)
        rows += page.rows
        if page.after is None:
            return rows
        after = page.after


async def linked_runs_of(args: argparse.Namespace, run_id: str) -> list[tuple[str, str]]:
    """The runs made from `run_id` (run id, 'retry' or 'replay'), oldest first."""
    from tui.cli import _open_store

    async with _open_store(args, create=False, read=True) as store:
        return await store.linked_runs(run_id)
