"""Params typed by an operator (`--param K=V`, the launch dialog) read as YAML 1.2 scalars.

Contract: `parse_param(text)` returns a bool, int, float or str, never anything else, and never
raises. The YAML 1.2 core schema decides: only `true`/`false` (any case the schema allows) are
booleans, so `no`, `on`, `yes`, `off` stay strings (PyYAML's YAML 1.1 made them booleans);
`1:30` stays a string (1.1 read it as sexagesimal 90); decimal, `0o` octal and `0x` hex
integers and decimal floats are numbers. Two choices where the schema is looser than an
operator expects: a decimal integer with a leading zero (`0755`, `007`) stays a string (a file
mode or a code, whose zero matters). `.inf`, `-.inf` and `.nan` are the non-finite floats YAML 1.2
says they are, so that the strict-JSON check refuses them with a sentence where they enter
(JSON has no such numbers), rather than passing them on as look-alike text.
Quoted text (`"42"`, `'true'`) is the string inside the quotes. Empty text is the empty string;
`null` and `~` are the text itself (a param given on purpose is not "no value").
"""

from __future__ import annotations

import re
from typing import Any

_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_OCTAL = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NON_FINITE = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def parse_param(text: str) -> Any:
    """One param value as YAML 1.2 reads the scalar (see the module's contract)."""
    value = text.strip()
    if not value:
        return ""
    if value in _BOOL:
        return _BOOL[value]
    if _DECIMAL.fullmatch(value):
        return int(value)
    if _OCTAL.fullmatch(value):
        return int(value[2:], 8)
    if _HEX.fullmatch(value):
        return int(value[2:], 16)
    if _NON_FINITE.fullmatch(value):
        return float(value.replace(".", "", 1))  # float() reads "inf", "-inf", "nan"
    if _FLOAT.fullmatch(value) and not value.lstrip("+-").isdigit():
        return float(value)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return _unquote(value)
    return value


def _unquote(value: str) -> str:
    import yaml

    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return loaded if isinstance(loaded, str) else value
