"""The loader: every rejection is a clear issue with file, line and node id, all at once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import engine.loader as loader_package
import engine.loader.yamlread as yamlread
from engine import registry
from engine.agents import echo_agent
from engine.errors import PipelineValidationError, ValidationIssue
from engine.loader import (
    MAX_FILE_BYTES,
    check_pipeline,
    load_dict,
    load_file,
    load_text,
    parse_text,
)
from engine.spec import AgentNode, DelayNode, ShellNode, parse_duration

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "pipelines"
BUNDLED = sorted((ROOT / "pipelines").glob("*.yaml"))


def fixture(name: str) -> str:
    return str(DATA / name)


def rejected(source: str | dict[str, Any]) -> list[ValidationIssue]:
    """The issues a file (by fixture name) or a raw dict is rejected with."""
    with pytest.raises(PipelineValidationError) as caught:
        if isinstance(source, str):
            load_file(fixture(source))
        else:
            load_dict(source, file="<test>")
    assert caught.value.issues, "a rejection always carries at least one issue"
    return caught.value.issues


def only(issues: list[ValidationIssue]) -> ValidationIssue:
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def shell(node_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "shell", "command": f"echo {node_id}", **fields}


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No third-party node types or agents, whatever happens to be installed."""
    monkeypatch.setattr(registry, "node_type_entry_points", dict)
    yield


# -- valid pipelines ------------------------------------------------------------------------------


def test_valid_linear_and_branching_pipelines_load() -> None:
    linear = load_file(fixture("linear.yaml"))
    assert [node.id for node in linear.nodes] == ["extract", "transform", "load"]
    assert linear.needs_of(linear.node("load")) == ("transform",)

    branching = load_file(fixture("branching.yaml"))
    assert branching.node("enough_rows").type == "condition"
    assert branching.node("alert").when == {"enough_rows": False}
    assert branching.node("report").trigger == "none_failed"
    assert check_pipeline(branching) == []


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_pipeline_validates(path: Path) -> None:
    pipeline = load_file(path)
    assert pipeline.name, "bundled pipelines have a display name"
    assert pipeline.description
    assert check_pipeline(pipeline) == []


def test_the_bundled_pipelines_are_the_documented_set() -> None:
    names = {path.stem for path in BUNDLED}
    expected = {"hello", "diamond", "branching", "flaky", "timeouts", "approval", "release"}
    assert expected | {"wide-200"} <= names
    assert len(load_file(ROOT / "pipelines" / "wide-200.yaml").nodes) == 200
    release = load_file(ROOT / "pipelines" / "release.yaml")
    assert [node.id for node in release.nodes] == [
        "preflight_contract_check",
        "phase_benchmark",
        "stage_data_layout",
        "build_steward_bundle",
        "validate_bundle_quality",
        "build_minimal_deliverable",
        "verify_artifacts",
        "publish_internal",
    ]
    gates = [node.id for node in release.nodes if node.gate == "hard"]
    assert gates == [
        "preflight_contract_check",
        "phase_benchmark",
        "validate_bundle_quality",
        "verify_artifacts",
    ]


def test_loading_from_a_raw_dict() -> None:
    nodes = [shell("a"), shell("b", needs=["a"]), {"id": "c", "type": "trigger"}]
    pipeline = load_dict({"id": "raw", "nodes": nodes})
    assert [node.id for node in pipeline.nodes] == ["a", "b", "c"]
    assert isinstance(pipeline.nodes[0], ShellNode)


def test_a_definition_snapshot_loads_back_to_the_same_pipeline() -> None:
    pipeline = load_file(fixture("branching.yaml"))
    assert load_dict(pipeline.snapshot()) == pipeline


def test_loading_from_json() -> None:
    pipeline = load_file(fixture("linear.json"))
    assert pipeline.id == "linear-json"
    assert pipeline.needs_of(pipeline.node("load")) == ("extract",)
    # JSON is recognised by content too, whatever the file is called
    text = Path(fixture("linear.json")).read_text()
    assert load_text(text, file="pipeline.txt") == pipeline


