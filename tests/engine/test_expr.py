"""The expression language: what it computes, what it refuses, and that it always stays bounded."""

from __future__ import annotations

import contextlib
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.expr import (
    MAX_SIZE,
    Expression,
    ExpressionError,
    Template,
    compile_expression,
    compile_template,
    evaluate,
)

if TYPE_CHECKING:
    from pathlib import Path

NAMESPACE: dict[str, Any] = {
    "params": {"env": "prod", "n": 3, "tags": ["a", "b"], "empty": ""},
    "extract": {
        "rows": 42,
        "items": [1, 2, 3],
        "meta": {"name": "orders", "owner": None, "nested": {"deep": [10, 20]}},
        "ratio": 0.5,
        "ok": True,
    },
    "load": {},
}


# --- what the language computes ------------------------------------------------------------


def test_the_design_example_is_true_for_prod_with_rows() -> None:
    assert evaluate("extract.rows > 0 and params.env == 'prod'", NAMESPACE) is True


def test_the_design_example_is_false_for_staging() -> None:
    namespace = {**NAMESPACE, "params": {"env": "staging"}}
    assert evaluate("extract.rows > 0 and params.env == 'prod'", namespace) is False


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # literals
        ("42", 42),
        ("-2.5", -2.5),
        ("'text'", "text"),
        ('"text"', "text"),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 'a', null]", [1, "a", None]),
        ("(1, 2)", (1, 2)),
        ("()", ()),
        ("{'a': 1, 'b': [true]}", {"a": 1, "b": [True]}),
        # names, fields, indexing, slicing
        ("params", NAMESPACE["params"]),
        ("params.env", "prod"),
        ("extract.meta.nested.deep", [10, 20]),
        ("extract['rows']", 42),
        ("extract.items[0]", 1),
        ("extract.items[-1]", 3),
        ("extract.meta['nested'].deep[1]", 20),
        ("params.env[0]", "p"),
        ("extract.items[1:]", [2, 3]),
        ("extract.items[:-1]", [1, 2]),
        ("extract.items[::2]", [1, 3]),
        ("params.env[1:3]", "ro"),
        ("{'a': {'b': 7}}['a'].b", 7),
        # comparisons
        ("1 == 1.0", True),
        ("1 != 2", True),
        ("1 < 2 <= 2 < 3", True),
        ("3 > 2 > 2", False),
        ("2 >= 2", True),
        ("'a' < 'b'", True),
        ("'a' in params.tags", True),
        ("'z' not in params.tags", True),
        ("'rows' in extract", True),
        ("'ro' in params.env", True),
        ("extract.meta.owner is null", True),
        ("extract.meta.owner is not None", False),
        ("extract.ok is true", True),
        ("[1, 2] == [1, 2]", True),
        # boolean logic returns the deciding operand, as in Python
        ("true and false", False),
        ("1 and 'x'", "x"),
        ("0 and 'x'", 0),
        ("0 or params.empty or 'fallback'", "fallback"),
        ("not extract.rows", False),
        ("not load", True),
        # arithmetic
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("4 ** 0.5", 2.0),
        ("-extract.rows", -42),
        ("+extract.ratio", 0.5),
        ("extract.rows * extract.ratio", 21.0),
        ("'ab' + 'cd'", "abcd"),
        ("'ab' * 3", "ababab"),
        ("3 * 'ab'", "ababab"),
        ("'ab' * -1", ""),
        ("[1] + [2]", [1, 2]),
        ("[0] * 3", [0, 0, 0]),
        ("(1,) * 2", (1, 1)),
        ("true + true", 2),
        # conditional expression
        ("'big' if extract.rows > 10 else 'small'", "big"),
        ("'big' if extract.rows > 100 else 'small'", "small"),
        # the four functions
        ("len(extract.items)", 3),
        ("len(params.env)", 4),
        ("len(extract)", 5),
        ("min(extract.items)", 1),
        ("max(extract.items)", 3),
        ("min(3, 1, 2)", 1),
        ("max('a', 'b')", "b"),
        ("abs(-3)", 3),
        ("abs(-1.5)", 1.5),
        ("len(extract.items) > 0 and max(extract.items) < extract.rows", True),
    ],
)
def test_a_construct_of_the_language_evaluates_like_python(source: str, expected: Any) -> None:
    assert evaluate(source, NAMESPACE) == expected


