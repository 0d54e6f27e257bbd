"""The expression language of `condition.expr` and of `{...}` placeholders in `action.message`.

Contract:

- `compile_expression(source)` parses `source` with `ast` and checks it against a whitelist. It
  either returns an `Expression` or raises `ExpressionError` naming what is outside the language
  and where; it never runs anything. Results are cached, so compiling the same text again is free.
- `Expression.evaluate(namespace)` computes the value over plain data (the run's `params` and
  the outputs of upstream nodes by id). It has no side effects, cannot reach any Python object
  other than the data it is given, always terminates quickly, and raises nothing but
  `ExpressionError` for a missing name, a missing key or an ill-typed operation.
- `compile_template(source)` / `Template.render(namespace)` do the same for text with `{expr}`
  placeholders; `{{` and `}}` are literal braces.

The language: literals (numbers, strings, `True`/`False`/`None`, also spelled
`true`/`false`/`null`), lists, tuples and dicts; names; field access into mappings
(`extract.rows` is `namespace["extract"]["rows"]`, never a Python attribute); indexing and
slicing; comparisons (chained, `in`, `not in`, `is`, `is not`); `and`, `or`, `not`; `+ - * / //
% **` and unary `-`/`+`; `a if c else b`; and calls to `len`, `min`, `max` and `abs` only.
Identifiers starting with `_` are rejected wherever they appear. Strings in brackets
(`x["__class__"]`) are allowed: they are only ever looked up as keys of data, never as attributes.

Why hand-written: `eval` with restricted globals is not a sandbox (`().__class__.__base__`
reaches every class in the process), and no library evaluates a bounded, data-only language with
exactly these rules. So this module walks the validated `ast` once and turns it into nested
closures, which evaluate faster than re-walking the tree and cannot express anything the
validator did not allow.

Bounds, so that an expression can neither hang a run nor exhaust memory: the source is at most
2,000 characters, 200 syntax nodes and 32 levels deep; an exponent is at most 64 in magnitude;
a computed integer is at most 10**100 in magnitude; a computed string or list has at most 10,000
items, and only lists of scalars can be repeated with `*` (so `[[0] * 10000] * 10000`, which
would be cheap to build but slow to compare, is refused).
"""

from __future__ import annotations

import ast
import functools
import json
import operator
import reprlib
import warnings
from collections.abc import Callable, Mapping, Sequence, Set, Sized
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_INT",
    "MAX_NODES",
    "MAX_SIZE",
    "MAX_SOURCE_LENGTH",
    "Expression",
    "ExpressionError",
    "Template",
    "compile_expression",
    "compile_template",
    "evaluate",
]

MAX_SOURCE_LENGTH = 2000
MAX_NODES = 200
MAX_DEPTH = 32
MAX_EXPONENT = 64
MAX_INT = 10**100
MAX_SIZE = 10_000

_FUNCTIONS = frozenset({"len", "min", "max", "abs"})
_CONSTANT_NAMES: dict[str, bool | None] = {"true": True, "false": False, "null": None}

Namespace = Mapping[str, Any]
_Evaluator = Callable[[Namespace], Any]


