"""Strict JSON: no NaN, no Infinity, anywhere Interlock stores or prints data.

Contract: `NaN`, `Infinity` and `-Infinity` are not JSON (RFC 8259); `jq`, `JSON.parse` and
strict parsers reject them. They are refused where they enter: params (`check_finite`, exit 2
from the CLI), node outputs (`loads` for a shell node's last line, `check_finite` for a python
node's result: the node fails), and the pipeline file's param defaults and env names
(validation). Nothing here prints or logs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


class NonFiniteError(ValueError):
    """A NaN or an infinity where JSON data is expected."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """`json.loads`, refusing `NaN`, `Infinity` and `-Infinity` (and numbers that overflow to
    infinity, e.g. `1e999`) with `NonFiniteError`."""
    value = json.loads(text, parse_constant=_refuse_constant)
    check_finite(value)
    return value


def non_finite_path(value: Any, path: str = "") -> str | None:
    """Where in `value` a non-finite float is (`a.b[2]`, or `value` at the top), else None."""
    todo: list[tuple[Any, str]] = [(value, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return where or "value"
        elif isinstance(item, Mapping):
            todo.extend((v, f"{where}.{k}" if where else str(k)) for k, v in item.items())
        elif isinstance(item, list | tuple):
            todo.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def check_finite(value: Any, what: str = "value") -> None:
    """Raise `NonFiniteError` naming where `value` holds a NaN or an infinity."""
    where = non_finite_path(value)
    if where is not None:
        name = what if where == "value" else f"{what} {where}"
        raise NonFiniteError(f"{name} is not a finite number (NaN and Infinity are not JSON)")