def test_a_json_syntax_error_gives_the_line() -> None:
    issue = only(rejected("bad_syntax.json"))
    assert issue.line == 5
    assert issue.reason.startswith("JSON syntax error")
    assert issue.file == fixture("bad_syntax.json")


def test_json_problems_point_at_their_lines() -> None:
    text = '{\n  "id": "j",\n  "nodes": [\n    {"id": "a", "type": "shell"}\n  ]\n}\n'
    with pytest.raises(PipelineValidationError) as caught:
        load_text(text, file="j.json", fmt="json")
    issue = only(caught.value.issues)
    assert (issue.line, issue.node_id) == (4, "a")
    assert issue.reason == "missing required field 'command' for type shell"


def test_the_from_to_edge_alias_merges_into_needs() -> None:
    pipeline = load_file(fixture("edges_alias.yaml"))
    assert pipeline.needs_of(pipeline.node("a")) == ()
    assert pipeline.needs_of(pipeline.node("b")) == ("a",)
    assert pipeline.needs_of(pipeline.node("c")) == ("a", "b")  # no duplicate of a


def test_agents_from_the_pipeline_map_and_entry_points_are_known() -> None:
    pipeline = load_file(fixture("known_agents.yaml"))
    node = pipeline.node("first")
    assert isinstance(node, AgentNode)
    assert {"echo", "local"} <= registry.known_agents(pipeline)


def test_yaml_1_1_booleans_stay_text() -> None:
    pipeline = load_text(
        "id: t\n"
        "nodes:\n"
        "  - id: a\n"
        "    type: shell\n"
        "    command: echo a\n"
        "    env: {MODE: yes, SWITCH: off}\n"
        "    retry: {max_attempts: 2, on: [error]}\n"
    )
    node = pipeline.node("a")
    assert isinstance(node, ShellNode)
    assert node.env == {"MODE": "yes", "SWITCH": "off"}
    assert pipeline.retry_for(node).on == ("error",)
    assert parse_text("retry: {on: [error]}\nflag: true\n") == {
        "retry": {"on": ["error"]},
        "flag": True,
    }


# -- defaults and durations -----------------------------------------------------------------------


def test_a_node_retry_that_sets_only_max_attempts_inherits_backoff_and_on() -> None:
    pipeline = load_file(fixture("defaults.yaml"))
    base = pipeline.retry_for(pipeline.node("plain"))
    assert base.max_attempts == 2
    assert base.on == ("transient", "error")

    tuned = pipeline.retry_for(pipeline.node("tuned"))
    assert tuned.max_attempts == 5
    assert tuned.backoff == base.backoff
    assert tuned.on == base.on

    partial = pipeline.retry_for(pipeline.node("partial_backoff"))
    assert partial.max_attempts == 2
    assert partial.backoff.initial == 2.0
    assert (partial.backoff.max, partial.backoff.multiplier) == (10.0, 3.0)


def test_timeouts_and_breakers_inherit_from_defaults() -> None:
    pipeline = load_file(fixture("defaults.yaml"))
    plain, tuned = pipeline.node("plain"), pipeline.node("tuned")
    assert pipeline.timeout_for(plain) == 30.0
    assert pipeline.timeout_for(tuned) == 1.5
    assert pipeline.breaker_for(plain).key == "defaults/plain"
    assert pipeline.breaker_for(plain).recovery_timeout == 60.0
    assert pipeline.breaker_for(tuned).key == "warehouse"
    assert pipeline.breaker_for(tuned).failure_threshold == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), (30, 30.0), ("45", 45.0)],
)
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    pipeline = load_dict({"id": "d", "nodes": [{"id": "w", "type": "delay", "duration": text}]})
    node = pipeline.node("w")
    assert isinstance(node, DelayNode)
    assert node.duration == pytest.approx(seconds)