def test_and_and_or_short_circuit_so_a_missing_name_on_the_dead_side_is_not_read() -> None:
    assert evaluate("false and missing.field", NAMESPACE) is False
    assert evaluate("true or missing.field", NAMESPACE) is True
    assert evaluate("1 if true else missing", NAMESPACE) == 1


def test_a_chained_comparison_stops_at_the_first_false_link() -> None:
    assert evaluate("2 < 1 < missing", NAMESPACE) is False


def test_an_expression_may_span_lines_and_be_padded_with_spaces() -> None:
    assert evaluate("  (extract.rows\n   > 0)  ", NAMESPACE) is True
    assert evaluate("extract.rows > 0\n", NAMESPACE) is True


def test_names_lists_the_root_names_read_without_functions_or_constants() -> None:
    expression = compile_expression(
        "len(extract.items) > max(params.n, 1) and load is not null or true"
    )
    assert expression.names == frozenset({"extract", "params", "load"})


def test_names_include_names_on_a_branch_that_is_not_taken() -> None:
    assert compile_expression("a if true else b").names == frozenset({"a", "b"})


def test_a_compiled_expression_is_cached_and_reusable_across_namespaces() -> None:
    expression = compile_expression("params.env == 'prod'")
    assert compile_expression("params.env == 'prod'") is expression
    assert expression.evaluate({"params": {"env": "prod"}}) is True
    assert expression.evaluate({"params": {"env": "dev"}}) is False
    assert expression.source == "params.env == 'prod'"


def test_expressions_compare_by_source() -> None:
    assert compile_expression("1 + 1") == compile_expression("1 + 1")
    assert compile_expression("1 + 1") != compile_expression("1+1")
    assert isinstance(hash(compile_expression("1 + 1")), int)


# --- what the language refuses before anything runs ----------------------------------------

REJECTED = [
    "__import__('os').system('touch x')",
    "().__class__",
    "x.__class__",
    "[].__class__.__base__",
    "().__class__.__base__.__subclasses__()",
    "params.__dict__",
    "_private",
    "x._private",
    "getattr(x, 'y')",
    "open('f')",
    "eval('1')",
    "exec('1')",
    "__import__",
    "lambda: 1",
    "(lambda x: x)(1)",
    "[x for x in params]",
    "{x for x in params}",
    "{k: 1 for k in params}",
    "(x for x in params)",
    "f'{params}'",
    "f'x'",
    "(x := 1)",
    "params.env.upper()",
    "'a'.join(params.tags)",
    "len(*params.tags)",
    "len(x=1)",
    "max(**params)",
    "[*params.tags]",
    "{**params}",
    "await x",
    "(yield)",
    "(yield from x)",
    "{1, 2}",
    "1 << 2",
    "1 | 2",
    "1 & 2",
    "1 ^ 2",
    "1 @ 2",
    "~1",
    "b'bytes'",
    "1j",
    "...",
    "len",
    "max",
    "len(1, 2)",
    "abs()",
    "min()",
    "x = 1",
    "import os",
    "1 +",
    "",
    "   ",
    "x\x00",
    "'\ud800'",
    "1" + "0" * 101,
]


