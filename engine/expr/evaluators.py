"""What compiled expressions run: the language's limits, its one error, and the operations
the compiler's closures call while evaluating.

Contract: every function here takes plain data and either returns plain data within the limits
(`MAX_INT`, `MAX_SIZE`, `MAX_EXPONENT`) or raises `ExpressionError` with a sentence naming the
values' kinds (`"cannot add a string and a number"`); none reaches an attribute of a Python
object. `engine.expr.compiler` builds closures over them; `engine.expr` is the public face.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence, Set, Sized
from typing import Any

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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
