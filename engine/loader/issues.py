"""Turning what pydantic and the rules found into `ValidationIssue`s a user can act on.

Contract: `model_issues(errors, raw, file, lines)` turns pydantic's errors for a raw definition
into one issue per problem, each with a sentence (not pydantic's wording: "unknown field 'comand'
for type shell (did you mean 'command'?)", "command: expected a list of strings or a string,
got 5"), the node id when the problem is inside a node, and the line when `lines` knows it. The
small helpers here (`line_for`, `node_id_at`, `tidy`, `show`, `did_you_mean`) are shared by the
reader and the cross-node rules. Pure: no I/O beyond listing installed node types.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from engine.errors import ValidationIssue
from engine.spec import (
    BUILTIN_TYPES,
    ActionNode,
    AgentNode,
    ApprovalNode,
    Backoff,
    BreakerPolicy,
    ConditionNode,
    Defaults,
    DelayNode,
    Edge,
    NodeBase,
    ParallelNode,
    ParamSpec,
    Pipeline,
    PluginNode,
    PythonNode,
    RetryPolicy,
    ScheduleEntry,
    SecretRef,
    ShellNode,
    TriggerNode,
)

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

LinePath: TypeAlias = tuple[str | int, ...]
LineTable: TypeAlias = Mapping[LinePath, int]

_NODE_CLASSES: dict[str, type[NodeBase]] = {
    "shell": ShellNode,
    "python": PythonNode,
    "agent": AgentNode,
    "condition": ConditionNode,
    "delay": DelayNode,
    "approval": ApprovalNode,
    "trigger": TriggerNode,
    "action": ActionNode,
    "parallel": ParallelNode,
    "plugin": PluginNode,
}
# Models a nested mapping is validated against, by the key it sits under (for "did you mean").
_NESTED_MODELS: dict[str, type[BaseModel]] = {
    "defaults": Defaults,
    "retry": RetryPolicy,
    "backoff": Backoff,
    "breaker": BreakerPolicy,
    "edges": Edge,
    "params": ParamSpec,
    "env": SecretRef,
    "schedule": ScheduleEntry,
}
_MODEL_NAMES = frozenset(
    [cls.__name__ for cls in _NESTED_MODELS.values()]
    + [cls.__name__ for cls in _NODE_CLASSES.values()]
)
_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "SecretRef": "{from_env: NAME, secret: true}",
}


def tidy(issues: Iterable[ValidationIssue]) -> list[ValidationIssue]:
    """Without repeats, ordered by line (issues without a line last, in the order found)."""
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.line is None, i.line or 0))


def line_for(lines: LineTable, path: LinePath) -> int | None:
    """The line of `path`, else of its nearest enclosing entry that has one."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def node_id_at(raw: Any, path: LinePath) -> str | None:
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        nodes = raw.get("nodes") if isinstance(raw, Mapping) else None
        if isinstance(nodes, list) and 0 <= path[1] < len(nodes):
            item = nodes[path[1]]
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                return str(item["id"])
    return None


# -- pydantic errors -> issues ----------------------------------------------------------------


def model_issues(
    errors: Sequence[ErrorDetails], raw: Mapping[str, Any], file: str | None, lines: LineTable
) -> list[ValidationIssue]:
    raw_nodes = raw.get("nodes")
    registered = registered_node_types()
    kept: list[tuple[LinePath, str | None, ErrorDetails]] = []
    for err in errors:
        loc: LinePath = tuple(err["loc"])
        tag: str | None = None
        if len(loc) >= 3 and loc[0] == "nodes" and isinstance(loc[1], int) and loc[2] in (
            _NODE_CLASSES
        ):
            tag = str(loc[2])
            loc = (loc[0], loc[1], *loc[3:])
        if loc == ("nodes",) and err["type"] == "too_short" and raw_nodes:
            continue  # every node failed on its own; those errors say why
        if tag == "plugin" and err["type"] == "extra_forbidden":
            node_type = _raw_node(raw, loc).get("type")
            if isinstance(node_type, str) and node_type not in registered:
                continue  # the unknown type is the problem; the checker reports it
        kept.append((loc, tag, err))

    issues: list[ValidationIssue] = []
    for loc, tag, group in _collapse_unions(kept):
        node_id = node_id_at(raw, loc)
        reason = _reason(loc, tag, group, raw)
        if loc[:1] == ("nodes",) and len(loc) >= 2 and node_id is None:
            reason = f"node #{int(loc[1]) + 1}: {reason}"
        issues.append(
            ValidationIssue(reason, file=file, line=line_for(lines, loc), node_id=node_id)
        )
    return issues


def _raw_node(raw: Mapping[str, Any], loc: LinePath) -> Mapping[str, Any]:
    nodes = raw.get("nodes")
    if isinstance(nodes, list) and len(loc) >= 2 and isinstance(loc[1], int):
        item = nodes[loc[1]]
        if isinstance(item, Mapping):
            return item
    return {}


def _is_member_tag(part: str | int) -> bool:
    return isinstance(part, str) and (
        part in _TYPE_WORDS or part in _MODEL_NAMES or "[" in part or part.startswith("function-")
    )