@pytest.mark.parametrize("source", REJECTED)
def test_a_construct_outside_the_language_is_rejected_at_compile_time(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x.__class__", "names starting with '_' are not allowed: '__class__'"),
        ("_secret", "names starting with '_' are not allowed: '_secret'"),
        ("getattr(x, 'y')", "calling 'getattr' is not allowed"),
        ("open('f')", "calling 'open' is not allowed"),
        ("params.env.upper()", "method calls are not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in y]", "comprehensions are not allowed"),
        ("f'{x}'", "f-strings are not allowed"),
        ("len(x=1)", r"len\(\) takes no keyword arguments"),
        ("len(1, 2)", r"len\(\) takes exactly one argument \(2 given\)"),
        ("1 << 2", "operator '<<' is not allowed"),
        ("len", "'len' is a function"),
        ("1 +", "invalid syntax"),
    ],
)
def test_a_rejection_says_what_is_not_allowed(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        compile_expression(source)


def test_a_dunder_attribute_is_rejected_with_its_column() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("params.env == x.__class__")
    assert caught.value.source == "params.env == x.__class__"
    assert caught.value.offset == len("params.env == x.")
    assert "at column 17" in str(caught.value)


def test_the_os_system_payload_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    payloads = [
        "__import__('os').system('touch x')",
        "[].__class__.__base__.__subclasses__()[0]('touch x')",
        "(lambda: __import__('os').system('touch x'))()",
    ]
    for payload in payloads:
        with pytest.raises(ExpressionError):
            evaluate(payload, {"os": "os"})
    assert list(tmp_path.iterdir()) == []


def test_a_non_string_expression_is_rejected() -> None:
    with pytest.raises(ExpressionError, match="must be a string, not int"):
        compile_expression(5)  # type: ignore[arg-type]  # YAML may hand over a number


def test_a_dunder_string_key_is_only_a_lookup_in_the_data() -> None:
    with pytest.raises(ExpressionError, match="has no key '__class__'"):
        evaluate("params['__class__']", NAMESPACE)


# --- limits --------------------------------------------------------------------------------


def test_an_expression_longer_than_2000_characters_is_rejected() -> None:
    compile_expression("1" + " " * 1998)
    with pytest.raises(ExpressionError, match="too long: 2001 characters"):
        compile_expression("1" + " " * 2000)


def test_an_expression_with_more_than_200_parts_is_rejected() -> None:
    compile_expression("[" + ", ".join(["1"] * 198) + "]")
    with pytest.raises(ExpressionError, match="too complex: 201 parts"):
        compile_expression("[" + ", ".join(["1"] * 199) + "]")


def test_an_expression_nested_deeper_than_32_levels_is_rejected() -> None:
    assert evaluate("-" * 31 + "1", {}) == -1
    with pytest.raises(ExpressionError, match="nested too deeply: 33 levels"):
        compile_expression("-" * 32 + "1")
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("[" * 40 + "]" * 40)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "source",
    [
        "1" + "+1" * 999,
        "-" * 1999 + "1",
        "not " * 499 + "1",
        "a" + ".a" * 999,
        "(" * 1000 + ")" * 1000,
        "[" * 999 + "]" * 999,
    ],
)
def test_pathological_nesting_is_refused_quickly(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("9**9**9", "exponent 387420489 is too large"),
        ("2 ** 65", "exponent 65 is too large"),
        ("2 ** -65", "exponent -65 is too large"),
        ("2.0 ** 100.5", "exponent 100.5 is too large"),
        ("(10 ** 50) ** 3", "integer result is too large"),
        ("(10 ** 50) * (10 ** 50) * 10", "integer result is too large"),
        ("-(10 ** 50) * (10 ** 50) - 1", "integer result is too large"),
        ("1e308 ** 2", "too large"),
        ("'a' * 10 ** 9", "result is too large: 1000000000 items"),
        ("10 ** 9 * 'a'", "result is too large"),
        ("[0] * 10 ** 9", "result is too large"),
        ("'a' * 10001", "result is too large: 10001 items"),
        ("'a' * 5000 + 'a' * 5001", "result is too large: 10001 items"),
        ("[[0] * 10000] * 10000", "only lists of numbers, strings and booleans can be repeated"),
        ("'%*d' % (10 ** 9, 1)", "cannot apply '%' to a string and a list"),
        ("(-8) ** 0.5", "cannot be raised to a fractional power"),
        ("0 ** -1", "zero cannot be raised to a negative power"),
    ],
)
def test_an_unbounded_computation_is_refused_without_hanging(source: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match=message):
        evaluate(source, {})
    assert time.perf_counter() - started < 1


def test_results_up_to_the_limits_are_allowed() -> None:
    assert len(evaluate("'a' * 10000", {})) == MAX_SIZE
    assert evaluate("(10 ** 50) ** 2", {}) == 10**100
    assert evaluate("2 ** 64", {}) == 2**64