# -- rejections -----------------------------------------------------------------------------------


def test_a_simple_cycle_is_rejected_with_its_path() -> None:
    issue = only(rejected("cycle.yaml"))
    assert issue.reason == "cycle: a -> b -> c -> a"
    assert (issue.node_id, issue.line) == ("a", 4)


def test_a_deep_cycle_is_rejected_with_its_path_in_order() -> None:
    issue = only(rejected("deep_cycle.yaml"))
    assert issue.reason == "cycle: s1 -> s2 -> s3 -> s4 -> s5 -> s1"
    assert issue.node_id == "s1"


def test_independent_cycles_are_each_reported() -> None:
    issues = rejected(
        {
            "id": "two-cycles",
            "nodes": [
                shell("a", needs=["b"]),
                shell("b", needs=["a"]),
                shell("c", needs=["d"]),
                shell("d", needs=["c"]),
            ],
        }
    )
    assert [issue.reason for issue in issues] == ["cycle: a -> b -> a", "cycle: c -> d -> c"]


def test_an_empty_pipeline_is_rejected() -> None:
    issue = only(rejected("empty.yaml"))
    assert issue.reason == "the pipeline has no nodes"
    assert issue.line == 3
    assert "no nodes" in only(rejected({"id": "x"})).reason


def test_an_empty_file_is_rejected(tmp_path: Path) -> None:
    for name, text in [("blank.yaml", ""), ("comment.yaml", "# nothing here\n")]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(PipelineValidationError) as caught:
            load_file(path)
        assert only(caught.value.issues).reason == "the file is empty"


def test_a_top_level_that_is_not_a_mapping_is_rejected() -> None:
    issue = only(rejected("top_level_list.yaml"))
    assert "must be a mapping" in issue.reason
    assert "not a list" in issue.reason
    with pytest.raises(PipelineValidationError) as caught:
        load_dict("just text")
    assert "not a str" in only(caught.value.issues).reason


def test_an_unknown_node_type_is_rejected(no_plugins: None) -> None:
    issue = only(rejected("unknown_type.yaml"))
    assert issue.node_id == "b"
    assert issue.line == 4
    assert "unknown node type 'shel'" in issue.reason
    assert "did you mean 'shell'?" in issue.reason
    assert "interlock.nodes" in issue.reason


def test_a_node_type_registered_as_an_entry_point_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "node_type_entry_points", lambda: {"teleport": object()})
    pipeline = load_dict(
        {"id": "p", "nodes": [{"id": "t", "type": "teleport", "config": {"to": "mars"}}]}
    )
    assert pipeline.node("t").type == "teleport"
    # a plugin node's own settings go under config:
    issue = only(rejected({"id": "p", "nodes": [{"id": "t", "type": "teleport", "to": "mars"}]}))
    assert issue.reason == "unknown field 'to': settings of a 'teleport' node go under 'config:'"


def test_needs_naming_a_missing_node_is_rejected() -> None:
    issue = only(rejected("missing_need.yaml"))
    assert issue.reason == "needs unknown node 'ghost'"
    assert (issue.node_id, issue.line) == ("b", 4)


def test_edges_naming_a_missing_source_are_rejected() -> None:
    issue = only(rejected("edges_unknown_from.yaml"))
    assert issue.reason == "edge ghost -> b: 'from' names unknown node 'ghost'"
    assert issue.line == 7


def test_edges_naming_a_missing_target_are_rejected() -> None:
    issue = only(rejected("edges_unknown_to.yaml"))
    assert issue.reason == "edge a -> phantom: 'to' names unknown node 'phantom'"
    assert issue.line == 7


def test_a_node_needing_itself_is_rejected() -> None:
    issue = only(rejected("self_need.yaml"))
    assert issue.reason == "a node cannot need itself"
    assert issue.node_id == "loop"
    edge_issue = only(
        rejected({"id": "e", "nodes": [shell("a")], "edges": [{"from": "a", "to": "a"}]})
    )
    assert edge_issue.reason == "edge a -> a: a node cannot need itself"


