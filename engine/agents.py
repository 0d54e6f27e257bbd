"""Built-in agents, registered in the `interlock.agents` entry-point group by this distribution.

An agent is called as `agent(payload, ctx)` where `payload` is the node's input
(`params`, `inputs`, `run_id`, `node_id`, `attempt`, plus the node's `config`) and returns a dict,
the node's output. Agents may be sync or async.
"""

from __future__ import annotations

from typing import Any


async def echo_agent(inputs: dict[str, Any], ctx: object) -> dict[str, Any]:
    """A reference agent for tests and demos: echoes its config and names the inputs it got."""
    return {"echo": inputs.get("config"), "inputs": sorted(inputs["inputs"])}
