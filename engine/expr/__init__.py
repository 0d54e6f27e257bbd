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

Modules: `compiler` (source -> validated closures), `evaluators` (the limits, `ExpressionError`
and the operations the closures call); this one holds the public API and templates.
"""

from __future__ import annotations

import functools
import json
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.expr.compiler import Expression, compile_source
from engine.expr.evaluators import (
    MAX_DEPTH,
    MAX_EXPONENT,
    MAX_INT,
    MAX_NODES,
    MAX_SIZE,
    MAX_SOURCE_LENGTH,
    ExpressionError,
    Namespace,
    _clip,
)

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


def compile_expression(source: str) -> Expression:
    """Parse and validate `source`; raises `ExpressionError` if it is outside the language."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, not {type(source).__name__}")
    return compile_source(source)


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
