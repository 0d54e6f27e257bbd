"""The expression compiler: source text -> a validated `Expression` of nested closures.

Contract: `compile_source(source)` parses `source` with `ast`, checks every part against the
language's whitelist and bounds (length, syntax nodes, depth), and returns an `Expression`
whose evaluator is built from `engine.expr.evaluators`; anything outside the language raises
`ExpressionError` naming the part and its column. Nothing is ever run while compiling. Results
are cached by source text.
"""

from __future__ import annotations

import ast
import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.expr.evaluators import (
    _BINARY,
    _COMPARISONS,
    _CONSTANT_NAMES,
    _FUNCTIONS,
    _OTHER_OPERATORS,
    MAX_DEPTH,
    MAX_INT,
    MAX_NODES,
    MAX_SOURCE_LENGTH,
    ExpressionError,
    Namespace,
    _abs,
    _clip,
    _Evaluator,
    _item,
    _kind,
    _known_keys,
    _len,
    _min_max,
    _negate,
    _plus,
    _slice,
    _unknown_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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
def compile_source(source: str) -> Expression:
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

