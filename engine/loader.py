"""The one loader: pipeline files (YAML or JSON) and plain dicts -> a validated `Pipeline`.

Contract:

- `load_file(path)`, `load_text(text)` and `load_dict(raw)` either return a `Pipeline` that
  passed every check, or raise `PipelineValidationError` listing EVERY problem found, each a
  `ValidationIssue` with the file, the line where known, the node id and a reason a user can act
  on. Nothing else escapes: a missing, unreadable, oversized, binary or non-UTF-8 file is one
  issue, never a traceback.
- YAML is read with `yaml.SafeLoader`'s composer and constructor, over LibYAML's parser when
  PyYAML has it (a document LibYAML refuses is read again by PyYAML's own parser, whose messages
  and verdict stand): only plain data (mappings, lists, scalars); any other tag
  (`!!python/object`, ...) is refused. Booleans follow YAML 1.2 (`true`/`false` only), so
  `on:` in a retry policy stays a key and `MODE: yes` stays a string. The loader keeps
  a side table of line numbers by path (`("nodes", 3)` -> the line of the fourth node,
  `("nodes", 3, "command")` -> the line of its command), so issues point at the line; the data
  itself stays plain dicts and lists. Duplicate keys in a mapping are reported, not silently
  overwritten. Aliases may not expand to more than `MAX_EXPANDED_NODES` values.
- JSON is chosen by the `.json` extension or when the text starts with `{`; a syntax error
  gives its line.
- `check_pipeline(p)` holds the rules that span nodes (the models check single fields):
  duplicate ids, unknown node types, needs/edges/when naming unknown nodes, a node needing
  itself, cycles (named in order), `when` on a parent that is not a condition, expressions
  (`condition.expr`, `action.message`/`artifact` placeholders) that are outside the language
  or read a name that is neither `params` nor an upstream node, empty or unsplittable shell
  commands, unknown agents, a hard gate marked optional.

Pure apart from reading the file and listing installed entry points; nothing is imported or run.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from engine.errors import PipelineValidationError, ValidationIssue
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
    Node,
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
    from pydantic_core import ErrorDetails

__all__ = [
    "MAX_EXPANDED_NODES",
    "MAX_FILE_BYTES",
    "LinePath",
    "LineTable",
    "check_pipeline",
    "load_dict",
    "load_file",
    "load_text",
    "parse_text",
    "read_text",
]

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_EXPANDED_NODES = 500_000

LinePath: TypeAlias = tuple[str | int, ...]
LineTable: TypeAlias = Mapping[LinePath, int]
Format: TypeAlias = Literal["yaml", "json"]

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


# ---------------------------------------------------------------------------------------------
# public API


def load_file(path: str | os.PathLike[str]) -> Pipeline:
    """Read, parse and validate a pipeline file (`.yaml`, `.yml` or `.json`)."""
    name = os.fspath(path)
    text = read_text(name)
    fmt: Format | None = "json" if name.lower().endswith(".json") else None
    return load_text(text, file=name, fmt=fmt)


def load_text(text: str, *, file: str | None = None, fmt: Format | None = None) -> Pipeline:
    """Parse YAML or JSON text (by `fmt`, else JSON when it starts with `{`) and validate it."""
    parsed = _parse(text, file, fmt)
    pipeline, issues = _validate(parsed.data, file=file, lines=parsed.lines)
    issues = parsed.issues + issues
    if issues or pipeline is None:
        raise PipelineValidationError(_tidy(issues))
    return pipeline


def parse_text(text: str, *, file: str | None = None, fmt: Format | None = None) -> Any:
    """The plain data in YAML or JSON text, read exactly as `load_text` reads it (no validation).

    Raises `PipelineValidationError` for syntax errors, refused tags and duplicate keys.
    """
    parsed = _parse(text, file, fmt)
    if parsed.issues:
        raise PipelineValidationError(_tidy(parsed.issues))
    return parsed.data


def load_dict(raw: Any, *, file: str | None = None, lines: LineTable | None = None) -> Pipeline:
    """Validate already-parsed data (a definition snapshot, a builder's dict, parsed JSON)."""
    if raw is None:
        raise PipelineValidationError([ValidationIssue("the definition is empty", file=file)])
    pipeline, issues = _validate(raw, file=file, lines=lines or {})
    if issues or pipeline is None:
        raise PipelineValidationError(_tidy(issues))
    return pipeline


def check_pipeline(
    p: Pipeline, *, file: str | None = None, lines: LineTable | None = None
) -> list[ValidationIssue]:
    """The cross-node rules over a pipeline whose fields are individually valid."""
    return _tidy(_Checker(p, file, lines or {}).run())


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a pipeline file; one clear `PipelineValidationError` if it cannot be had."""
    name = os.fspath(path)

    def fail(reason: str, line: int | None = None) -> PipelineValidationError:
        return PipelineValidationError([ValidationIssue(reason, file=name, line=line)])

    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise fail("file not found") from None
    except PermissionError:
        raise fail("cannot read the file: permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise fail("is a directory, not a pipeline file")
    if not stat.S_ISREG(info.st_mode):
        raise fail("is not a regular file")
    limit = f"{MAX_FILE_BYTES // (1024 * 1024)} MB"
    if info.st_size > MAX_FILE_BYTES:
        raise fail(f"file is too large ({info.st_size:,} bytes; the limit is {limit})")
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise fail("cannot read the file: permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"file is too large (the limit is {limit})")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise fail("looks like a binary file, not YAML or JSON text (it contains NUL bytes)", line)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise fail(f"is not UTF-8 text (byte 0x{bad} at offset {exc.start})", line) from None


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass
class _Parsed:
    data: Any
    lines: dict[LinePath, int]
    issues: list[ValidationIssue]


_Duplicate: TypeAlias = tuple[LinePath, str, int, int]  # path, key, first line, this line
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Yaml12Resolver(yaml.resolver.Resolver):
    """YAML 1.2 booleans: 1.1 reads yes/no/on/off as booleans, but a pipeline's `on:` key and
    `MODE: yes` must stay text (own copy of the table; PyYAML's loaders are untouched)."""


_Yaml12Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Yaml12Resolver.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _LocatingConstructor(yaml.constructor.SafeConstructor):
    """`SafeConstructor` whose value errors are located YAML errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A well-formed scalar Python cannot build (`2024-13-45`, an int of 5,000 digits)
        # raises a bare ValueError in PyYAML; make it a located YAML error like the others.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid value {str(node.value)[:40]!r}: {exc}", node.start_mark
            ) from None


class _SafeLineLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _LocatingConstructor,
    _Yaml12Resolver,
):
    """`yaml.SafeLoader`, all in Python, with YAML 1.2 booleans and located value errors."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _LocatingConstructor.__init__(self)
        _Yaml12Resolver.__init__(self)


class _LineLoader(Protocol):
    def get_single_node(self) -> yaml.Node | None: ...
    def construct_document(self, node: yaml.Node) -> Any: ...
    def dispose(self) -> None: ...


_LINE_LOADERS: tuple[Callable[[str], _LineLoader], ...] = (_SafeLineLoader,)

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _FastLineLoader(
        yaml.composer.Composer,  # before CParser, whose own composing methods it overrides
        CParser,
        _LocatingConstructor,
        _Yaml12Resolver,
    ):
        """The same loader with LibYAML scanning and parsing: about six times as fast.

        Composing stays in Python (`Composer` before `CParser`): LibYAML's own composer
        recurses in C and crashes the process on deeply nested input, where Python's raises
        `RecursionError`, reported. LibYAML's parser is iterative; everything from its events
        on (anchors and aliases, tags, the safe constructor, YAML 1.2 booleans, marks) is
        PyYAML's Python code, as in `_SafeLineLoader`.
        """

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            _LocatingConstructor.__init__(self)
            _Yaml12Resolver.__init__(self)

    # LibYAML's first. Text it refuses (or cannot encode: lone surrogates) is read again by
    # Python's, so that every problem is reported in PyYAML's words, with PyYAML's verdict.
    _LINE_LOADERS = (_FastLineLoader, _SafeLineLoader)


def _load_with_lines(
    loader: _LineLoader,
) -> tuple[Any, dict[LinePath, int], list[_Duplicate]]:
    """The document, its line table and its duplicate keys as (path, key, first line)."""
    root = loader.get_single_node()
    if root is None:
        return None, {}, []
    _check_expansion(root)
    lines: dict[LinePath, int] = {}
    duplicates: list[_Duplicate] = []
    _walk(root, (), lines, duplicates)  # before construction flattens `<<` merges
    return loader.construct_document(root), lines, duplicates


class _TooLarge(Exception):
    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases and alias "bombs" before they are expanded into data."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    aliased = False  # whether a node was met twice (an alias): only then is it a "bomb"

    def size(node: yaml.Node) -> int:
        nonlocal aliased
        key = id(node)
        if key in sizes:
            aliased = True
            return sizes[key]
        if key in active:
            raise _TooLarge("a YAML alias refers to itself", node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        active.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise _TooLarge(
                f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values"
                if aliased
                else f"the file holds more than {MAX_EXPANDED_NODES:,} values, too many for a "
                "pipeline",
                node.start_mark.line + 1,
            )
        sizes[key] = total
        return total

    size(root)


def _walk(
    node: yaml.Node,
    path: LinePath,
    lines: dict[LinePath, int],
    duplicates: list[_Duplicate],
) -> None:
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                duplicates.append(((*path, key), key, first_seen[key], line))
                continue
            first_seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, duplicates)


def _yaml_issue(exc: yaml.YAMLError, file: str | None) -> ValidationIssue:
    if isinstance(exc, yaml.constructor.ConstructorError) and exc.problem_mark is not None:
        line = exc.problem_mark.line + 1
        tag = _tag_in(exc.problem or "")
        if tag:
            return ValidationIssue(
                f"YAML tag {tag} is refused: a pipeline file holds plain data only "
                "(mappings, lists, strings, numbers, booleans)",
                file=file,
                line=line,
            )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        problem += next((hint for text, hint in _YAML_HINTS if text in problem), "")
        if mark is None:
            return ValidationIssue(f"YAML syntax error: {problem}", file=file)
        return ValidationIssue(
            f"YAML syntax error: {problem} (line {mark.line + 1}, column {mark.column + 1})",
            file=file,
            line=mark.line + 1,
        )
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        return ValidationIssue(
            f"YAML syntax error: character {shown} is not allowed in YAML text",
            file=file,
        )
    return ValidationIssue(f"YAML syntax error: {exc}", file=file)


_YAML_HINTS = (
    ("expected <block end>", "; check the indentation"),
    ("mapping values are not allowed", "; check the indentation, or quote a value with ': '"),
    ("found character '\\t'", "; indent with spaces, not tabs"),
)


def _tag_in(problem: str) -> str | None:
    match = re.search(r"tag '([^']*)'", problem)
    if match is None:
        return None
    tag = match.group(1)
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


def _parse(text: str, file: str | None, fmt: Format | None) -> _Parsed:
    if fmt is None:
        fmt = "json" if text.lstrip("\ufeff \t\r\n").startswith("{") else "yaml"
    return _parse_json(text, file) if fmt == "json" else _parse_yaml(text, file)


def _parse_yaml(text: str, file: str | None) -> _Parsed:
    for make in _LINE_LOADERS[:-1]:
        with contextlib.suppress(yaml.YAMLError, UnicodeEncodeError):
            return _parse_yaml_with(make, text, file)
    try:
        return _parse_yaml_with(_LINE_LOADERS[-1], text, file)
    except yaml.YAMLError as exc:
        return _Parsed(None, {}, [_yaml_issue(exc, file)])


def _parse_yaml_with(make: Callable[[str], _LineLoader], text: str, file: str | None) -> _Parsed:
    """The document read by `make(text)`; raises `yaml.YAMLError` for a YAML problem."""
    loader = make(text)  # Python's reader refuses control characters already here
    try:
        data, lines, duplicates = _load_with_lines(loader)
    except _TooLarge as exc:
        return _Parsed(None, {}, [ValidationIssue(exc.reason, file=file, line=exc.line)])
    except RecursionError:
        return _Parsed(None, {}, [ValidationIssue("the YAML is nested too deeply", file=file)])
    finally:
        loader.dispose()
    if data is None:
        return _Parsed(None, {}, [ValidationIssue("the file is empty", file=file)])
    return _Parsed(data, lines, _duplicate_issues(duplicates, data, file))


def _duplicate_issues(
    duplicates: list[_Duplicate], data: Any, file: str | None
) -> list[ValidationIssue]:
    return [
        ValidationIssue(
            f"duplicate key '{key}' (first on line {first}); a mapping names each key once",
            file=file,
            line=line,
            node_id=_node_id_at(data, path),
        )
        for path, key, first, line in duplicates
    ]


def _parse_json(text: str, file: str | None) -> _Parsed:
    duplicate_keys: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicate_keys.append(key)
            out[key] = value
        return out

    try:
        data = json.loads(text.lstrip("\ufeff"), object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        return _Parsed(
            None,
            {},
            [
                ValidationIssue(
                    f"JSON syntax error: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    file=file,
                    line=exc.lineno,
                )
            ],
        )
    except RecursionError:
        return _Parsed(None, {}, [ValidationIssue("the JSON is nested too deeply", file=file)])
    except ValueError as exc:  # e.g. an integer with more digits than int() accepts
        return _Parsed(None, {}, [ValidationIssue(f"JSON value cannot be read: {exc}", file=file)])
    if data is None:  # `null`: as empty as an empty YAML file, and said so
        reason = "the top level must be a mapping with 'id' and 'nodes', not null"
        return _Parsed(None, {}, [ValidationIssue(reason, file=file, line=1)])
    lines, yaml_duplicates = _yaml_lines(text)
    if yaml_duplicates is not None:
        issues = _duplicate_issues(yaml_duplicates, data, file)
    else:
        issues = [ValidationIssue(f"duplicate key '{k}'", file=file) for k in duplicate_keys]
    return _Parsed(data, lines, issues)


def _yaml_lines(text: str) -> tuple[dict[LinePath, int], list[_Duplicate] | None]:
    """JSON is (nearly) YAML, so the YAML walker can usually supply its line table and
    duplicate keys; best effort only: `({}, None)` when it cannot."""
    for make in _LINE_LOADERS:
        lines: dict[LinePath, int] = {}
        duplicates: list[_Duplicate] = []
        loader: _LineLoader | None = None
        try:
            loader = make(text)
            root = loader.get_single_node()
            if root is not None:
                _walk(root, (), lines, duplicates)
            return lines, duplicates if root is not None else None
        except (yaml.YAMLError, UnicodeEncodeError):
            continue
        except RecursionError:
            break
        finally:
            if loader is not None:
                loader.dispose()
    return {}, None


# ---------------------------------------------------------------------------------------------
# validation


def _validate(
    raw: Any, *, file: str | None, lines: LineTable
) -> tuple[Pipeline | None, list[ValidationIssue]]:
    if raw is None:
        return None, []  # the parser has said why (empty file, syntax error)
    if not isinstance(raw, Mapping):
        what = "a list" if isinstance(raw, list) else f"a {type(raw).__name__}"
        reason = f"the top level must be a mapping with 'id' and 'nodes', not {what}"
        return None, [ValidationIssue(reason, file=file, line=1 if lines else None)]
    try:
        pipeline = Pipeline.model_validate(raw)
    except ValidationError as exc:
        issues = _model_issues(exc.errors(), raw, file, lines)
        partial = _partial_pipeline(raw)
        if partial is not None:
            p, positions, stubs = partial
            issues += _Checker(p, file, lines, positions=positions, stubs=stubs).run()
        return None, issues
    except RecursionError:
        return None, [ValidationIssue("the definition is nested too deeply", file=file)]
    return pipeline, _Checker(pipeline, file, lines).run()


def _tidy(issues: Iterable[ValidationIssue]) -> list[ValidationIssue]:
    """Without repeats, ordered by line (issues without a line last, in the order found)."""
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.line is None, i.line or 0))


def _line_for(lines: LineTable, path: LinePath) -> int | None:
    """The line of `path`, else of its nearest enclosing entry that has one."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _node_id_at(raw: Any, path: LinePath) -> str | None:
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        nodes = raw.get("nodes") if isinstance(raw, Mapping) else None
        if isinstance(nodes, list) and 0 <= path[1] < len(nodes):
            item = nodes[path[1]]
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                return str(item["id"])
    return None


@cache
def _node_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(Node)


def _partial_pipeline(
    raw: Mapping[str, Any],
) -> tuple[Pipeline, list[int], frozenset[int]] | None:
    """As much of an invalid definition as validates, so the cross-node rules still run.

    Nodes that fail their own validation take part as stubs (id, type and needs only), so a
    typo in one node's config does not turn every reference to it into a second error.
    """
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, list):
        return None
    nodes: list[Node] = []
    positions: list[int] = []
    stubs: set[int] = set()
    for i, item in enumerate(raw_nodes):
        try:
            nodes.append(_node_adapter().validate_python(item))
        except ValidationError:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                continue
            needs = item.get("needs")
            node_type = item.get("type")
            stubs.add(len(nodes))
            nodes.append(
                PluginNode.model_construct(
                    id=item["id"],
                    type=node_type if isinstance(node_type, str) else "",
                    needs=_string_tuple(needs),
                )
            )
        positions.append(i)
    edges: list[Edge] = []
    raw_edges = raw.get("edges")
    if isinstance(raw_edges, list):
        for item in raw_edges:
            try:
                edges.append(Edge.model_validate(item))
            except ValidationError:
                continue
    agents = raw.get("agents")
    ok_agents = isinstance(agents, Mapping) and all(isinstance(v, str) for v in agents.values())
    params = raw.get("params")
    p = Pipeline.model_construct(
        id=str(raw.get("id", "")),
        nodes=tuple(nodes),
        edges=tuple(edges),
        agents=dict(agents) if ok_agents and isinstance(agents, Mapping) else {},
        params=dict(params) if isinstance(params, Mapping) else {},
    )
    return p, positions, frozenset(stubs)


def _string_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return ()


# -- pydantic errors -> issues ----------------------------------------------------------------


def _model_issues(
    errors: Sequence[ErrorDetails], raw: Mapping[str, Any], file: str | None, lines: LineTable
) -> list[ValidationIssue]:
    raw_nodes = raw.get("nodes")
    registered = _registered_node_types()
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
        node_id = _node_id_at(raw, loc)
        reason = _reason(loc, tag, group, raw)
        if loc[:1] == ("nodes",) and len(loc) >= 2 and node_id is None:
            reason = f"node #{int(loc[1]) + 1}: {reason}"
        issues.append(
            ValidationIssue(reason, file=file, line=_line_for(lines, loc), node_id=node_id)
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
        return f"{field}: expected {expected}, got {_show(given)}"
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
        return f"{field}: expected {expected}, got {_show(given)}"
    if kind == "value_error":
        return f"{field}: {err['msg'].removeprefix('Value error, ')}"
    message = err["msg"].replace("Input should be", "should be")
    if kind == "tuple_type" or kind == "list_type":
        message = "should be a list"
    if kind in ("model_type", "dict_type"):
        message = "should be a mapping"
    return f"{field or 'pipeline'}: {message}, got {_show(given)}"


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
    return reason + _did_you_mean(name, allowed)


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _pattern_reason(loc: LinePath, field: str, given: Any) -> str:
    if loc == ("id",):
        return (
            f"invalid pipeline id {_show(given)}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    if field == "id":
        return (
            f"invalid node id {_show(given)}: use letters, digits and '_', not starting with a "
            "digit (ids are names in expressions)"
        )
    if field == "call":
        return f"bad call {_show(given)}: use 'module:function', e.g. 'mypkg.tasks:load'"
    if "env" in loc or field == "from_env":
        return (
            f"bad environment variable name {_show(given)}: a name cannot contain '=' or a NUL"
        )
    return f"{field}: {_show(given)} has the wrong format"


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


# -- cross-node rules -------------------------------------------------------------------------


def _registered_node_types() -> set[str]:
    from engine.registry import node_type_entry_points

    return set(node_type_entry_points())


class _Checker:
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
        for node in p.nodes:
            self.by_id.setdefault(node.id, node)
        self.parents: dict[str, list[str]] = {}
        for node in p.nodes:
            self.parents.setdefault(node.id, [])
            for parent in p.needs_of(node):
                if parent in self.by_id and parent != node.id:
                    self.parents[node.id].append(parent)

    def add(self, reason: str, path: LinePath = (), node_id: str | None = None) -> None:
        line = _line_for(self.lines, path) if path else None
        self.issues.append(ValidationIssue(reason, file=self.file, line=line, node_id=node_id))

    def run(self) -> list[ValidationIssue]:
        self.check_duplicates()
        for pos, node in enumerate(self.p.nodes):
            at: LinePath = ("nodes", self.positions[pos])
            self.check_type(node, at)
            self.check_needs(node, at)
            if pos in self.stubs:
                continue  # its own fields were invalid; those issues are reported already
            self.check_when(node, at)
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
            where = _line_for(self.lines, ("nodes", self.positions[first[node.id]]))
            also = f"line {where}" if where is not None else f"node #{first[node.id] + 1}"
            self.add(f"duplicate node id '{node.id}' (first defined at {also})", at, node.id)

    def check_type(self, node: NodeBase, at: LinePath) -> None:
        if not node.type or node.type in BUILTIN_TYPES:
            return
        if node.type in _registered_node_types():
            return
        self.add(
            f"unknown node type '{node.type}'{_did_you_mean(node.type, BUILTIN_TYPES)}: "
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
                hint = _did_you_mean(need, self.by_id)
                self.add(f"needs unknown node '{need}'{hint}", (*at, "needs", j), node.id)

    def check_edges(self) -> None:
        for k, edge in enumerate(self.p.edges):
            at: LinePath = ("edges", k)
            spelled = f"edge {edge.from_} -> {edge.to}"
            for end, value in (("from", edge.from_), ("to", edge.to)):
                if value not in self.by_id:
                    hint = _did_you_mean(value, self.by_id)
                    self.add(f"{spelled}: '{end}' names unknown node '{value}'{hint}", (*at, end))
            if edge.from_ == edge.to and edge.from_ in self.by_id:
                self.add(f"{spelled}: a node cannot need itself", at, edge.to)

    def check_when(self, node: NodeBase, at: LinePath) -> None:
        if not node.when:
            return
        needs = self.p.needs_of(node)
        for name in node.when:
            where: LinePath = (*at, "when", name)
            parent = self.by_id.get(name)
            if parent is None:
                self.add(f"when names unknown node '{name}'", where, node.id)
            elif name not in needs:
                self.add(f"when names '{name}', which is not in needs", where, node.id)
            elif parent.type != "condition":
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
                    f"agent '{name}': bad reference {_show(ref)}: use 'module:function'",
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
                hint = _did_you_mean(name, [*self.by_id, "params"])
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
        seen: set[str] = set()
        stack = list(self.parents.get(node_id, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents.get(current, ()))
        return seen

    def check_cycles(self) -> None:
        from engine.graph import find_cycles

        ids = list(self.by_id)
        for cycle in find_cycles(ids, self.parents):
            start = cycle[0]
            pos = next(i for i, node in enumerate(self.p.nodes) if node.id == start)
            self.add(f"cycle: {' -> '.join(cycle)}", ("nodes", self.positions[pos]), start)


def _compile_expression(source: str) -> frozenset[str]:
    from engine.expr import compile_expression

    return compile_expression(source).names


def _compile_template(source: str) -> frozenset[str]:
    from engine.expr import compile_template

    return compile_template(source).names