def test_an_agent_node_without_a_known_agent_is_rejected() -> None:
    issue = only(rejected("unknown_agent.yaml"))
    assert issue.node_id == "reply"
    assert "unknown agent 'oracle'" in issue.reason
    assert "interlock.agents" in issue.reason
    assert "echo" in issue.reason and "summarise" in issue.reason  # what is known instead


def test_a_bad_agent_reference_in_the_agents_map_is_rejected() -> None:
    node = {"id": "n", "type": "agent", "agent": "x"}
    raw = {"id": "a", "agents": {"x": "not a ref"}, "nodes": [node]}
    issue = only(rejected(raw))
    assert issue.reason == "agent 'x': bad reference 'not a ref': use 'module:function'"


def test_duplicate_ids_are_rejected() -> None:
    issue = only(rejected("duplicate_ids.yaml"))
    assert issue.reason == "duplicate node id 'a' (first defined at line 3)"
    assert (issue.node_id, issue.line) == ("a", 5)


def test_duplicate_keys_in_a_mapping_are_rejected() -> None:
    issue = only(rejected("duplicate_keys.yaml"))
    assert issue.reason.startswith("duplicate key 'command' (first on line 5)")
    assert (issue.node_id, issue.line) == ("a", 6)


def test_bad_durations_are_rejected() -> None:
    issues = rejected("bad_duration.yaml")
    summary = [(issue.line, issue.node_id, issue.reason.split(":")[0]) for issue in issues]
    assert summary == [
        (2, None, "timeout"),
        (4, None, "defaults.timeout"),
        (6, "wait", "duration"),
        (7, "run", "timeout"),
    ]
    assert all("bad duration" in issue.reason for issue in issues)
    assert "'2 days'" in issues[2].reason


def test_bad_expressions_are_rejected() -> None:
    issues = {issue.node_id: issue for issue in rejected("bad_expression.yaml")}
    assert set(issues) == {"syntax", "unknown_name", "dunder", "template"}
    assert issues["syntax"].reason.startswith("bad expression in expr: invalid syntax")
    assert "unknown name 'rows'" in issues["unknown_name"].reason
    assert "'__class__'" in issues["dunder"].reason
    assert issues["template"].reason.startswith("bad expression in message: unclosed '{'")
    assert issues["template"].line == 7


def test_expressions_may_only_read_params_and_upstream_nodes() -> None:
    raw = {
        "id": "reach",
        "nodes": [
            shell("first"),
            shell("side"),
            {"id": "cond", "type": "condition", "needs": ["first"], "expr": "side.ok"},
            {"id": "me", "type": "condition", "needs": ["first"], "expr": "me.result"},
            {"id": "ok", "type": "condition", "needs": ["cond"], "expr": "first.x and params.y"},
        ],
    }
    issues = {issue.node_id: issue.reason for issue in rejected(raw)}
    assert issues == {
        "cond": "expr reads 'side', which is not upstream of this node (add it to needs, "
        "directly or through a parent)",
        "me": "expr reads 'me', the node's own output",
    }


def test_a_dangerous_condition_is_rejected_and_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    issue = only(rejected("dangerous_condition.yaml"))
    assert issue.node_id == "pwn"
    assert issue.reason.startswith("bad expression in expr:")
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_python_object_tag_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    issue = only(rejected("python_tag.yaml"))
    assert issue.reason.startswith("YAML tag !!python/object/apply:os.system is refused")
    assert issue.line == 5
    assert not (tmp_path / "x").exists()


def test_yaml_syntax_errors_give_the_line() -> None:
    issue = only(rejected("syntax_error.yaml"))
    assert issue.line == 5
    assert issue.reason.startswith("YAML syntax error:")
    assert "check the indentation" in issue.reason


