"""The expression evaluator, fed random and adversarial text, stays inside its language.

For every input: compiling either refuses it with `ExpressionError` or gives an expression whose
syntax tree has no name or field starting with `_` and is within the size bounds; evaluating
raises nothing but `ExpressionError`, returns bounded values, finishes quickly, and touches
nothing outside its whitelist. "Touches" is observed, not assumed: while an expression
evaluates, the dangerous builtins are replaced by recorders, and the namespace holds spies
whose `__getattr__`, `__getattribute__` (for non-dunder names) and `__call__` record any use.
"""

from __future__ import annotations

import ast
import builtins
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.expr import (
    MAX_INT,
    MAX_NODES,
    MAX_SIZE,
    MAX_SOURCE_LENGTH,
    ExpressionError,
    compile_expression,
    compile_template,
)
from faults.helpers import FAULT_SETTINGS

TIME_LIMIT = 0.5  # seconds for one evaluation; the bounds make the worst case a few ms
WATCHED = (
    "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals",
    "locals", "vars", "breakpoint", "input", "print", "exit", "quit", "help", "memoryview",
)  # fmt: skip

calls: list[str] = []


class Spy:
    """Data that is not data: records any attribute use or call the evaluator makes on it."""

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__"):
            calls.append(f"Spy attribute {name}")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        calls.append(f"Spy __getattr__ {name}")
        return Spy()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        calls.append("Spy called")
        return Spy()


class SpyMapping(Mapping[str, Any]):
    """A mapping (so field access reads its items) that records any attribute use or call."""

    def __init__(self, items: dict[str, Any]) -> None:
        object.__setattr__(self, "_items", items)

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            calls.append(f"SpyMapping attribute {name}")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        calls.append(f"SpyMapping __getattr__ {name}")
        return Spy()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        calls.append("SpyMapping called")
        return Spy()

    def __getitem__(self, key: str) -> Any:
        return object.__getattribute__(self, "_items")[key]

    def __iter__(self) -> Iterator[str]:
        return iter(object.__getattribute__(self, "_items"))

    def __len__(self) -> int:
        return len(object.__getattribute__(self, "_items"))


def namespace() -> dict[str, Any]:
    return {
        "params": {"env": "prod", "n": 3, "flags": [True, False], "name": "x" * 100},
        "extract": {"rows": 5, "items": list(range(20)), "nested": {"deep": {"er": 1}}},
        "spy": Spy(),
        "box": SpyMapping({"rows": 2, "inner": Spy(), "__class__": "data, not a class"}),
        "big": "y" * MAX_SIZE,
        "many": list(range(MAX_SIZE)),
    }


def recorder(name: str, original: Any) -> Any:
    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append(f"builtin {name}")
        return original(*args, **kwargs)

    return record


