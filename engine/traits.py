"""Node-type traits: what the engine must know about a node type, in one table beside the spec.

Contract: `traits_of(node_type)` answers, for every node type, the questions the scheduler, the
attempt path and simulate mode ask: does the node do work that simulate mode replaces, does it
take a concurrency slot while it runs, does a circuit breaker guard it, does it read every
succeeded node's output (not only its parents'), and is it a branch (its `result` picks which
children run). Types registered through the `interlock.nodes` entry points get `PLUGIN`.
Nothing else in the engine tests `node.type in (...)` for these questions. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PLUGIN", "TRAITS", "NodeTraits", "traits_of"]


@dataclass(frozen=True, slots=True)
class NodeTraits:
    does_work: bool = True  # simulate mode replaces the work with `{"simulated": true}`
    takes_slot: bool = True  # counts against `max_concurrency` while it runs
    has_breaker: bool = True  # guarded by the pipeline's circuit breaker for the node
    reads_all_outputs: bool = False  # `ctx.outputs` holds every succeeded node's output
    branches: bool = False  # a condition: children follow its `result` (`when`)


_CONTROL = NodeTraits(does_work=False, has_breaker=False)

TRAITS: dict[str, NodeTraits] = {
    "shell": NodeTraits(),
    "python": NodeTraits(),
    "agent": NodeTraits(),
    "action": NodeTraits(reads_all_outputs=True),
    "condition": NodeTraits(
        does_work=False, has_breaker=False, reads_all_outputs=True, branches=True
    ),
    "delay": _CONTROL,
    # An approval waits for a person: it holds no slot, or waiting would starve the run.
    "approval": NodeTraits(does_work=False, takes_slot=False, has_breaker=False),
    "trigger": _CONTROL,
    "parallel": _CONTROL,
}
PLUGIN = NodeTraits()


def traits_of(node_type: str) -> NodeTraits:
    """The traits of a node type (a plugin type's are `PLUGIN`)."""
    return TRAITS.get(node_type, PLUGIN)