# --- failures while evaluating -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("foo", "unknown name 'foo'"),
        ("foo > 1", r"unknown name 'foo' \(known names: extract, load, params\)"),
        ("load.rows", "'load' has no field 'rows'"),
        (
            "extract.meta.size",
            r"'extract.meta' has no field 'size' \(fields: name, nested, owner\)",
        ),
        ("params['missing']", "'params' has no key 'missing'"),
        ("extract.items[3]", r"index 3 is out of range for 'extract.items' \(length 3\)"),
        ("extract.items['a']", "index of 'extract.items' must be an integer, not a string"),
        ("extract.rows.value", "cannot read field 'value' of 'extract.rows': it is a number"),
        ("extract.meta.owner.name", "cannot read field 'name' of 'extract.meta.owner': it is null"),
        ("params.tags.first", "cannot read field 'first' of 'params.tags': it is a list"),
        ("extract.rows[0]", "cannot index 'extract.rows': it is a number"),
        ("extract.rows[1:]", "cannot slice 'extract.rows'"),
        ("extract.items[::0]", "slice step cannot be zero"),
        ("extract.items['a':]", "slice bounds must be integers"),
        ("params[[1]]", "a list cannot be a key of 'params'"),
        ("{[1]: 2}", "a list cannot be a dict key"),
        ("1 < 'a'", "cannot compare a number and a string with '<'"),
        ("1 in 2", "cannot compare a number and a number with 'in'"),
        ("'a' - 1", "cannot apply '-' to a string and a number"),
        ("'a' + 1", "cannot add a string and a number"),
        ("[1] * 'a'", "cannot multiply a list and a string"),
        ("-'a'", "cannot negate a string"),
        ("+params", "cannot apply unary '\\+' to a mapping"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("len(1)", "len\\(\\) needs a string, list or mapping, not a number"),
        ("abs('x')", "abs\\(\\) needs a number, not a string"),
        ("min([])", "min\\(\\) of an empty list"),
        ("max(1)", "max\\(\\) of one argument needs a list, not a number"),
        ("max(1, 'a')", "max\\(\\) cannot compare values of different types"),
    ],
)
def test_a_failure_while_evaluating_is_an_expression_error(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate(source, NAMESPACE)


def test_an_evaluation_error_names_the_expression() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("foo > 1", {})
    assert caught.value.reason == "unknown name 'foo'"
    assert caught.value.source == "foo > 1"
    assert str(caught.value) == "unknown name 'foo' (in 'foo > 1')"


def test_field_access_reads_keys_never_python_attributes() -> None:
    with pytest.raises(ExpressionError, match="'params' has no field 'items'"):
        evaluate("params.items", NAMESPACE)
    with pytest.raises(ExpressionError, match="it is a SimpleNamespace, not a mapping"):
        evaluate("obj.a", {"obj": SimpleNamespace(a=1)})


def test_misbehaving_data_still_fails_as_an_expression_error() -> None:
    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise ValueError("no comparing me")

        __hash__ = object.__hash__

    with pytest.raises(ExpressionError, match="no comparing me"):
        evaluate("x == 1", {"x": Hostile()})
    left: list[Any] = []
    left.append(left)
    right: list[Any] = []
    right.append(right)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        evaluate("x == y", {"x": left, "y": right})


# --- templates -----------------------------------------------------------------------------


def test_a_template_renders_its_placeholders() -> None:
    template = compile_template("no rows for {params.env} ({extract.rows} in {params.n} tries)")
    assert template.render(NAMESPACE) == "no rows for prod (42 in 3 tries)"
    assert template.names == frozenset({"params", "extract"})


def test_a_template_keeps_text_and_expressions_as_parts() -> None:
    template = compile_template("a {params.env} b")
    assert isinstance(template, Template)
    assert template.parts[0] == "a "
    assert isinstance(template.parts[1], Expression)
    assert template.parts[1].source == "params.env"
    assert template.parts[2] == " b"


def test_a_template_without_placeholders_is_its_text() -> None:
    assert compile_template("plain").parts == ("plain",)
    assert compile_template("").render({}) == ""


def test_double_braces_are_literal_braces() -> None:
    assert compile_template("{{params.env}} is {params.env}}}").render(NAMESPACE) == (
        "{params.env} is prod}"
    )


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{true}", "true"),
        ("{extract.ok}", "true"),
        ("{1 > 2}", "false"),
        ("{null}", "null"),
        ("{extract.meta.owner}", "null"),
        ("{extract.items}", "[1,2,3]"),
        ("{(1, 'a')}", '[1,"a"]'),
        ("{extract.meta.nested}", '{"deep":[10,20]}'),
        ("{ {'é': null} }", '{"é":null}'),
        ("{extract.ratio}", "0.5"),
        ("{params.env}", "prod"),
        ("{params.env[0] + '!'}", "p!"),
        ("{params['}']}", "no key"),
    ],
)
def test_a_value_renders_as_text(source: str, rendered: str) -> None:
    namespace = {**NAMESPACE, "params": {**NAMESPACE["params"], "}": "no key"}}
    assert compile_template(source).render(namespace) == rendered


