"""`interlock diff RUN_A RUN_B [--json]`: what differs between two stored runs.

Contract (DESIGN section 6): exit 0 whatever differs; an unknown run is one sentence and exit 2.
The comparison is `engine.diff.diff_runs` over the two folded states; this only reads them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tui.cli_common import EXIT_OK, _find_run, _open_store, _say

if TYPE_CHECKING:
    import argparse


async def cmd_diff(args: argparse.Namespace) -> int:
    from engine.diff import diff_runs, diff_text

    async with _open_store(args, create=False, read=True) as store:
        row_a = await _find_run(store, args.run_a)
        row_b = await _find_run(store, args.run_b)
        state_a = await store.fold_run(row_a.run_id)
        state_b = await store.fold_run(row_b.run_id)
    diff = diff_runs(state_a, state_b)
    if args.json:
        _say(json.dumps(diff.to_dict(), separators=(",", ":"), default=str))
    else:
        _say(diff_text(diff))
    return EXIT_OK
