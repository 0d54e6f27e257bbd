"""Finding the code a pipeline names: agents, plugin node types and `module:attr` callables.

Contract:

- Agents come from the pipeline's own `agents:` map (name -> `"module:attr"`) first, then from
  the `interlock.agents` entry-point group. Plugin node types come from the `interlock.nodes`
  group. Entry points are read once per process (`functools.cache`; call `cache_clear()` on the
  two listing functions after installing a distribution at run time).
- `resolve_callable("pkg.mod:attr.path")` imports `pkg.mod` and walks `attr.path`. When the
  module is not importable and `search_path` is given (the pipeline file's folder), it tries
  again with that folder put first on `sys.path`, so a pipeline's own modules work without
  installing them; the folder stays on `sys.path` because the module may import its siblings
  later.
- Every failure is a `LookupError` whose message names the reference and the cause; nothing
  else escapes (a module that raises while it is imported is reported the same way).
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.spec import Pipeline

__all__ = [
    "AGENT_GROUP",
    "NODE_GROUP",
    "agent_entry_points",
    "is_callable_ref",
    "known_agents",
    "node_type_entry_points",
    "resolve_agent",
    "resolve_callable",
    "resolve_node_type",
]

AGENT_GROUP = "interlock.agents"
NODE_GROUP = "interlock.nodes"

_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_callable_ref(ref: str) -> bool:
    """True if `ref` is spelled `module.path:attr.path`."""
    return bool(_REF_RE.match(ref))


def _group(name: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=name):
        found.setdefault(ep.name, ep)  # the first distribution to claim a name keeps it
    return found


@functools.cache
def agent_entry_points() -> dict[str, EntryPoint]:
    """Agents registered by installed distributions (group `interlock.agents`), by name."""
    return _group(AGENT_GROUP)


@functools.cache
def node_type_entry_points() -> dict[str, EntryPoint]:
    """Plugin node types registered by installed distributions (group `interlock.nodes`)."""
    return _group(NODE_GROUP)


def known_agents(pipeline: Pipeline) -> set[str]:
    """Agent names a node of `pipeline` may use: its `agents:` map plus the entry points."""
    return set(pipeline.agents) | set(agent_entry_points())


def resolve_callable(ref: str, *, search_path: str | None = None) -> Callable[..., Any]:
    """Import `module:attr.path` and return the callable it names; `LookupError` if impossible."""
    if not isinstance(ref, str) or not is_callable_ref(ref):
        raise LookupError(f"bad callable reference {ref!r}: use 'module:function'")
    module_name, _, attr_path = ref.partition(":")
    module = _import(ref, module_name, search_path)
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LookupError(f"cannot resolve '{ref}': no attribute '{part}'") from None
    if not callable(target):
        raise LookupError(f"cannot resolve '{ref}': {type(target).__name__} is not callable")
    return target  # type: ignore[no-any-return]  # callable() narrowed it; mypy keeps Any


def _import(ref: str, module_name: str, search_path: str | None) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if search_path is None or not _is_missing(exc, module_name):
            raise LookupError(f"cannot import '{module_name}' for '{ref}': {exc}") from None
    except Exception as exc:  # a module that fails while importing is the user's bug, reported
        raise LookupError(
            f"cannot import '{module_name}' for '{ref}': {type(exc).__name__}: {exc}"
        ) from None
    if search_path not in sys.path:
        sys.path.insert(0, search_path)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise LookupError(
            f"cannot import '{module_name}' for '{ref}' (also looked in {search_path}): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _is_missing(exc: ModuleNotFoundError, module_name: str) -> bool:
    """True if the module itself (or a parent package) is missing, not one of its imports."""
    missing = exc.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


def resolve_agent(
    name: str, pipeline: Pipeline, *, search_path: str | None = None
) -> Callable[..., Any]:
    """The agent callable `name`: the pipeline's `agents:` map first, then the entry points."""
    ref = pipeline.agents.get(name)
    if ref is not None:
        return resolve_callable(ref, search_path=search_path)
    ep = agent_entry_points().get(name)
    if ep is None:
        known = ", ".join(sorted(known_agents(pipeline))) or "none"
        raise LookupError(
            f"unknown agent '{name}': not in the pipeline's agents map nor registered in the "
            f"'{AGENT_GROUP}' entry-point group (known: {known})"
        )
    loaded = _load(ep, f"agent '{name}'")
    if not callable(loaded):
        raise LookupError(f"agent '{name}' ({ep.value}) is not callable")
    return loaded  # type: ignore[no-any-return]  # callable() narrowed it; mypy keeps Any


def resolve_node_type(type_name: str) -> Any:
    """The implementation registered for plugin node type `type_name` (loads its entry point).

    Typed `Any`: a plugin is whatever its distribution registered (usually a callable
    `(node, ctx) -> dict`); the caller decides how to use it.
    """
    ep = node_type_entry_points().get(type_name)
    if ep is None:
        raise LookupError(
            f"unknown node type '{type_name}': not built in and not registered in the "
            f"'{NODE_GROUP}' entry-point group"
        )
    return _load(ep, f"node type '{type_name}'")


def _load(ep: EntryPoint, what: str) -> Any:
    try:
        return ep.load()
    except Exception as exc:
        raise LookupError(
            f"cannot load {what} from {ep.value}: {type(exc).__name__}: {exc}"
        ) from None