class ExpressionError(ValueError):
    """Raised for an expression outside the language (when compiled) or a failure while evaluating.

    `reason` says what is wrong; `source` is the expression or template text when known, and
    `offset` the 0-based index in `source` of the offending part when known.
    """

    def __init__(
        self, reason: str, *, source: str | None = None, offset: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source
        self.offset = offset

    def __str__(self) -> str:
        if self.source is None:
            return self.reason
        where = f"in {_clip(self.source, 80)!r}"
        if self.offset is not None:
            line = self.source.count("\n", 0, self.offset) + 1
            column = self.offset - (self.source.rfind("\n", 0, self.offset) + 1) + 1
            multiline = "\n" in self.source
            where += f" at line {line}, column {column}" if multiline else f" at column {column}"
        return f"{self.reason} ({where})"


@dataclass(frozen=True)
class Expression:
    """A validated expression, ready to evaluate any number of times."""

    source: str
    names: frozenset[str]
    """Root names the expression reads (`params`, node ids), excluding functions and constants."""
    _evaluator: _Evaluator = field(repr=False, compare=False)

    def evaluate(self, namespace: Namespace) -> Any:
        """The value of the expression over `namespace`; raises only `ExpressionError`."""
        try:
            return self._evaluator(namespace)
        except ExpressionError as exc:
            raise ExpressionError(exc.reason, source=self.source) from None
        except RecursionError:
            raise ExpressionError("data is nested too deeply", source=self.source) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # Data may hold objects whose comparisons or hashing misbehave; a condition over
            # such data fails like any other bad expression instead of with a stray exception.
            reason = f"cannot evaluate: {type(exc).__name__}: {exc}"
            raise ExpressionError(reason, source=self.source) from exc


def compile_expression(source: str) -> Expression:
    """Parse and validate `source`; raises `ExpressionError` if it is outside the language."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, not {type(source).__name__}")
    return _compile_expression(source)


def evaluate(source: str, namespace: Namespace) -> Any:
    """Compile `source` (cached) and evaluate it over `namespace`."""
    return compile_expression(source).evaluate(namespace)


@dataclass(frozen=True)
class Template:
    """Text with `{expression}` placeholders, e.g. `"no rows for {params.env}"`."""

    source: str
    parts: tuple[str | Expression, ...]
    names: frozenset[str]

    def render(self, namespace: Namespace) -> str:
        """The text with each placeholder replaced by its value.

        Strings and numbers render as `str()`, booleans as `true`/`false`, `None` as `null`,
        lists and dicts as compact JSON. One value renders to at most 10,000 characters; a longer
        one is cut and marked with `…`.
        """
        return "".join(
            part if isinstance(part, str) else _render_value(part.evaluate(namespace))
            for part in self.parts
        )


def compile_template(source: str) -> Template:
    """Parse `source`'s placeholders; raises `ExpressionError` for a bad one or a stray brace."""
    if not isinstance(source, str):
        raise ExpressionError(f"a template must be a string, not {type(source).__name__}")
    return _compile_template(source)


# --- compiling -----------------------------------------------------------------------------

# Parts of the syntax tree that are tags rather than parts of the expression; not counted.
_TAGS = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)

_REJECTED: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Starred: "unpacking with * is not allowed",
    ast.Set: "set literals are not allowed; use a list",
}


@functools.lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Expression:
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"expression is too long: {len(source)} characters (at most {MAX_SOURCE_LENGTH})"
        )
    text = source.strip()
    lead = len(source) - len(source.lstrip())
    if not text:
        raise ExpressionError("expression is empty", source=source)
    tree = _parse(source, text, lead)
    return _Compiler(source, text, lead).compile_tree(tree)


def _parse(source: str, text: str, lead: int) -> ast.Expression:
    try:
        with warnings.catch_warnings():
            # Invalid escapes and the like only warn; the text is judged by the checks below.
            warnings.simplefilter("ignore")
            return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        offset = None
        if exc.lineno is not None and exc.offset is not None:
            offset = lead + _index_of(text, exc.lineno, max(exc.offset - 1, 0))
        reason = f"invalid syntax: {exc.msg}" if exc.msg != "invalid syntax" else exc.msg
        raise ExpressionError(reason, source=source, offset=offset) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # Null bytes and lone surrogates give ValueError; absurd nesting exhausts the parser.
        raise ExpressionError(f"cannot parse: {exc}", source=source) from None


