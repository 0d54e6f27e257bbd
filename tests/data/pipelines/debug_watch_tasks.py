"""The python step of debug_watch.yaml: a watch test edits VERSION and expects the new value."""

from typing import Any

VERSION = 1


def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"version": VERSION}