def test_a_long_value_is_cut_when_rendered() -> None:
    rendered = compile_template("{rows}").render({"rows": list(range(100_000))})
    assert len(rendered) == MAX_SIZE
    assert rendered.startswith("[0,1,2,") and rendered.endswith("…")


def test_a_value_that_is_not_json_still_renders() -> None:
    assert compile_template("{x}").render({"x": {(1, 2): "tuple key"}}) == "{(1, 2): 'tuple key'}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("no rows for {params.env", "unclosed '{'"),
        ("a } b", "single '}' in template"),
        ("a {} b", "empty placeholder"),
        ("a {  } b", "empty placeholder"),
        ("a {params.} b", r"bad placeholder \{params.\}: invalid syntax"),
        ("{x.__class__}", "names starting with '_' are not allowed"),
        ("{open('f')}", "calling 'open' is not allowed"),
    ],
)
def test_a_bad_template_is_rejected(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message) as caught:
        compile_template(source)
    assert caught.value.source == source


def test_a_bad_placeholder_error_points_into_the_template() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template("hello {x.__y}")
    assert caught.value.offset == len("hello {x.")


def test_a_template_with_a_missing_name_fails_when_rendered() -> None:
    template = compile_template("for {nope.env}")
    with pytest.raises(ExpressionError, match="unknown name 'nope'"):
        template.render(NAMESPACE)


def test_a_template_is_cached() -> None:
    assert compile_template("x {params.env}") is compile_template("x {params.env}")


# --- properties ----------------------------------------------------------------------------

EXPRESSION_TEXT = st.text(
    alphabet=st.sampled_from(list("abcdefxyz_0123456789.,:;()[]{}'\"+-*/%<>=!~&|^@ \n\\")),
    max_size=60,
)


@pytest.mark.timeout(30)
@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(max_size=60), EXPRESSION_TEXT))
def test_random_text_either_compiles_or_raises_an_expression_error(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    assert isinstance(expression, Expression)


_NAMES = ["params", "extract", "load", "missing", "params.env", "params.n", "params.tags"]
_FIELDS = ["extract.rows", "extract.items", "extract.meta", "extract.meta.owner", "extract.ratio"]
_LITERALS = ["0", "1", "-3", "2.5", "64", "10000", "'a'", "''", "'prod'", "true", "false", "null"]
_CONTAINERS = ["[]", "[1, 2]", "{}", "{'k': 1}", "(1, 'x')"]
ATOMS = st.sampled_from([*_NAMES, *_FIELDS, *_LITERALS, *_CONTAINERS])

_ARITHMETIC = ["+", "-", "*", "/", "//", "%", "**"]
_COMPARISONS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"]
BINARY = st.sampled_from([*_ARITHMETIC, *_COMPARISONS, "and", "or"])


def _compound(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds("({} {} {})".format, children, BINARY, children),
        st.builds("{}({})".format, st.sampled_from(["not ", "-", "+"]), children),
        st.builds(
            "{}({})".format,
            st.sampled_from(["len", "min", "max", "abs"]),
            st.lists(children, min_size=1, max_size=3).map(", ".join),
        ),
        st.builds("({})[{}]".format, children, children),
        st.builds("({})[{}:{}]".format, children, children, children),
        st.builds("({}).{}".format, children, st.sampled_from(["env", "rows", "items", "k"])),
        st.builds("({} if {} else {})".format, children, children, children),
        st.lists(children, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    )


@pytest.mark.timeout(30)
@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.recursive(ATOMS, _compound, max_leaves=12))
def test_a_random_expression_returns_a_value_or_raises_an_expression_error(source: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(ExpressionError):
        evaluate(source, NAMESPACE)
    assert time.perf_counter() - started < 1
