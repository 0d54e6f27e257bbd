"""Which runs to list: a filter over the whole stored history, and its text syntax.

Contract: `RunFilter` is a value (states, a pipeline id, words); `parse_filter` reads the
console's filter text, `state:failed pipeline:etl words...` (`state:` may list several states
separated by commas; a word must appear in the run id, pipeline id or state, case-insensitive).
The store turns a filter into SQL (`Store.list_runs_page`, `Store.count_runs`), so a filter
answers over every stored run, not over the page the console has loaded. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.store import RunRow

__all__ = ["RunFilter", "RunPage", "parse_filter"]


# Words that name a group of run states in a `state:` filter (the console's quick filters).
STATE_GROUPS: dict[str, tuple[str, ...]] = {
    "active": ("pending", "running", "waiting"),
    "ended": ("succeeded", "failed", "timeout", "cancelled"),
}


@dataclass(frozen=True)
class RunFilter:
    """Runs in one of `states` (any if empty), of `pipeline` (any if None), whose id, pipeline
    or state contains every word of `words` (lower case)."""

    states: tuple[str, ...] = ()
    pipeline: str | None = None
    words: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.states and self.pipeline is None and not self.words

    def describe(self) -> str:
        parts = []
        if self.states:
            parts.append("state:" + ",".join(self.states))
        if self.pipeline is not None:
            parts.append(f"pipeline:{self.pipeline}")
        parts.extend(self.words)
        return " ".join(parts)


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first, and where the next page starts (None: no more)."""

    rows: list[RunRow]
    after: tuple[str, int] | None


def parse_filter(text: str) -> RunFilter:
    """`state:failed,timeout pipeline:etl words` as a `RunFilter` (unknown prefixes are words)."""
    states: list[str] = []
    pipeline: str | None = None
    words: list[str] = []
    for token in text.split():
        key, sep, value = token.partition(":")
        if sep and value and key.lower() == "state":
            for name in value.lower().split(","):
                states.extend(STATE_GROUPS.get(name, (name,)) if name else ())
        elif sep and value and key.lower() == "pipeline":
            pipeline = value
        else:
            words.append(token.lower())
    return RunFilter(tuple(dict.fromkeys(states)), pipeline, tuple(words))
