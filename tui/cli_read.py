"""The reading commands: `interlock runs`, `status`, `summary`, `events` and `breakers`.

Contract (DESIGN section 6): they read the store and never write a run (a database that may not
be written is opened read-only); a run that lost its owner reads `interrupted`, worked out from
its lease (`engine.control.reconcile`), not written. JSON output is strict and its keys are
fixed; human output escapes a node's control characters. `breakers` lists the store's breakers
through the engine's one breaker model (`BreakerRecord`: its shown state and cool-down left,
as the console shows them); `breakers reset KEY` closes one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from engine.lease import owner_alive, shown_state
from tui.cli_common import (
    EXIT_OK,
    UsageError,
    _find_run,
    _nothing_stored_yet,
    _open_store,
    _say,
)
from tui.escape import printable

if TYPE_CHECKING:
    import argparse

    from engine.state import RunState
    from engine.store import RunRow


def _row_dict(row: RunRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "pipeline_id": row.pipeline_id,
        "state": row.state,
        "started_at": row.started_at or row.created_at,
        "ended_at": row.ended_at,
    }


async def cmd_runs(args: argparse.Namespace) -> int:
    if _nothing_stored_yet(args):
        _say("[]" if args.json else "no runs yet")
        return EXIT_OK
    async with _open_store(args, read=True) as store:
        from tui.cli_history import listed_rows

        # The state to show (`interrupted` from the lease); nothing is written.
        listed = await listed_rows(store, args)
        rows = [dataclasses.replace(r, state=shown_state(r)) for r in listed]
    if args.json:
        _say(json.dumps([_row_dict(r) for r in rows], separators=(",", ":")))
        return EXIT_OK
    if not rows:
        _say("no runs listed (--limit 0)" if args.limit == 0 else "no runs yet")
        return EXIT_OK
    _say(f"{'RUN':32}  {'PIPELINE':20}  {'STATE':11}  {'STARTED':20}  ENDED")
    for r in rows:
        started = (r.started_at or r.created_at or "")[:19].replace("T", " ")
        ended = (r.ended_at or "")[:19].replace("T", " ")
        _say(f"{r.run_id:32}  {r.pipeline_id[:20]:20}  {r.state:11}  {started:20}  {ended}")
    return EXIT_OK


async def _folded(args: argparse.Namespace) -> RunState:
    from engine.control import reconcile

    async with _open_store(args, create=False, read=True) as store:
        row = await _find_run(store, args.run)
        state = await store.fold_run(row.run_id)
    return reconcile(state, row)  # `interrupted` worked out from the lease, not written


async def cmd_status(args: argparse.Namespace) -> int:
    from engine.state import state_to_dict

    state = await _folded(args)
    if args.json:
        _say(json.dumps(state_to_dict(state), separators=(",", ":"), default=str))
        return EXIT_OK
    _say(f"run {state.run_id}  pipeline {state.pipeline_id}  state {state.state.value}")
    if state.reason:
        _say(printable(f"reason: {state.reason}"))
    for node in state.nodes.values():
        extra = f"  {node.error_class}: {node.reason}" if node.error_class else ""
        if node.state.value == "skipped" and node.reason:
            extra = f"  ({node.reason})"
        line = f"  {node.node_id:28} {node.state.value:10} attempts {node.attempts}{extra}"
        _say(printable(line))
    return EXIT_OK


async def cmd_summary(args: argparse.Namespace) -> int:
    from tui.cli_history import linked_runs_of
    from tui.summary import summary_dict, summary_text

    state = await _folded(args)
    links = await linked_runs_of(args, state.run_id)
    if args.json:
        _say(json.dumps(summary_dict(state, links), separators=(",", ":"), default=str))
    else:
        _say(summary_text(state, links))
    return EXIT_OK


async def cmd_events(args: argparse.Namespace) -> int:
    async with _open_store(args, create=False, read=True) as store:
        run_id = (await _find_run(store, args.run)).run_id
        if args.tail is not None:
            events = await store.tail_events(run_id, args.tail)
        else:
            events = await store.events(run_id)
        last = events[-1].seq if events else 0
        if args.tail is not None:
            last = await store.last_seq(run_id)
        finished = False
        for event in events:
            if args.type is None or event.event_type.startswith(args.type):
                sys.stdout.write(event.to_json() + "\n")
            finished = finished or event.event_type == "run.completed"
        sys.stdout.flush()
        if not args.follow:
            return EXIT_OK
        idle = 0.0
        while True:
            row = await store.run_row(run_id)
            if row is not None and row.state in ("succeeded", "failed", "timeout", "cancelled"):
                finished = True
            batch = await store.events(run_id, after_seq=last)
            for event in batch:
                last = event.seq
                if args.type is None or event.event_type.startswith(args.type):
                    sys.stdout.write(event.to_json() + "\n")
            if batch:
                sys.stdout.flush()
                idle = 0.0
            if finished and not batch:
                return EXIT_OK
            idle += 0.1
            if idle >= 2.0 and row is not None and not owner_alive(row):
                return EXIT_OK  # nobody is writing any more: the run is interrupted
            await asyncio.sleep(0.1)


async def cmd_breakers(args: argparse.Namespace) -> int:
    if args.action == "reset":
        if not args.key:
            raise UsageError("breakers reset needs a KEY (see `interlock breakers`)")
        async with _open_store(args) as store:
            found = await store.reset_breaker(args.key)
        if not found:
            raise UsageError(f"no breaker with key '{args.key}'")
        _say(f"breaker {args.key} reset (closed)")
        return EXIT_OK
    if args.action is not None:
        raise UsageError(f"unknown breakers action '{args.action}' (use: breakers reset KEY)")
    if _nothing_stored_yet(args):
        _say("[]" if args.json else "no breakers yet")
        return EXIT_OK
    from tui.format import breaker_label

    async with _open_store(args, read=True) as store:
        records = await store.load_breakers()
    now = time.time()
    # The console's `b` reads the same records through the same model: one state, one count.
    items = [record.item(now) for _, record in sorted(records.items())]
    if args.json:
        _say(json.dumps(items, separators=(",", ":")))
    elif not items:
        _say("no breakers yet")
    else:
        _say(f"{'KEY':40}  {'STATE':9}  {'FAILURES':8}  COOL-DOWN")
        for item in items:
            cool = f"{item['remaining']:.1f}s left" if item["remaining"] else "-"
            label = breaker_label(item["state"])
            _say(f"{item['key']:40}  {label:9}  {item['failures']:<8}  {cool}")
    return EXIT_OK