def _index_of(text: str, lineno: int, column: int) -> int:
    """Index in `text` of a (1-based line, 0-based character column) position."""
    start = 0
    for _ in range(lineno - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return len(text)
    return min(start + column, len(text))


class _Compiler:
    """Validates a parsed expression and turns it into nested closures."""

    def __init__(self, source: str, text: str, lead: int) -> None:
        self.source = source
        self.text = text
        self.lead = lead
        self.names: set[str] = set()

    def compile_tree(self, tree: ast.Expression) -> Expression:
        count = sum(1 for node in ast.walk(tree) if not isinstance(node, _TAGS))
        if count > MAX_NODES:
            raise self.error(
                tree.body, f"expression is too complex: {count} parts (at most {MAX_NODES})"
            )
        depth, deepest = _depth(tree.body)
        if depth > MAX_DEPTH:
            raise self.error(
                deepest, f"expression is nested too deeply: {depth} levels (at most {MAX_DEPTH})"
            )
        evaluator = self.compile(tree.body)
        return Expression(self.source, frozenset(self.names), evaluator)

    def error(self, node: ast.AST, reason: str, *, last: str = "") -> ExpressionError:
        """An error located at `node`, or at its final token `last` (an attribute's name)."""
        lineno, col = getattr(node, "lineno", None), getattr(node, "col_offset", None)
        if last:
            lineno = getattr(node, "end_lineno", None)
            end = getattr(node, "end_col_offset", None)
            col = end - len(last.encode()) if isinstance(end, int) else None
        if not (isinstance(lineno, int) and isinstance(col, int)):
            return ExpressionError(reason, source=self.source)
        # `col_offset` counts UTF-8 bytes; turn it into characters.
        line = self.text.split("\n")[lineno - 1]
        column = len(line.encode()[:col].decode(errors="ignore"))
        offset = self.lead + _index_of(self.text, lineno, column)
        return ExpressionError(reason, source=self.source, offset=offset)

    def compile(self, node: ast.AST) -> _Evaluator:
        method = _DISPATCH.get(type(node))
        if method is not None:
            return method(self, node)
        reason = _REJECTED.get(type(node), f"{type(node).__name__} is not allowed")
        raise self.error(node, reason)

    def check_identifier(self, node: ast.AST, name: str) -> None:
        if name.startswith("_"):
            reason = f"names starting with '_' are not allowed: {name!r}"
            raise self.error(node, reason, last=name)

    def constant(self, node: ast.Constant) -> _Evaluator:
        value = node.value
        if isinstance(value, bytes):
            raise self.error(node, "bytes literals are not allowed")
        if isinstance(value, complex):
            raise self.error(node, "complex numbers are not allowed")
        if value is Ellipsis:
            raise self.error(node, "'...' is not allowed")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise self.error(node, "integer literal is too large (at most 10**100)")
        return lambda namespace: value

    def name(self, node: ast.Name) -> _Evaluator:
        name = node.id
        self.check_identifier(node, name)
        if name in _CONSTANT_NAMES:
            value = _CONSTANT_NAMES[name]
            return lambda namespace: value
        if name in _FUNCTIONS:
            raise self.error(node, f"{name!r} is a function; call it as {name}(...)")
        self.names.add(name)

        def load(namespace: Namespace) -> Any:
            try:
                return namespace[name]
            except KeyError:
                raise ExpressionError(_unknown_name(name, namespace)) from None

        return load

    def attribute(self, node: ast.Attribute) -> _Evaluator:
        field_name = node.attr
        self.check_identifier(node, field_name)
        get_value = self.compile(node.value)
        label = _label(node.value)

        def get_field(namespace: Namespace) -> Any:
            value = get_value(namespace)
            if type(value) is not dict and not isinstance(value, Mapping):
                raise ExpressionError(
                    f"cannot read field {field_name!r} of {label!r}: "
                    f"it is {_kind(value)}, not a mapping"
                )
            try:
                return value[field_name]
            except KeyError:
                raise ExpressionError(
                    f"{label!r} has no field {field_name!r}{_known_keys(value)}"
                ) from None

        return get_field

    def subscript(self, node: ast.Subscript) -> _Evaluator:
        get_value = self.compile(node.value)
        label = _label(node.value)
        if isinstance(node.slice, ast.Slice):
            bounds = tuple(
                None if part is None else self.compile(part)
                for part in (node.slice.lower, node.slice.upper, node.slice.step)
            )

            def get_slice(namespace: Namespace) -> Any:
                value = get_value(namespace)
                lower, upper, step = (None if f is None else f(namespace) for f in bounds)
                return _slice(value, lower, upper, step, label)

            return get_slice

        get_key = self.compile(node.slice)

        def get_item(namespace: Namespace) -> Any:
            return _item(get_value(namespace), get_key(namespace), label)

        return get_item

    def compare(self, node: ast.Compare) -> _Evaluator:
        get_left = self.compile(node.left)
        steps = tuple(
            (_COMPARISONS[type(op)], self.compile(right))
            for op, right in zip(node.ops, node.comparators, strict=True)
        )

        def compare(namespace: Namespace) -> Any:
            left = get_left(namespace)
            result: Any = True
            for (symbol, test), get_right in steps:
                right = get_right(namespace)
                try:
                    result = test(left, right)
                except TypeError:
                    raise ExpressionError(
                        f"cannot compare {_kind(left)} and {_kind(right)} with {symbol!r}"
                    ) from None
                if not result:
                    return result
                left = right
            return result

        return compare

    def bool_op(self, node: ast.BoolOp) -> _Evaluator:
        operands = tuple(self.compile(value) for value in node.values)
        if isinstance(node.op, ast.And):

            def all_of(namespace: Namespace) -> Any:
                value: Any = True
                for operand in operands:
                    value = operand(namespace)
                    if not value:
                        return value
                return value

            return all_of

        def any_of(namespace: Namespace) -> Any:
            value: Any = False
            for operand in operands:
                value = operand(namespace)
                if value:
                    return value
            return value

        return any_of

    def unary_op(self, node: ast.UnaryOp) -> _Evaluator:
        get_operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda namespace: not get_operand(namespace)
        if isinstance(node.op, ast.USub):
            return lambda namespace: _negate(get_operand(namespace))
        if isinstance(node.op, ast.UAdd):
            return lambda namespace: _plus(get_operand(namespace))
        raise self.error(node, "operator '~' is not allowed")

    def bin_op(self, node: ast.BinOp) -> _Evaluator:
        entry = _BINARY.get(type(node.op))
        if entry is None:
            symbol = _OTHER_OPERATORS.get(type(node.op), type(node.op).__name__)
            raise self.error(node, f"operator {symbol!r} is not allowed")
        get_left = self.compile(node.left)
        get_right = self.compile(node.right)
        return lambda namespace: entry(get_left(namespace), get_right(namespace))

    def if_exp(self, node: ast.IfExp) -> _Evaluator:
        test, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
        return lambda namespace: body(namespace) if test(namespace) else orelse(namespace)

    def call(self, node: ast.Call) -> _Evaluator:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self.error(
                node,
                f"method calls are not allowed ({_label(func)}(...)); "
                "only len, min, max and abs can be called",
            )
        if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS:
            what = repr(func.id) if isinstance(func, ast.Name) else "this"
            raise self.error(
                node, f"calling {what} is not allowed; only len, min, max and abs can be called"
            )
        name = func.id
        if node.keywords:
            raise self.error(node.keywords[0], f"{name}() takes no keyword arguments")
        count = len(node.args)
        if name in ("len", "abs") and count != 1:
            raise self.error(node, f"{name}() takes exactly one argument ({count} given)")
        if count == 0:
            raise self.error(node, f"{name}() takes at least one argument (0 given)")
        args = tuple(self.compile(arg) for arg in node.args)
        if name == "len":
            (arg,) = args
            return lambda namespace: _len(arg(namespace))
        if name == "abs":
            (arg,) = args
            return lambda namespace: _abs(arg(namespace))
        choose = min if name == "min" else max
        return lambda namespace: _min_max(name, choose, [arg(namespace) for arg in args])

    def list_(self, node: ast.List) -> _Evaluator:
        items = tuple(self.compile(item) for item in node.elts)
        return lambda namespace: [item(namespace) for item in items]

    def tuple_(self, node: ast.Tuple) -> _Evaluator:
        items = tuple(self.compile(item) for item in node.elts)
        return lambda namespace: tuple(item(namespace) for item in items)

    def dict_(self, node: ast.Dict) -> _Evaluator:
        pairs: list[tuple[_Evaluator, _Evaluator]] = []
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise self.error(value, "unpacking with ** is not allowed")
            pairs.append((self.compile(key), self.compile(value)))

        def build(namespace: Namespace) -> dict[Any, Any]:
            result: dict[Any, Any] = {}
            for get_key, get_value in pairs:
                key, value = get_key(namespace), get_value(namespace)
                try:
                    result[key] = value
                except TypeError:
                    raise ExpressionError(f"{_kind(key)} cannot be a dict key") from None
            return result

        return build


_DISPATCH: dict[type[ast.AST], Callable[[_Compiler, Any], _Evaluator]] = {
    ast.Constant: _Compiler.constant,
    ast.Name: _Compiler.name,
    ast.Attribute: _Compiler.attribute,
    ast.Subscript: _Compiler.subscript,
    ast.Compare: _Compiler.compare,
    ast.BoolOp: _Compiler.bool_op,
    ast.UnaryOp: _Compiler.unary_op,
    ast.BinOp: _Compiler.bin_op,
    ast.IfExp: _Compiler.if_exp,
    ast.Call: _Compiler.call,
    ast.List: _Compiler.list_,
    ast.Tuple: _Compiler.tuple_,
    ast.Dict: _Compiler.dict_,
}


def _depth(root: ast.AST) -> tuple[int, ast.AST]:
    """The nesting depth of the expression parts under `root`, and the deepest part."""
    deepest, most = root, 0
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > most:
            deepest, most = node, depth
        stack.extend(
            (child, depth + 1)
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, _TAGS)
        )
    return most, deepest


