"""Text from nodes, made safe to show on an operator's terminal.

Contract: `printable(text)` returns `text` with every character that a terminal would act on
instead of show written as an escape: C0 controls (ESC, BEL, backspace, carriage return, and
newline too: a shown value is one line) as `\\xNN` (tab kept), DEL and C1 controls as `\\xNN`,
and the Unicode bidirectional overrides and isolates (which reorder what is shown) as
`\\uNNNN`. Everything else is unchanged; text without such characters is returned as is.
Used by every human output (progress, `status`, `summary`, the console); JSON output is never
passed through it (JSON escapes controls itself).
"""

from __future__ import annotations

import re

_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_TABLE: dict[int, str] = {
    **{code: f"\\x{code:02x}" for code in range(0x20) if code != 0x09},
    **{code: f"\\x{code:02x}" for code in range(0x7F, 0xA0)},
    **{code: f"\\u{code:04x}" for code in _BIDI},
}
_UNSAFE = re.compile("[" + "".join(re.escape(chr(code)) for code in _TABLE) + "]")


def printable(text: object) -> str:
    """`text` (made a string) with terminal controls shown escaped."""
    value = "" if text is None else str(text)
    if _UNSAFE.search(value) is None:  # the usual case: no copy
        return value
    return value.translate(_TABLE)


def printable_lines(text: str) -> str:
    """`printable` for each line of a multi-line human text (its newlines kept)."""
    return "\n".join(printable(line) for line in text.split("\n"))
