"""The rules that span nodes, checked over a pipeline whose fields are individually valid.

Contract: `Checker(p, file, lines).run()` returns every issue among duplicate ids, unknown node
types, needs/edges/when naming unknown nodes, a node needing itself, cycles (one per group of
mutually dependent nodes, named in order), `when` on a parent that is not a condition,
expressions (`condition.expr`, `action.message`/`artifact` placeholders) outside the language or
reading a name that is neither `params` nor an upstream node, empty or unsplittable shell
commands, unknown agents, a hard gate marked optional, and schedules naming unknown params.

The DAG is `engine.graph`'s: cycles come from `find_cycles`, and when the needs are sound the
checker asks the pipeline for its one `Pipeline.graph` (cached, so the scheduler reuses it) and
reads ancestors from it. Everything is linear in nodes plus edges, so a 10,000-node file costs
milliseconds. Pure apart from listing installed entry points; nothing is imported or run.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from engine.errors import ValidationIssue
from engine.graph import Graph, find_cycles, is_acyclic
from engine.loader.issues import (
    LinePath,
    LineTable,
    did_you_mean,
    line_for,
    registered_node_types,
    show,
)
from engine.spec import BUILTIN_TYPES, ActionNode, AgentNode, ConditionNode, ShellNode
from engine.traits import traits_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from engine.spec import NodeBase, Pipeline


class Checker:
    """Runs the cross-node rules once over a pipeline (or the valid part of one)."""

    def __init__(
        self,
        p: Pipeline,
        file: str | None,
        lines: LineTable,
        *,
        positions: Sequence[int] | None = None,
        stubs: frozenset[int] = frozenset(),
    ) -> None:
        self.p = p
        self.file = file
        self.lines = lines
        self.positions = list(positions) if positions is not None else list(range(len(p.nodes)))
        self.stubs = stubs
        self.issues: list[ValidationIssue] = []
        self._agents: set[str] | None = None
        self.by_id: dict[str, NodeBase] = {}
        self.first: dict[str, int] = {}  # id -> position of its first node
        for pos, node in enumerate(p.nodes):
            self.by_id.setdefault(node.id, node)
            self.first.setdefault(node.id, pos)
        # Needs merged with top-level edges once (`Pipeline.needs_of` scans every edge for each
        # node: quadratic on a big file).
        by_edges: dict[str, list[str]] = {}
        for edge in p.edges:
            by_edges.setdefault(edge.to, []).append(edge.from_)
        self.needs: list[tuple[str, ...]] = [
            tuple(dict.fromkeys((*node.needs, *by_edges[node.id])))
            if node.id in by_edges
            else node.needs
            for node in p.nodes
        ]
        self.parents: dict[str, list[str]] = {}
        sound = positions is None and len(self.by_id) == len(p.nodes)
        for node, needs in zip(p.nodes, self.needs, strict=True):
            known = self.parents.setdefault(node.id, [])
            for parent in needs:
                if parent in self.by_id and parent != node.id:
                    known.append(parent)
                else:
                    sound = False
        # The pipeline's own DAG, once the needs are known to make one (no duplicate ids, no
        # unknown or self needs): built here, where its acyclicity is checked anyway, and kept
        # as the pipeline's `graph` for the scheduler (building it again there cost a 1,000-node
        # run 2 us a node, W10).
        self._graph: Graph | None = None
        if sound:
            try:
                self._graph = Graph(list(self.by_id), self.parents)
            except ValueError:  # a cycle: named below
                pass
            else:
                p.__dict__["graph"] = self._graph
        acyclic = self._graph is not None or is_acyclic(self.parents)
        self.cycles = [] if acyclic else find_cycles(list(self.by_id), self.parents)
        self._types: set[str] | None = None

    def add(self, reason: str, path: LinePath = (), node_id: str | None = None) -> None:
        line = line_for(self.lines, path) if path else None
        self.issues.append(ValidationIssue(reason, file=self.file, line=line, node_id=node_id))

    def run(self) -> list[ValidationIssue]:
        self.check_duplicates()
        for pos, node in enumerate(self.p.nodes):
            at: LinePath = ("nodes", self.positions[pos])
            self.check_type(node, at)
            self.check_needs(node, at)
            if pos in self.stubs:
                continue  # its own fields were invalid; those issues are reported already
            self.check_when(node, at, pos)
            self.check_config(node, at)
        self.check_edges()
        self.check_agents_map()
        self.check_cycles()
        self.check_schedules()
        return self.issues

    def check_schedules(self) -> None:
        for k, entry in enumerate(self.p.schedule):
            for name in entry.params:
                if name not in self.p.params:
                    known = ", ".join(sorted(self.p.params)) or "none"
                    self.add(
                        f"schedule #{k + 1}: unknown param '{name}' (this pipeline takes: {known})",
                        ("schedule", k, "params", name),
                    )

    def check_duplicates(self) -> None:
        first: dict[str, int] = {}
        for pos, node in enumerate(self.p.nodes):
            at: LinePath = ("nodes", self.positions[pos])
            if node.id not in first:
                first[node.id] = pos
                continue
            where = line_for(self.lines, ("nodes", self.positions[first[node.id]]))
            also = f"line {where}" if where is not None else f"node #{first[node.id] + 1}"
            self.add(f"duplicate node id '{node.id}' (first defined at {also})", at, node.id)

    def check_type(self, node: NodeBase, at: LinePath) -> None:
        if not node.type or node.type in BUILTIN_TYPES:
            return
        if self._types is None:
            self._types = registered_node_types()
        if node.type in self._types:
            return
        self.add(
            f"unknown node type '{node.type}'{did_you_mean(node.type, BUILTIN_TYPES)}: "
            f"built-in types are {', '.join(BUILTIN_TYPES)}; others must be registered in "
            "the 'interlock.nodes' entry-point group",
            (*at, "type"),
            node.id,
        )

    def check_needs(self, node: NodeBase, at: LinePath) -> None:
        for j, need in enumerate(node.needs):
            if need == node.id:
                self.add("a node cannot need itself", (*at, "needs", j), node.id)
            elif need not in self.by_id:
                hint = did_you_mean(need, self.by_id)
                self.add(f"needs unknown node '{need}'{hint}", (*at, "needs", j), node.id)

    def check_edges(self) -> None:
        for k, edge in enumerate(self.p.edges):
            at: LinePath = ("edges", k)
            spelled = f"edge {edge.from_} -> {edge.to}"
            for end, value in (("from", edge.from_), ("to", edge.to)):
                if value not in self.by_id:
                    hint = did_you_mean(value, self.by_id)
                    self.add(f"{spelled}: '{end}' names unknown node '{value}'{hint}", (*at, end))
            if edge.from_ == edge.to and edge.from_ in self.by_id:
                self.add(f"{spelled}: a node cannot need itself", at, edge.to)

    def check_when(self, node: NodeBase, at: LinePath, pos: int) -> None:
        if not node.when:
            return
        needs = self.needs[pos]
        for name in node.when:
            where: LinePath = (*at, "when", name)
            parent = self.by_id.get(name)
            if parent is None:
                self.add(f"when names unknown node '{name}'", where, node.id)
            elif name not in needs:
                self.add(f"when names '{name}', which is not in needs", where, node.id)
            elif not traits_of(parent.type).branches:
                self.add(
                    f"when on '{name}', which is a {parent.type or 'plugin'} node, not a "
                    "condition: only a condition has true/false branches",
                    where,
                    node.id,
                )

    def check_config(self, node: NodeBase, at: LinePath) -> None:
        if node.gate == "hard" and node.optional:
            self.add(
                "a hard gate cannot be optional: its failure must stop the run",
                (*at, "optional"),
                node.id,
            )
        if isinstance(node, ShellNode):
            self.check_command(node, at)
        elif isinstance(node, AgentNode):
            if node.agent not in self.known_agents():
                known = ", ".join(sorted(self.known_agents())) or "none"
                self.add(
                    f"unknown agent '{node.agent}': not in this pipeline's 'agents:' map nor "
                    f"registered in the 'interlock.agents' entry-point group (known: {known})",
                    (*at, "agent"),
                    node.id,
                )
        elif isinstance(node, ConditionNode):
            self.check_expression(node, at, "expr", node.expr, _compile_expression)
        elif isinstance(node, ActionNode):
            if node.message is not None:
                self.check_expression(node, at, "message", node.message, _compile_template)
            if node.artifact is not None:
                self.check_expression(node, at, "artifact", node.artifact, _compile_template)

    def check_command(self, node: ShellNode, at: LinePath) -> None:
        where: LinePath = (*at, "command")
        if isinstance(node.command, str):
            try:
                argv = shlex.split(node.command)
            except ValueError as exc:
                self.add(f"command cannot be split into words: {exc}", where, node.id)
                return
        else:
            argv = list(node.command)
        if not argv or not argv[0].strip():
            self.add("empty command: name the program to run", where, node.id)

    def known_agents(self) -> set[str]:
        if self._agents is None:
            from engine.registry import known_agents

            self._agents = known_agents(self.p)
        return self._agents

    def check_agents_map(self) -> None:
        from engine.registry import is_callable_ref

        for name, ref in self.p.agents.items():
            if not is_callable_ref(ref):
                self.add(
                    f"agent '{name}': bad reference {show(ref)}: use 'module:function'",
                    ("agents", name),
                )

    def check_expression(
        self,
        node: NodeBase,
        at: LinePath,
        field: str,
        source: str,
        compile_fn: Callable[[str], frozenset[str]],
    ) -> None:
        from engine.expr import ExpressionError

        where: LinePath = (*at, field)
        try:
            names = compile_fn(source)
        except ExpressionError as exc:
            self.add(f"bad expression in {field}: {exc}", where, node.id)
            return
        upstream = self.ancestors(node.id)
        for name in sorted(names - {"params"}):
            if name == node.id:
                self.add(f"{field} reads '{name}', the node's own output", where, node.id)
            elif name not in self.by_id:
                hint = did_you_mean(name, [*self.by_id, "params"])
                self.add(
                    f"{field} reads unknown name '{name}'{hint}: use params.<name> or the id of "
                    "an upstream node",
                    where,
                    node.id,
                )
            elif name not in upstream:
                self.add(
                    f"{field} reads '{name}', which is not upstream of this node (add it to "
                    "needs, directly or through a parent)",
                    where,
                    node.id,
                )

    def ancestors(self, node_id: str) -> set[str]:
        if self._graph is not None:  # the needs made a DAG
            return self._graph.ancestors(node_id)
        seen: set[str] = set()  # the parents known so far, around whatever is broken
        stack = list(self.parents.get(node_id, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents.get(current, ()))
        return seen

    def check_cycles(self) -> None:
        for cycle in self.cycles:
            start = cycle[0]
            at: LinePath = ("nodes", self.positions[self.first[start]])
            self.add(f"cycle: {' -> '.join(cycle)}", at, start)


def _compile_expression(source: str) -> frozenset[str]:
    from engine.expr import compile_expression

    return compile_expression(source).names


def _compile_template(source: str) -> frozenset[str]:
    from engine.expr import compile_template

    return compile_template(source).names