def _label(node: ast.AST) -> str:
    """Source text of a part of an expression, short enough for a message."""
    return _clip(ast.unparse(node), 60)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- evaluating ----------------------------------------------------------------------------


def _kind(value: object) -> str:
    """How a value is named in messages: data types by their JSON names."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _keys(mapping: Mapping[Any, Any]) -> str:
    keys = sorted(str(key) for key in mapping)
    shown = ", ".join(keys[:10])
    return shown + (", …" if len(keys) > 10 else "")


def _unknown_name(name: str, namespace: Namespace) -> str:
    if not namespace:
        return f"unknown name {name!r}"
    return f"unknown name {name!r} (known names: {_keys(namespace)})"


def _known_keys(mapping: Mapping[Any, Any]) -> str:
    return f" (fields: {_keys(mapping)})" if mapping else " (it is empty)"


def _is_container(value: object) -> bool:
    return isinstance(value, (Mapping, Sequence, Set)) and not isinstance(value, str)


def _item(value: Any, key: Any, label: str) -> Any:
    if type(value) is dict or isinstance(value, Mapping):
        try:
            return value[key]
        except KeyError:
            raise ExpressionError(f"{label!r} has no key {key!r}{_known_keys(value)}") from None
        except TypeError:
            raise ExpressionError(f"{_kind(key)} cannot be a key of {label!r}") from None
    if isinstance(value, Sequence):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError(f"index of {label!r} must be an integer, not {_kind(key)}")
        try:
            return value[key]
        except IndexError:
            raise ExpressionError(
                f"index {key} is out of range for {label!r} (length {len(value)})"
            ) from None
    raise ExpressionError(f"cannot index {label!r}: it is {_kind(value)}")


def _slice(value: Any, lower: Any, upper: Any, step: Any, label: str) -> Any:
    if not isinstance(value, Sequence):
        raise ExpressionError(f"cannot slice {label!r}: it is {_kind(value)}")
    for bound in (lower, upper, step):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise ExpressionError(f"slice bounds must be integers, not {_kind(bound)}")
    if step == 0:
        raise ExpressionError("slice step cannot be zero")
    return value[lower:upper:step]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float))


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
        raise ExpressionError("integer result is too large (at most 10**100 in magnitude)")
    return value


def _sized(length: int) -> None:
    if length > MAX_SIZE:
        raise ExpressionError(f"result is too large: {length} items (at most {MAX_SIZE})")


def _negate(value: Any) -> Any:
    if not _is_number(value):
        raise ExpressionError(f"cannot negate {_kind(value)}")
    return _bounded(-value)


def _plus(value: Any) -> Any:
    if not _is_number(value):
        raise ExpressionError(f"cannot apply unary '+' to {_kind(value)}")
    return +value


def _add(left: Any, right: Any) -> Any:
    if _is_number(left) and _is_number(right):
        return _bounded(left + right)
    for kind in (str, list, tuple):
        if isinstance(left, kind) and isinstance(right, kind):
            _sized(len(left) + len(right))
            return operator.add(left, right)
    raise ExpressionError(f"cannot add {_kind(left)} and {_kind(right)}")


def _multiply(left: Any, right: Any) -> Any:
    if _is_number(left) and _is_number(right):
        return _bounded(left * right)
    sequence, count = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
        _sized(len(sequence) * max(count, 0))
        if (
            count > 1
            and not isinstance(sequence, str)
            and any(_is_container(item) for item in sequence)
        ):
            raise ExpressionError("only lists of numbers, strings and booleans can be repeated")
        return sequence * count
    raise ExpressionError(f"cannot multiply {_kind(left)} and {_kind(right)}")


def _power(base: Any, exponent: Any) -> Any:
    if not (_is_number(base) and _is_number(exponent)):
        raise ExpressionError(f"cannot apply '**' to {_kind(base)} and {_kind(exponent)}")
    if not abs(exponent) <= MAX_EXPONENT:
        raise ExpressionError(f"exponent {exponent!r} is too large (at most {MAX_EXPONENT})")
    if not abs(base) <= MAX_INT:
        raise ExpressionError("base of '**' is too large (at most 10**100 in magnitude)")
    try:
        result = base**exponent
    except ZeroDivisionError:
        raise ExpressionError("zero cannot be raised to a negative power") from None
    except OverflowError:
        raise ExpressionError("result of '**' is too large") from None
    if isinstance(result, complex):
        raise ExpressionError("a negative number cannot be raised to a fractional power")
    return _bounded(result)


def _arithmetic(symbol: str, apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def numeric(left: Any, right: Any) -> Any:
        # Numbers only: `str % x` would be printf-style formatting, with unbounded widths.
        if not (_is_number(left) and _is_number(right)):
            raise ExpressionError(f"cannot apply {symbol!r} to {_kind(left)} and {_kind(right)}")
        try:
            return _bounded(apply(left, right))
        except ZeroDivisionError:
            raise ExpressionError("division by zero") from None
        except OverflowError:
            raise ExpressionError(f"result of {symbol!r} is too large") from None

    return numeric


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: _add,
    ast.Sub: _arithmetic("-", operator.sub),
    ast.Mult: _multiply,
    ast.Div: _arithmetic("/", operator.truediv),
    ast.FloorDiv: _arithmetic("//", operator.floordiv),
    ast.Mod: _arithmetic("%", operator.mod),
    ast.Pow: _power,
}

_OTHER_OPERATORS: dict[type[ast.operator], str] = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
}

_COMPARISONS: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda item, container: item in container),
    ast.NotIn: ("not in", lambda item, container: item not in container),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}


def _len(value: Any) -> int:
    if not isinstance(value, Sized):
        raise ExpressionError(f"len() needs a string, list or mapping, not {_kind(value)}")
    return len(value)


def _abs(value: Any) -> Any:
    if not _is_number(value):
        raise ExpressionError(f"abs() needs a number, not {_kind(value)}")
    return abs(value)


def _min_max(name: str, choose: Callable[..., Any], args: list[Any]) -> Any:
    if len(args) == 1:
        (values,) = args
        if not isinstance(values, (str, Mapping, Sequence, Set)):
            raise ExpressionError(f"{name}() of one argument needs a list, not {_kind(values)}")
        if not values:
            raise ExpressionError(f"{name}() of an empty list")
    else:
        values = args
    try:
        return choose(values)
    except TypeError:
        raise ExpressionError(f"{name}() cannot compare values of different types") from None


# --- templates -----------------------------------------------------------------------------

_QUOTES = "'\""
_OPENERS = "([{"
_CLOSERS = ")]"


@functools.lru_cache(maxsize=1024)
def _compile_template(source: str) -> Template:
    parts: list[str | Expression] = []
    text: list[str] = []
    names: set[str] = set()
    index = 0
    while index < len(source):
        char = source[index]
        if char == "{" and source.startswith("{{", index):
            text.append("{")
            index += 2
        elif char == "}" and source.startswith("}}", index):
            text.append("}")
            index += 2
        elif char == "}":
            raise ExpressionError(
                "single '}' in template; write '}}' for a literal brace",
                source=source,
                offset=index,
            )
        elif char == "{":
            end = _placeholder_end(source, index)
            inner = source[index + 1 : end]
            if not inner.strip():
                raise ExpressionError("empty placeholder '{}'", source=source, offset=index)
            try:
                expression = compile_expression(inner)
            except ExpressionError as exc:
                offset = index if exc.offset is None else index + 1 + exc.offset
                reason = f"bad placeholder {{{_clip(inner, 60)}}}: {exc.reason}"
                raise ExpressionError(reason, source=source, offset=offset) from None
            if text:
                parts.append("".join(text))
                text = []
            parts.append(expression)
            names |= expression.names
            index = end + 1
        else:
            text.append(char)
            index += 1
    if text:
        parts.append("".join(text))
    return Template(source, tuple(parts), frozenset(names))


def _placeholder_end(source: str, start: int) -> int:
    """Index of the `}` closing the placeholder opened at `start`, skipping nested brackets
    and string literals (so `{ {'a': 1}['a'] }` and `{x['}']}` work)."""
    depth = 0
    index = start + 1
    while index < len(source):
        char = source[index]
        if char in _QUOTES:
            index += 1
            while index < len(source) and source[index] != char:
                index += 2 if source[index] == "\\" else 1
        elif char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        elif char == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    raise ExpressionError(
        "unclosed '{' in template; write '{{' for a literal brace", source=source, offset=start
    )


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
_SHORT_REPR = reprlib.Repr()


def _render_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _clip(value, MAX_SIZE)
    if isinstance(value, (Mapping, list, tuple)):
        # Encode lazily and stop at the limit: data from upstream nodes can be arbitrarily big.
        chunks: list[str] = []
        length = 0
        try:
            for chunk in _JSON.iterencode(value):
                chunks.append(chunk)
                length += len(chunk)
                if length > MAX_SIZE:
                    break
        except (TypeError, ValueError):  # non-string keys, cycles
            return _clip(_SHORT_REPR.repr(value), MAX_SIZE)
        return _clip("".join(chunks), MAX_SIZE)
    try:
        return _clip(str(value), MAX_SIZE)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return "<number too large to print>"
