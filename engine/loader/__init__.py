"""The one loader: pipeline files (YAML or JSON) and plain dicts -> a validated `Pipeline`.

Contract:

- `load_file(path)`, `load_text(text)` and `load_dict(raw)` either return a `Pipeline` that
  passed every check, or raise `PipelineValidationError` listing EVERY problem found, each a
  `ValidationIssue` with the file, the line where known, the node id and a reason a user can act
  on. Nothing else escapes: a missing, unreadable, oversized, binary or non-UTF-8 file is one
  issue, never a traceback.
- Fast when there is nothing to report: text is first read without line numbers
  (`yamlread.read_fast`: LibYAML's events straight into dicts and lists) and validated; only if
  that finds a problem, or the text is unusual (anchors, tags, duplicate keys, a syntax error),
  is it read again by the careful reader, which keeps a line table, and validated against it,
  so every issue still carries its line. Both readers give the same data (`yamlread`'s
  contract: YAML 1.2 booleans, PyYAML's safe scalars otherwise, no tags, alias guards).
- `parse_text(text)` is the data exactly as `load_text` reads it, without validation.
- `check_pipeline(p)` runs the cross-node rules (`checks.Checker`) over a built pipeline.

Modules: `yamlread` (text -> data and line table), `issues` (pydantic errors -> sentences),
`checks` (rules that span nodes, on `engine.graph`). Pure apart from reading the file and
listing installed entry points; nothing is imported or run.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from engine.errors import PipelineValidationError, ValidationIssue
from engine.loader.checks import Checker
from engine.loader.issues import LinePath, LineTable, model_issues, tidy
from engine.loader.yamlread import MAX_EXPANDED_NODES, SLOW, Format, parse, read_fast
from engine.spec import Edge, Node, Pipeline, PluginNode

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


def load_file(path: str | os.PathLike[str]) -> Pipeline:
    """Read, parse and validate a pipeline file (`.yaml`, `.yml` or `.json`)."""
    name = os.fspath(path)
    text = read_text(name)
    fmt: Format | None = "json" if name.lower().endswith(".json") else None
    return load_text(text, file=name, fmt=fmt)


def load_text(text: str, *, file: str | None = None, fmt: Format | None = None) -> Pipeline:
    """Parse YAML or JSON text (by `fmt`, else JSON when it starts with `{`) and validate it."""
    with _gc_paused():
        data = read_fast(text, fmt)
        if data is not SLOW:
            pipeline, issues = _validate(data, file=file, lines={})
            if pipeline is not None and not issues:
                return pipeline
    # Something to report: read again with line numbers, so that every issue has its line.
    parsed = parse(text, file, fmt)
    pipeline, issues = _validate(parsed.data, file=file, lines=parsed.lines)
    issues = parsed.issues + issues
    if issues or pipeline is None:
        raise PipelineValidationError(tidy(issues))
    return pipeline


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Reading builds one container per mapping and list and nothing cyclic; the collector's
    # passes over them cost 5-7% of validating a 10,000-node file and find nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_text(text: str, *, file: str | None = None, fmt: Format | None = None) -> Any:
    """The plain data in YAML or JSON text, read exactly as `load_text` reads it (no validation).

    Raises `PipelineValidationError` for syntax errors, refused tags and duplicate keys.
    """
    data = read_fast(text, fmt)
    if data is not SLOW:
        return data
    parsed = parse(text, file, fmt)
    if parsed.issues:
        raise PipelineValidationError(tidy(parsed.issues))
    return parsed.data


def load_dict(raw: Any, *, file: str | None = None, lines: LineTable | None = None) -> Pipeline:
    """Validate already-parsed data (a definition snapshot, a builder's dict, parsed JSON)."""
    if raw is None:
        raise PipelineValidationError([ValidationIssue("the definition is empty", file=file)])
    pipeline, issues = _validate(raw, file=file, lines=lines or {})
    if issues or pipeline is None:
        raise PipelineValidationError(tidy(issues))
    return pipeline


def check_pipeline(
    p: Pipeline, *, file: str | None = None, lines: LineTable | None = None
) -> list[ValidationIssue]:
    """The cross-node rules over a pipeline whose fields are individually valid."""
    return tidy(Checker(p, file, lines or {}).run())


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
        issues = model_issues(exc.errors(), raw, file, lines)
        partial = _partial_pipeline(raw)
        if partial is not None:
            p, positions, stubs = partial
            issues += Checker(p, file, lines, positions=positions, stubs=stubs).run()
        return None, issues
    except RecursionError:
        return None, [ValidationIssue("the definition is nested too deeply", file=file)]
    return pipeline, Checker(pipeline, file, lines).run()


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
