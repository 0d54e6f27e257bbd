"""Whatever it is fed, the loader answers with a valid pipeline or `PipelineValidationError`.

Three kinds of input: arbitrary nested data (what YAML can produce: str/int/None/bool keys,
huge integers, NaN, dates, bytes), near-valid pipelines with random mutations at random paths,
and text (dumped YAML/JSON and raw YAML-ish noise). A pipeline that loads must also survive its
own definition snapshot, since resume and replay rebuild runs from it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import PipelineValidationError
from engine.graph import Graph
from engine.loader import load_dict, load_text, yamlread
from engine.spec import Pipeline
from faults.helpers import FAULT_SETTINGS

FIELDS = [
    "id", "name", "nodes", "needs", "type", "command", "call", "expr", "when", "trigger",
    "optional", "gate", "timeout", "retry", "max_attempts", "backoff", "on", "breaker", "key",
    "env", "from_env", "secret", "params", "default", "edges", "from", "to", "duration",
    "message", "artifact", "agent", "agents", "config", "defaults", "max_concurrency",
    "cleanup_grace", "fail_fast", "cwd", "jitter", "initial", "multiplier", "failure_threshold",
    "recovery_timeout",
]  # fmt: skip
WORDS = [
    "a", "b", "shell", "python", "condition", "delay", "approval", "trigger", "action",
    "parallel", "agent", "hard", "all_done", "one_failed", "none_failed", "transient", "1s",
    "250ms", "2m", "-1s", "1e400", "nan", "mod:fn", "a.b > 1", "__import__('os')", "{x}",
    "}{", "echo hi", "", " ", "\x00", "\ud800", "é", "9" * 400 + "s",
]  # fmt: skip

huge_ints = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(),  # NaN and infinities included
    st.text(max_size=20),
    st.sampled_from(WORDS),
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(),
)
keys = st.one_of(
    st.sampled_from(FIELDS), st.text(max_size=10), st.integers(), st.booleans(), st.none()
)
data = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)

BASE: dict[str, Any] = {
    "id": "near-valid",
    "params": {"env": {"default": "staging"}},
    "timeout": "10m",
    "max_concurrency": 4,
    "defaults": {"retry": {"max_attempts": 2, "backoff": {"initial": "10ms"}}},
    "nodes": [
        {"id": "extract", "type": "shell", "command": ["echo", "{}"],
         "env": {"TOKEN": {"from_env": "HOME", "secret": True}}, "gate": "hard"},
        {"id": "enough", "type": "condition", "needs": ["extract"], "expr": "params.env == 'x'"},
        {"id": "load", "type": "python", "call": "mod:fn", "needs": ["enough"],
         "retry": {"max_attempts": 3, "on": ["transient"]}, "breaker": {"key": "wh"}},
        {"id": "alert", "type": "action", "needs": ["enough"], "when": {"enough": False},
         "message": "no rows for {params.env}"},
        {"id": "wait", "type": "delay", "duration": "5ms", "needs": ["load"]},
        {"id": "ok", "type": "approval", "needs": ["wait"]},
        {"id": "report", "type": "shell", "needs": ["ok", "alert"], "trigger": "none_failed",
         "optional": True, "command": "echo done"},
    ],
    "edges": [{"from": "extract", "to": "report"}],
}  # fmt: skip


def check(load: Any, raw: Any) -> None:
    """The one promise: a Pipeline, or PipelineValidationError naming at least one problem."""
    try:
        pipeline = load(raw)
    except PipelineValidationError as exc:
        assert exc.issues, "PipelineValidationError without a single issue"
        assert all(isinstance(i.reason, str) and i.reason for i in exc.issues)
        str(exc)  # the message renders
        return
    assert isinstance(pipeline, Pipeline)
    Graph.from_pipeline(pipeline)  # a loaded pipeline always makes a graph
    snapshot = pipeline.snapshot()
    json.dumps(snapshot)  # stored as JSON in run.created
    again = load_dict(snapshot, file="<snapshot>")
    assert again.snapshot() == snapshot
    assert [(n.id, pipeline.needs_of(n)) for n in pipeline.nodes] == [
        (n.id, again.needs_of(n)) for n in again.nodes
    ]


def test_the_base_of_the_mutations_is_a_valid_pipeline() -> None:
    assert load_dict(copy.deepcopy(BASE)).id == "near-valid"


@settings(FAULT_SETTINGS, max_examples=300)
@given(raw=data)
def test_arbitrary_data_gives_a_pipeline_or_a_validation_error(raw: Any) -> None:
    check(load_dict, raw)
    check(load_dict, {"id": "x", "nodes": raw})
    check(load_dict, {"id": "x", "nodes": [raw]})


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    raw = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        raw = _mutate(draw, raw)
    return raw


def _mutate(draw: st.DrawFn, root: Any) -> Any:
    """One random change somewhere: replace, delete, add a key, duplicate or reorder a list."""
    node: Any = root
    parent: Any = None  # parent[key] is node
    key: Any = None
    while isinstance(node, dict | list) and node and draw(st.integers(0, 3)):
        parent, key = (
            node,
            draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node))))),
        )
        node = node[key]
    op = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "reverse"]))
    if op == "replace" or (parent is None and op == "delete"):
        value = draw(data)
        if parent is None:
            return value if draw(st.integers(0, 9)) == 0 else root
        parent[key] = value
    elif op == "delete" and parent is not None:
        del parent[key]
    elif op == "add" and isinstance(node, dict):
        node[draw(keys)] = draw(data)
    elif op == "duplicate" and isinstance(node, list) and node:
        node.append(copy.deepcopy(draw(st.sampled_from(node))))
    elif op == "reverse" and isinstance(node, list):
        node.reverse()
    return root


@settings(FAULT_SETTINGS, max_examples=400)
@given(raw=mutated())
def test_near_valid_pipelines_give_a_pipeline_or_a_validation_error(raw: Any) -> None:
    check(load_dict, raw)


def _yaml_text(raw: Any) -> str | None:
    try:
        return yaml.safe_dump(raw, allow_unicode=True)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None


yaml_noise = st.lists(
    st.sampled_from([*"ab:-[]{}!&*#|>'\"\n 0123456789.,?%@`\t", "!!python/", "<<", "\\x"]),
    max_size=60,
).map("".join)


@settings(FAULT_SETTINGS, max_examples=300)
@given(raw=mutated() | data, noise=yaml_noise, fmt=st.sampled_from(["yaml", "json", None]))
def test_any_text_gives_a_pipeline_or_a_validation_error(raw: Any, noise: str, fmt: Any) -> None:
    def load(text: str) -> Pipeline:
        return load_text(text, file="<fuzz>", fmt=fmt)

    text = _yaml_text(raw)
    if text is not None:
        check(load, text)
    try:
        as_json = json.dumps(raw, default=str)
    except (ValueError, TypeError):
        as_json = None
    if as_json is not None:
        check(load, as_json)
    check(load, noise)
    check(load, "id: x\nnodes:\n" + noise)


@settings(FAULT_SETTINGS, max_examples=300)
@given(raw=mutated() | data, noise=yaml_noise, flow=st.booleans())
def test_the_fast_and_the_careful_reader_agree_on_any_text(
    raw: Any, noise: str, flow: bool
) -> None:
    # The fast read keeps no line numbers; whatever it accepts must be exactly what the careful
    # reader makes of the same text (values and their types), and without a problem to report.
    texts = [noise, "id: x\nnodes:\n" + noise]
    with contextlib.suppress(yaml.YAMLError, ValueError, TypeError, RecursionError):
        texts.append(yaml.safe_dump(raw, allow_unicode=True, default_flow_style=flow))
    for text in texts:
        fast = yamlread.read_fast(text, "yaml")
        if fast is yamlread.SLOW:
            continue
        careful = yamlread.parse(text, "<fuzz>", "yaml")
        assert not careful.issues
        assert _typed(fast) == _typed(careful.data)


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {(type(k).__name__, k): _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def test_values_python_cannot_build_print_or_read_are_validation_errors() -> None:
    digits = "1" * 5000  # more digits than int() parses or repr() prints
    for text in (
        f"id: x\nnodes: []\ntimeout: {digits}",
        "id: x\nname: 2024-13-45\nnodes: [{id: a, type: delay, duration: 1}]",  # no such date
        f'{{"id": "x", "nodes": [], "timeout": {digits}}}',
        "id: x\x07\nnodes: []\n",  # a control character: refused by the YAML reader
        '{"id": "x\x07", "nodes": []}',
    ):
        check(lambda t: load_text(t, file="<fuzz>"), text)
    check(load_dict, {"id": "x", "name": 10**5000, "nodes": []})


def test_a_definition_that_is_not_there_is_a_validation_error() -> None:
    check(load_dict, None)
    for fmt in ("json", "yaml", None):
        for text in ("null", "", " \n", "~", "---\n...\n"):
            check(lambda t, f=fmt: load_text(t, file="<empty>", fmt=f), text)


def test_durations_too_large_to_keep_time_with_are_refused() -> None:
    day = datetime.timedelta(days=1).total_seconds()
    for value in (10**400, 10**12, float("inf"), "9" * 400 + "s", f"{day * 365 * 1000:.0f}"):
        raw = {"id": "x", "timeout": value, "nodes": [{"id": "a", "type": "delay", "duration": 1}]}
        try:
            load_dict(raw)
        except PipelineValidationError as exc:
            assert "duration" in str(exc), str(exc)
        else:
            raise AssertionError(f"timeout {value!r} was accepted")