def test_unknown_fields_are_named() -> None:
    issues = rejected("unknown_field.yaml")
    reasons = [issue.reason for issue in issues]
    assert "unknown field 'comand' for type shell (did you mean 'command'?)" in reasons
    top = only(rejected({"id": "x", "nodez": [], "nodes": [shell("a")]}))
    assert top.reason == "unknown field 'nodez' (did you mean 'nodes'?)"
    nested = only(rejected({"id": "x", "nodes": [shell("a", retry={"max_atempts": 2})]}))
    assert nested.reason == "unknown field 'max_atempts' in retry (did you mean 'max_attempts'?)"


def test_missing_required_config_names_the_field_and_type() -> None:
    issues = rejected(
        {
            "id": "x",
            "nodes": [
                {"id": "s", "type": "shell"},
                {"id": "p", "type": "python"},
                {"id": "g", "type": "agent"},
                {"id": "c", "type": "condition"},
                {"id": "d", "type": "delay"},
                {"id": "n"},
            ],
        }
    )
    assert [(issue.node_id, issue.reason) for issue in issues] == [
        ("s", "missing required field 'command' for type shell"),
        ("p", "missing required field 'call' for type python"),
        ("g", "missing required field 'agent' for type agent"),
        ("c", "missing required field 'expr' for type condition"),
        ("d", "missing required field 'duration' for type delay"),
        ("n", "missing required field 'type' (one of shell, python, agent, condition, delay, "
         "approval, trigger, action, parallel)"),
    ]


def test_a_bad_call_format_is_rejected() -> None:
    issues = rejected("bad_call.yaml")
    assert [issue.node_id for issue in issues] == ["no_colon", "no_call"]
    assert issues[0].reason == (
        "bad call 'mypkg.tasks.load': use 'module:function', e.g. 'mypkg.tasks:load'"
    )


def test_an_empty_shell_command_is_rejected() -> None:
    issues = {issue.node_id: issue.reason for issue in rejected("empty_command.yaml")}
    empty = "empty command: name the program to run"
    assert issues == {
        "blank": empty,
        "spaces": empty,
        "no_argv": empty,
        "unclosed": "command cannot be split into words: No closing quotation",
    }


def test_when_on_a_parent_that_is_not_a_condition_is_rejected() -> None:
    issues = {issue.node_id: issue for issue in rejected("when_not_condition.yaml")}
    assert issues["deploy"].reason.startswith("when on 'build', which is a shell node")
    assert issues["deploy"].line == 5
    assert issues["notify"].reason == "when names 'check', which is not in needs"


def test_a_hard_gate_cannot_be_optional() -> None:
    issue = only(rejected({"id": "g", "nodes": [shell("a", gate="hard", optional=True)]}))
    assert issue.reason == "a hard gate cannot be optional: its failure must stop the run"


def test_node_and_pipeline_ids_must_be_usable_names() -> None:
    issues = rejected({"id": "Bad Id", "nodes": [shell("my-node")]})
    assert issues[0].reason.startswith("invalid pipeline id 'Bad Id'")
    assert issues[1].reason.startswith("invalid node id 'my-node'")


def test_a_value_of_the_wrong_type_says_what_was_expected() -> None:
    issues = rejected(
        {
            "id": "t",
            "nodes": [
                shell("a", command=5),
                shell("b", env={"TOKEN": {"from_env": "T", "secrett": True}}),
                shell("c", trigger="sometimes"),
                "not a node",
            ],
        }
    )
    assert [issue.reason for issue in issues] == [
        "command: expected a list of strings or a string, got 5",
        "unknown field 'secrett' in env.TOKEN (did you mean 'secret'?)",
        "trigger: expected 'all_success', 'none_failed', 'all_done' or 'one_failed', "
        "got 'sometimes'",
        "node #4: a node must be a mapping with 'id' and 'type', not the string 'not a node'",
    ]


