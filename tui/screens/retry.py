"""`f`, retry from failure, in the console: the dialog that shows what a retry reuses and what
it runs again (the action behind the key is `tui.screens.actions.RunToolActions`).

Contract: `f` asks first; the dialog lists the nodes whose stored outputs the new run reuses and
the nodes it runs again (from `engine.retry_from.plan_retry`, the same plan the retry follows);
`enter` or `y` starts the retry and opens the new run, `n` or `escape` starts nothing. On a
node's detail the node is named too (`--node N`): it runs again with what is downstream of it.
A run that cannot be retried is refused with the engine's sentence, before any dialog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType

from tui import format as fmt
from tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from engine.retry_from import RetryPlan

LISTED = 12  # node ids a dialog names per list before it says "and N more"


def node_list(nodes: tuple[str, ...], *, limit: int = LISTED) -> str:
    """`a, b, c` (or `a, b and 10 more`, or `none`): a list that fits a dialog."""
    if not nodes:
        return "none"
    shown = ", ".join(nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def plan_text(plan: RetryPlan) -> str:
    """The dialog's body: what is reused, what runs again."""
    def count(nodes: tuple[str, ...]) -> str:
        return f"{len(nodes)} node{'' if len(nodes) == 1 else 's'}"

    return (
        f"Reuses the stored outputs of {count(plan.reused)} (no work, no time):\n"
        f"  {node_list(plan.reused)}\n"
        f"Runs again {count(plan.rerun)}:\n"
        f"  {node_list(plan.rerun)}\n"
        "A new run of the same definition and params, linked to this one."
    )


class RetryScreen(ConfirmScreen):
    """Asks before a retry from failure: `enter`/`y` retry, `n`/`escape` keep it as it is."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Retry"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, plan: RetryPlan, nodes: tuple[str, ...] = ()) -> None:
        named = f" from {', '.join(nodes)}" if nodes else " from failure"
        super().__init__(
            f"Retry run {fmt.short_id(plan.source)}{named}?",
            plan_text(plan),
            yes="Retry",
            no="Keep",
            no_key="n",
            body_id="retry-plan",
        )
        self.plan = plan
        self.nodes = nodes
