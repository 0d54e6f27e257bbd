"""Strict JSON: no NaN, no Infinity, anywhere Interlock stores or prints data.

Contract: `NaN`, `Infinity` and `-Infinity` are not JSON (RFC 8259); `jq`, `JSON.parse` and
strict parsers reject them. They are refused where they enter: params (`check_finite`, exit 2
from the CLI), node outputs (`loads` for a shell node's last line, `check_finite` for a python
node's result: the node fails), and the pipeline file's param defaults and env names
(validation). Integers with more digits than Python writes as text (`sys.get_int_max_str_digits`,
4,300) cannot be stored either: `loads` refuses them (`IntTooLargeError`) and `too_large_path`
finds them in a python node's result. Nothing here prints or logs.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any


class NonFiniteError(ValueError):
    """A NaN or an infinity where JSON data is expected."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteError(f"{name} is not JSON")


class IntTooLargeError(ValueError):
    """An integer with more digits than Python converts to or from text (4,300 by default)."""


def int_too_large(number: int) -> bool:
    """Whether `number` has more decimal digits than Python will write (it could not be put in
    an event): from its bit length, without converting it (the conversion is what fails)."""
    limit = sys.get_int_max_str_digits()
    # bits * log10(2) + 1 is at least the number of digits: at worst one digit too strict.
    return limit > 0 and int(abs(number).bit_length() * 0.30103) + 1 > limit


def too_large_message(what: str, verb: str = "is") -> str:
    limit = sys.get_int_max_str_digits()
    return f"{what} {verb} an integer too large (more than {limit:,} digits)"


def _parse_int(text: str) -> int:
    if len(text) > sys.get_int_max_str_digits() > 0:
        raise IntTooLargeError(too_large_message("value", "has"))
    return int(text)


def loads(text: str | bytes) -> Any:
    """`json.loads`, refusing `NaN`, `Infinity` and `-Infinity` (and numbers that overflow to
    infinity, e.g. `1e999`) with `NonFiniteError`, and integers too long for Python to read
    with `IntTooLargeError`."""
    value = json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int)
    check_finite(value)
    return value


def _path_where(value: Any, path: str, bad: Callable[[Any], bool]) -> str | None:
    """Where in `value` (`a.b[2]`, or `value` at the top) the first leaf `bad` picks is."""
    todo: list[tuple[Any, str]] = [(value, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, Mapping):
            todo.extend((v, f"{where}.{k}" if where else str(k)) for k, v in item.items())
        elif isinstance(item, list | tuple):
            todo.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif bad(item):
            return where or "value"
    return None


def _too_large(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and int_too_large(item)


def _non_finite(item: Any) -> bool:
    return isinstance(item, float) and not math.isfinite(item)


def too_large_path(value: Any, path: str = "") -> str | None:
    """Where in `value` an integer too large to write is (as `non_finite_path`), else None."""
    return _path_where(value, path, _too_large)


def non_finite_path(value: Any, path: str = "") -> str | None:
    """Where in `value` a non-finite float is (`a.b[2]`, or `value` at the top), else None."""
    return _path_where(value, path, _non_finite)


def check_finite(value: Any, what: str = "value") -> None:
    """Raise `NonFiniteError` naming where `value` holds a NaN or an infinity."""
    where = non_finite_path(value)
    if where is not None:
        name = what if where == "value" else f"{what} {where}"
        raise NonFiniteError(f"{name} is not a finite number (NaN and Infinity are not JSON)")