def test_all_problems_are_reported_at_once(no_plugins: None) -> None:
    issues = rejected("many_problems.yaml")
    found = [(issue.line, issue.node_id) for issue in issues]
    assert found == [(2, None), (4, "a"), (5, "b"), (6, "c"), (7, "a"), (8, "d"), (9, "e")]
    text = str(PipelineValidationError(issues))
    assert text.startswith("7 problems:")
    for part in ("whenever", "'colour'", "'command'", "invalid syntax", "duplicate node id 'a'",
                 "'nowhere'", "'teleport'"):
        assert part in text


def test_a_broken_node_does_not_make_references_to_it_errors_too() -> None:
    raw = {"id": "x", "nodes": [{"id": "a", "type": "shell"}, shell("b", needs=["a"])]}
    issue = only(rejected(raw))
    assert issue.node_id == "a"


def test_issues_carry_file_line_and_node_id() -> None:
    issue = only(rejected("missing_need.yaml"))
    assert issue.file == fixture("missing_need.yaml")
    assert str(issue) == f"{fixture('missing_need.yaml')}:4: node 'b': needs unknown node 'ghost'"


# -- files ----------------------------------------------------------------------------------------


def file_issue(path: Path | str) -> ValidationIssue:
    with pytest.raises(PipelineValidationError) as caught:
        load_file(path)
    return only(caught.value.issues)


def test_a_missing_file_is_one_clear_issue(tmp_path: Path) -> None:
    issue = file_issue(tmp_path / "nope.yaml")
    assert (issue.reason, issue.file) == ("file not found", str(tmp_path / "nope.yaml"))


def test_a_directory_is_one_clear_issue(tmp_path: Path) -> None:
    assert file_issue(tmp_path).reason == "is a directory, not a pipeline file"


def test_binary_garbage_is_one_clear_issue(tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(b"id: x\n\x00\x01\x02\xff" * 10)
    issue = file_issue(path)
    assert issue.reason.startswith("looks like a binary file")
    assert issue.line == 2


def test_text_that_is_not_utf8_is_one_clear_issue(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: x\nname: café\n".encode("latin-1"))
    issue = file_issue(path)
    assert issue.reason == "is not UTF-8 text (byte 0xe9 at offset 15)"
    assert issue.line == 2


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + Path(fixture("linear.yaml")).read_bytes())
    assert load_file(path).id == "linear"


def test_an_oversized_file_is_one_clear_issue(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    assert file_issue(path).reason.startswith("file is too large")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root can read any file"
)
def test_an_unreadable_file_is_one_clear_issue(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("id: x\n")
    path.chmod(0)
    assert file_issue(path).reason == "cannot read the file: permission denied"


def test_alias_bombs_and_recursive_aliases_are_refused(tmp_path: Path) -> None:
    rows = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        rows.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(rows) + "\n")
    assert "YAML aliases expand to more than" in file_issue(bomb).reason

    loop = tmp_path / "loop.yaml"
    loop.write_text("id: x\nnodes: &n\n  - *n\n")
    assert file_issue(loop).reason == "a YAML alias refers to itself"


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "id: anchors\n"
        "nodes:\n"
        "  - &base {id: a, type: shell, command: echo a, retry: {max_attempts: 3}}\n"
        "  - <<: *base\n"
        "    id: b\n"
        "    needs: [a]\n"
    )
    pipeline = load_file(path)
    assert pipeline.retry_for(pipeline.node("b")).max_attempts == 3


def test_nesting_too_deep_is_one_clear_issue() -> None:
    with pytest.raises(PipelineValidationError) as caught:
        load_text("[" * 100_000, fmt="json")
    assert only(caught.value.issues).reason == "the JSON is nested too deeply"


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, "- " * 1_000_000 + "x", "a: " + "{b: " * 50_000 + "}" * 50_000],
    ids=["flow sequences", "block sequences", "flow mappings"],
)
def test_yaml_nested_past_any_stack_is_one_clear_issue_not_a_crash(text: str) -> None:
    # LibYAML's own composer recurses in C and would take the process down here.
    with pytest.raises(PipelineValidationError) as caught:
        load_text(text, fmt="yaml")
    assert only(caught.value.issues).reason == "the YAML is nested too deeply"