def _collapse_unions(
    errors: list[tuple[LinePath, str | None, ErrorDetails]],
) -> list[tuple[LinePath, str | None, list[ErrorDetails]]]:
    """Merge the per-member errors pydantic reports for a value that fits no union member.

    Pydantic puts the member's name in the location (`command.list[str]`, `command.str`). A
    location is a union site when errors under it differ in a member name at the next step. If
    a member failed deeper inside (a SecretRef with an unknown field), only that detail is kept;
    otherwise the members become one "expected X or Y" issue.
    """
    members: dict[LinePath, set[str]] = {}
    for loc, _, _ in errors:
        for k, part in enumerate(loc):
            if _is_member_tag(part):
                members.setdefault(loc[:k], set()).add(str(part))
    sites = {prefix for prefix, names in members.items() if len(names) > 1}

    # In pydantic's order: an error (by index), or a union site's group at its first error.
    order: list[int | LinePath] = []
    grouped: dict[LinePath, list[tuple[LinePath, str | None, ErrorDetails]]] = {}
    for i, (loc, tag, err) in enumerate(errors):
        site = next((loc[:k] for k in range(len(loc)) if loc[:k] in sites), None)
        if site is None:
            order.append(i)
            continue
        if site not in grouped:
            order.append(site)
        grouped.setdefault(site, []).append((loc, tag, err))

    out: list[tuple[LinePath, str | None, list[ErrorDetails]]] = []
    for entry in order:
        if isinstance(entry, int):
            loc, tag, err = errors[entry]
            out.append((loc, tag, [err]))
            continue
        items = grouped[entry]
        deeper = [(loc, tag, err) for loc, tag, err in items if len(loc) > len(entry) + 1]
        if deeper:
            out.extend(((*entry, *loc[len(entry) + 1 :]), tag, [err]) for loc, tag, err in deeper)
        else:
            out.append((entry, items[0][1], [err for _, _, err in items]))
    return out


def _field_name(loc: LinePath) -> str:
    rest = loc[2:] if loc[:1] == ("nodes",) and len(loc) >= 2 else loc
    return ".".join(str(part) for part in rest)


def _reason(
    loc: LinePath, tag: str | None, errors: list[ErrorDetails], raw: Mapping[str, Any]
) -> str:
    err = errors[0]
    field = _field_name(loc)
    given = err.get("input")
    kind = err["type"]
    in_node = loc[:1] == ("nodes",) and len(loc) >= 2
    if len(errors) > 1:
        expected = " or ".join(
            _TYPE_WORDS.get(str(e["loc"][-1]), str(e["loc"][-1])) for e in errors
        )
        return f"{field}: expected {expected}, got {show(given)}"
    if kind == "missing":
        if loc == ("nodes",):
            return "the pipeline has no nodes: add a 'nodes:' list"
        if in_node and field == "type":
            return f"missing required field 'type' (one of {', '.join(BUILTIN_TYPES)})"
        if in_node and len(loc) == 3 and tag is not None:
            node_type = _raw_node(raw, loc).get("type", tag)
            return f"missing required field '{field}' for type {node_type}"
        return f"missing required field '{field}'"
    if kind == "extra_forbidden":
        return _unknown_field(loc, tag, raw)
    if loc == ("nodes",) and kind == "too_short":
        return "the pipeline has no nodes"
    if kind in ("model_type", "dict_type", "model_attributes_type") and in_node and len(loc) == 2:
        return f"a node must be a mapping with 'id' and 'type', not {_kind_of(given)}"
    if kind == "string_pattern_mismatch":
        return _pattern_reason(loc, field, given)
    if kind == "string_too_short":
        return f"{field} must not be empty"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{field}: expected {expected}, got {show(given)}"
    if kind == "value_error":
        return f"{field}: {err['msg'].removeprefix('Value error, ')}"
    message = err["msg"].replace("Input should be", "should be")
    if kind == "tuple_type" or kind == "list_type":
        message = "should be a list"
    if kind in ("model_type", "dict_type"):
        message = "should be a mapping"
    return f"{field or 'pipeline'}: {message}, got {show(given)}"


def _unknown_field(loc: LinePath, tag: str | None, raw: Mapping[str, Any]) -> str:
    name = str(loc[-1])
    parent = loc[:-1]
    where = _field_name(parent)
    allowed: Iterable[str] = ()
    if parent == ():
        allowed = _field_names(Pipeline)
    elif len(parent) == 2 and parent[0] == "nodes" and tag is not None:
        if tag == "plugin":
            node_type = _raw_node(raw, loc).get("type")
            return (
                f"unknown field '{name}': settings of a '{node_type}' node go under 'config:'"
            )
        allowed = _field_names(_NODE_CLASSES[tag])
    else:
        for part in reversed(parent):
            if isinstance(part, str) and part in _NESTED_MODELS:
                allowed = _field_names(_NESTED_MODELS[part])
                break
    reason = f"unknown field '{name}'" + (f" in {where}" if where else "")
    if tag is not None and len(parent) == 2:
        reason += f" for type {_raw_node(raw, loc).get('type', tag)}"
    return reason + did_you_mean(name, allowed)


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _pattern_reason(loc: LinePath, field: str, given: Any) -> str:
    if loc == ("id",):
        return (
            f"invalid pipeline id {show(given)}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    if field == "id":
        return (
            f"invalid node id {show(given)}: use letters, digits and '_', not starting with a "
            "digit (ids are names in expressions)"
        )
    if field == "call":
        return f"bad call {show(given)}: use 'module:function', e.g. 'mypkg.tasks:load'"
    if "env" in loc or field == "from_env":
        return (
            f"bad environment variable name {show(given)}: a name cannot contain '=' or a NUL"
        )
    return f"{field}: {show(given)} has the wrong format"


def show(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def registered_node_types() -> set[str]:
    from engine.registry import node_type_entry_points

    return set(node_type_entry_points())
