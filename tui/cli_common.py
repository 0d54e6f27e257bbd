"""Pieces every `interlock` command shares: exit codes, output, bad input, the store.

Contract: `UsageError` is bad input (one paragraph on stderr, exit 2, raised anywhere in a
command); `_say` writes stdout, `_err` stderr (never failing once the terminal is gone);
`_open_store` opens the database a command names (`--db`, `$INTERLOCK_DB`, else the user data
directory), read-only where a reading command may not write; `_find_run` resolves a run id or a
unique prefix of one. Nothing here imports Textual or the executor: headless commands start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tui.settings import default_db_path

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from engine.store import RunRow, Store

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, EXIT_CANCELLED = 0, 1, 2, 3, 4
EXIT_BY_STATE = {"succeeded": 0, "failed": 1, "timeout": 3, "cancelled": 4, "interrupted": 1}


class UsageError(Exception):
    """Bad input from the user: printed as one paragraph, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"interlock: error: {message}\n")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    # After a hangup the terminal is gone (EIO): the run still has to end cleanly.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if args.db else default_db_path()


def _nothing_stored_yet(args: argparse.Namespace) -> bool:
    """True if no database exists yet where one would be created (an empty listing).

    A path where no database can ever be created (under a regular file) is bad input, not an
    empty listing: it is most likely a typo in --db or $INTERLOCK_DB.
    """
    path = _db_path(args)
    if path.exists():
        return False
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"cannot create the Interlock database at {path}: {ancestor} is not a directory"
        )
    from engine.dbfile import directory_writable

    if not directory_writable(ancestor / "probe"):
        raise UsageError(
            f"cannot create the Interlock database at {path}: {ancestor} is not writable"
        )
    return True


def _open_store(args: argparse.Namespace, *, create: bool = True, read: bool = False) -> Store:
    """The store; for a command that only reads (`read`), opened read-only where this process
    may not write (a read-only directory or file), so reading still works there."""
    from engine.dbfile import directory_writable
    from engine.store import Store

    path = _db_path(args)
    if not create and not path.exists():
        raise UsageError(f"no database at {path} (nothing has run yet, or pass --db PATH)")
    if read and path.exists() and not (os.access(path, os.W_OK) and directory_writable(path)):
        return Store(path, readonly=True)
    return Store(path)


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    from tui.params import parse_param

    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param needs KEY=VALUE, got '{item}'")
        try:
            params[key.strip()] = parse_param(raw)
        except ValueError:  # an int past Python's digit limit (4300)
            raise UsageError(
                f"--param {key.strip()}: a number of {len(raw.strip())} digits is too long "
                "(pass it quoted, as a string, if it is not a number)"
            ) from None
    return params


def _folder_of(path_text: str) -> str:
    """The pipeline file's folder: where its `call:` modules and relative `cwd`s are found."""
    return os.path.dirname(os.path.abspath(path_text))


def _load(path_text: str) -> Any:
    from engine.loader import load_file

    return load_file(Path(path_text))


async def _find_run(store: Store, run_id: str) -> RunRow:
    row = await store.find_run(run_id)
    if row is None:
        raise UsageError(f"no run with id '{run_id}' in {store.path}")
    return row


def _whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], else one sentence (exit 2)."""

    def parse(text: str) -> int:
        value = text.strip()
        digits = value.lstrip("+-")
        if not digits.isdigit():
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number from {low:,} to {high:,}, not '{value[:40]}'"
                + ("..." if len(value) > 40 else "")
            )
        if len(digits) > 20:  # int() of thousands of digits is slow, then refused anyway
            raise argparse.ArgumentTypeError(
                f"{what} must be from {low:,} to {high:,}, not a {len(digits):,}-digit number"
            )
        number = int(value)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"{what} must be from {low:,} to {high:,}, not {number:,}"
            )
        return number

    return parse


_LIMIT = _whole_number(0, 1_000_000_000, "the number of runs")
_TAIL = _whole_number(0, 1_000_000_000, "the number of events")
_PORT = _whole_number(0, 65535, "a TCP port")