YAML_CASES = [
    *(str(path) for path in [*BUNDLED, *sorted(DATA.glob("*.yaml"))]),
    "a: &x [1, {b: yes, c: on, d: TRUE, e: 0o17, f: 1_000, g: 2024-01-02, h: .inf}]\nb: *x\n",
    "m: &m {a: 1}\nn:\n  <<: *m\n  b: 2\n  a: 3\n? [complex, key]\n: v\n",
    "s: |\n  two\n   lines\nt: >-\n  folded\n  text\nu: 'it''s'\nv: \"\\u00e9\\t\"\n",
    "bin: !!binary aGVsbG8=\nset: !!set {a, b}\nomap: !!omap [{a: 1}]\n",
    "x: !!python/object/apply:os.system [true]\n",
    "a: 1\na: 2\nb: {c: 1, c: 2}\n",
    "a:\n\t- b\n",
    "a: b: c\n",
    "- [unclosed\n",
    "a: \x07\n",
    "--- a\n--- b\n",
    "",
]


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without LibYAML")
@pytest.mark.parametrize("case", YAML_CASES)
def test_libyaml_and_python_parsers_read_yaml_alike(case: str) -> None:
    text = Path(case).read_text("utf-8") if case.endswith(".yaml") else case
    fast, slow = yamlread._LINE_LOADERS
    outcomes: list[object] = []
    for make in (fast, slow):
        try:
            outcomes.append(yamlread._parse_yaml_with(make, text, "f.yaml"))
        except yaml.YAMLError as exc:
            outcomes.append(type(exc).__name__)  # the Python one's message is what is shown
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("case", YAML_CASES)
def test_the_fast_read_gives_the_careful_readers_data_or_steps_aside(case: str) -> None:
    text = Path(case).read_text("utf-8") if case.endswith(".yaml") else case
    careful = yamlread.parse(text, "f.yaml", "yaml")
    fast = yamlread.read_fast(text, "yaml")
    if fast is yamlread.SLOW:
        return
    assert not careful.issues
    assert fast == careful.data
    assert _types(fast) == _types(careful.data)


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


SCALARS = (
    "a: yes\nb: no\nc: on\nd: off\ne: TRUE\nf: False\ng: 0755\nh: 1:30\ni: 0x1F\nj: 0b101\n"
    "k: 1_000\nl: -7\nm: +3\nn: 1.5e3\no: .inf\np: -.Inf\nq: .nan\nr: ~\ns: null\nt:\n"
    "u: 2024-01-02\nv: 2024-01-02T03:04:05Z\nw: '0755'\nx: \"true\"\ny: 0o17\nz: 190:20:30\n"
)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_scalars_read_the_same_on_the_fast_and_the_careful_path(fmt: str) -> None:
    text = SCALARS if fmt == "yaml" else json.dumps({"a": [1, 2.5, None, True, "x"], "b": {}})
    fast = yamlread.read_fast(text, fmt)  # type: ignore[arg-type]  # a Literal from a param
    careful = yamlread.parse(text, "f", fmt)  # type: ignore[arg-type]
    assert fast is not yamlread.SLOW
    assert fast == careful.data
    assert _types(fast) == _types(careful.data)
    if fmt == "yaml":
        assert fast["a"] == "yes" and fast["c"] == "on" and fast["e"] is True
        assert fast["g"] == 0o755 and fast["h"] == 90 and fast["y"] == "0o17"


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # anchors and aliases
        "a: {<<: {b: 1}}\n",  # merge keys
        "a: !!str 1\n",  # explicit tags
        "a: 1\na: 2\n",  # a duplicate key
        "1: a\n",  # a key that is not a string
        "? [a]\n: b\n",  # a key that is a list
        "--- a\n--- b\n",  # two documents
        "",  # nothing
        "~\n",
        "[" * 70 + "]" * 70,  # deeper than the fast loop goes
        "a: b: c\n",  # a syntax error
    ],
)
def test_unusual_text_is_left_to_the_careful_reader(text: str) -> None:
    assert yamlread.read_fast(text, "yaml") is yamlread.SLOW