def evaluate_watched(source: str) -> None:
    """Compile `source` and, if it is in the language, evaluate it under observation."""
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    tree = ast.parse(source.strip(), mode="eval")
    identifiers = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    identifiers += [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    assert not [i for i in identifiers if i.startswith("_")], source
    assert len(source) <= MAX_SOURCE_LENGTH
    parts = [n for n in ast.walk(tree) if isinstance(n, ast.expr)]
    assert len(parts) <= MAX_NODES, source

    data = namespace()
    patches = [
        mock.patch.object(builtins, name, recorder(name, getattr(builtins, name)))
        for name in WATCHED
        if hasattr(builtins, name)
    ]
    with ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        calls.clear()  # patching itself used getattr/setattr
        started = time.perf_counter()
        try:
            value: Any = expression.evaluate(data)
        except ExpressionError:
            value = None
        elapsed = time.perf_counter() - started
        seen = list(calls)  # unpatching uses setattr too
    assert seen == [], f"{source!r} reached outside the language: {seen}"
    assert elapsed < TIME_LIMIT, f"{source!r} took {elapsed:.3f}s"
    assert_bounded(value, source)


def assert_bounded(value: Any, source: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= MAX_INT, source
    if isinstance(value, str | list | tuple | dict):
        assert len(value) <= MAX_SIZE, source


# ---------------------------------------------------------------------------------------------
# inputs

ADVERSARIAL = [
    "().__class__.__bases__[0].__subclasses__()",
    "params.__class__", "params._x", "spy.__call__", "spy()", "spy.x", "spy.x()", "box.inner",
    "box.inner.x", "box['__class__']", "box.rows + 1", "box.__class__", "len(box)", "len(spy)",
    "spy == spy", "spy in [spy]", "not spy", "min(box)", "max(spy)", "abs(spy)",
    "getattr(params, 'env')", "eval('1')", "exec('x=1')", "__import__('os').system('true')",
    "open('/etc/passwd')", "type(params)", "vars()", "globals()", "params.env.upper()",
    "'{}'.format(params)", "f'{params}'", "lambda: 1", "(lambda: 1)()", "[x for x in many]",
    "{x: 1 for x in many}", "(x for x in many)", "[*many]", "{**params}", "x := 1", "...",
    "b'bytes'", "1j", "~1", "1 << 1000", "1 @ 2", "9 ** 9 ** 9", "10 ** 100 * 10 ** 100",
    "-(10 ** 100) - 10 ** 100", "'a' * 10 ** 9", "[1] * 10 ** 9", "[[0] * 10000] * 10000",
    "big + big", "many + many", "many * 2", "big * 2", "big * -1", "[1] * -(10 ** 100)",
    "'a' * True", "2.0 ** 64 ** 64", "1e308 * 10", "1e308 ** 64", "(-8) ** 0.5", "0 ** -1",
    "1 / 0", "1 // 0", "1 % 0", "big[::10 ** 100]", "many[10 ** 100]", "big[-1]", "many[1:2:0]",
    "'%s' % big", "'%9999999s' % 1", "params['env'] * 10 ** 9", "max(many) + min(many)",
    "len(big) == len(many)", "many == many", "big in big", "extract.nested.deep.er",
    "extract['items'][3:10:2]", "extract.rows if extract.rows > 3 else params.n",
    "params.flags[0] and not params.flags[1]", "null is None", "true != false", "x",
    "__builtins__", "_", "params.__dict__", "params['__dict__']", "\x00", "1 +", "((((",
    "(" * 40 + "1" + ")" * 40, "not " * 50 + "true", "-" * 300 + "1", "1" + " + 1" * 300,
    "[" * 33 + "]" * 33, "a" * 3000, "'" + "x" * 1990 + "'", "\ud800", "é == é",
]  # fmt: skip

NAMES = ["params", "extract", "spy", "box", "big", "many", "params.env", "params.n",
         "extract.rows", "extract.items", "box.rows", "box.inner", "true", "null"]  # fmt: skip
atoms = st.one_of(
    st.sampled_from(NAMES),
    st.integers(-(10**120), 10**120).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=8).map(repr),
)


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(
        [
            "+",
            "-",
            "*",
            "/",
            "//",
            "%",
            "**",
            "and",
            "or",
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "in",
            "not in",
            "is",
            "is not",
            "<<",
            "|",
            "@",
        ]
    )
    return st.one_of(
        st.tuples(inner, binary, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["not ", "-", "+", "~"]), inner).map("".join),
        st.tuples(st.sampled_from(["len", "min", "max", "abs", "eval", "getattr"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, st.sampled_from(["rows", "env", "x", "_y", "__class__", "inner"])).map(
            lambda t: f"{t[0]}.{t[1]}"
        ),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"{{{t[0]}: {t[1]}}}"),
    )


expressions = st.recursive(atoms, _combine, max_leaves=30)


def test_adversarial_expressions_stay_inside_the_language() -> None:
    for source in ADVERSARIAL:
        evaluate_watched(source)


@settings(FAULT_SETTINGS, max_examples=600)
@given(source=expressions)
def test_random_expressions_stay_inside_the_language(source: str) -> None:
    evaluate_watched(source)


@settings(FAULT_SETTINGS, max_examples=200)
@given(
    base=st.sampled_from(ADVERSARIAL),
    cut=st.integers(0, 50),
    insert=st.sampled_from(["__", "_", ".", "(", ")", "[", "]", "'", "**", " ", "\n", "{", "}"]),
)
def test_mutated_adversarial_expressions_stay_inside_the_language(
    base: str, cut: int, insert: str
) -> None:
    position = min(cut, len(base))
    evaluate_watched(base[:position] + insert + base[position:])


@settings(FAULT_SETTINGS, max_examples=200)
@given(source=expressions | st.sampled_from(ADVERSARIAL))
def test_templates_render_bounded_text_or_refuse(source: str) -> None:
    try:
        template = compile_template("value: {" + source + "} {{literal}}")
    except ExpressionError:
        return
    calls.clear()
    try:
        text = template.render(namespace())
    except ExpressionError:
        return
    assert calls == []
    assert len(text) <= MAX_SIZE + 100