def test_a_json_duplicate_key_is_left_to_the_careful_reader() -> None:
    assert yamlread.read_fast('{"a": 1, "a": 2}', "json") is yamlread.SLOW


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without LibYAML")
@pytest.mark.parametrize("name", ["hello.yaml", "wide-200.yaml", "release.yaml"])
def test_a_valid_file_is_loaded_without_working_out_line_numbers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def careful(*args: object) -> None:
        raise AssertionError("the line-tracking reader ran for a valid file")

    monkeypatch.setattr(loader_package, "parse", careful)
    assert load_file(ROOT / "pipelines" / name).nodes


def test_issues_found_after_a_fast_read_still_carry_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "late.yaml"
    path.write_text(
        "id: late\nnodes:\n  - {id: a, type: shell, command: [echo]}\n"
        "  - id: b\n    type: shell\n    command: [echo]\n    needs: [a, nope]\n"
    )
    issue = file_issue(path)
    assert (issue.line, issue.node_id) == (7, "b")
    assert issue.reason == "needs unknown node 'nope'"


# -- registry -------------------------------------------------------------------------------------


def test_resolve_callable_imports_module_and_attribute() -> None:
    assert registry.resolve_callable("json:dumps") is json.dumps
    assert registry.resolve_callable("os.path:join") is os.path.join


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("no-colon", "bad callable reference 'no-colon'"),
        ("interlock_no_such_module:f", "cannot import 'interlock_no_such_module'"),
        ("json:no_such_attr", "no attribute 'no_such_attr'"),
        ("json:__doc__", "str is not callable"),
    ],
)
def test_resolve_callable_failures_name_the_reference(ref: str, expected: str) -> None:
    with pytest.raises(LookupError, match=expected):
        registry.resolve_callable(ref)


def test_resolve_callable_finds_a_pipeline_folders_own_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the search path is added for good
    module = "interlock_test_local_tasks"
    (tmp_path / f"{module}.py").write_text("def work(inputs, ctx):\n    return {'ok': True}\n")
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(LookupError):
        registry.resolve_callable(f"{module}:work")
    fn = registry.resolve_callable(f"{module}:work", search_path=str(tmp_path))
    assert fn({}, None) == {"ok": True}
    monkeypatch.delitem(sys.modules, module)


def test_a_module_failing_on_import_is_a_lookup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    module = "interlock_test_broken_tasks"
    (tmp_path / f"{module}.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(LookupError, match="RuntimeError: boom"):
        registry.resolve_callable(f"{module}:work", search_path=str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)


async def test_the_echo_agent_resolves_through_its_entry_point() -> None:
    pipeline = load_file(fixture("known_agents.yaml"))
    agent = registry.resolve_agent("echo", pipeline)
    assert agent is echo_agent
    payload = {"inputs": {"b": {}, "a": {}}, "config": {"greeting": "hi"}, "params": {}}
    assert await echo_agent(payload, None) == {"echo": {"greeting": "hi"}, "inputs": ["a", "b"]}
    assert registry.resolve_agent("local", pipeline) is json.dumps
    with pytest.raises(LookupError, match="unknown agent 'nobody'"):
        registry.resolve_agent("nobody", pipeline)


def test_an_unknown_node_type_cannot_be_resolved(no_plugins: None) -> None:
    with pytest.raises(LookupError, match="unknown node type 'teleport'"):
        registry.resolve_node_type("teleport")
