"""What every workload shares: the result row, the settings of one run, timing and statistics."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

FLOOR = "floor"
TIMEOUT_FLOOR = "timeout_floor"


class BenchmarkError(RuntimeError):
    """A workload could not be measured, for a reason the message tells (e.g. the `interlock`
    command does not start): reported as such, not as a traceback."""


@dataclass(frozen=True)
class Settings:
    """How hard to measure: `quick` is a smoke run (fewer, smaller repetitions)."""

    quick: bool = False
    peers: bool = False

    def reps(self, full: int, quick: int = 2) -> int:
        return quick if self.quick else full


@dataclass(frozen=True)
class Target:
    """A figure to meet: `limit` is the aim, `hard` (if any) the line that must not be crossed.

    `higher` is True for throughputs (at least `limit`), False for times (at most `limit`).
    """

    limit: float
    hard: float | None = None
    higher: bool = False

    def verdict(self, value: float) -> str:
        if math.isnan(value):
            return "n/a"
        if self._meets(value, self.limit):
            return "met"
        if self.hard is not None and self._meets(value, self.hard):
            return "within limit"
        return "MISSED"

    def _meets(self, value: float, bound: float) -> bool:
        return value >= bound if self.higher else value <= bound

    def describe(self, unit: str) -> str:
        sign = ">=" if self.higher else "<="
        text = f"{sign} {fmt_value(self.limit)} {unit}"
        if self.hard is not None:
            text += f" (limit {fmt_value(self.hard)})"
        return text


@dataclass
class Row:
    """One measured figure: its samples (one per repetition) and how to judge it."""

    workload: str  # "W1"
    title: str  # "fan-out 1 -> 1,000 no-op -> 1"
    variant: str  # "engine, memory sink"
    metric: str  # "per node", "lag p99", "events/s"
    unit: str  # "us", "ms", "s", "events/s"
    samples: list[float]
    role: str = ""  # FLOOR / TIMEOUT_FLOOR: the baselines the other rows of the workload divide by
    target: Target | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def low(self) -> float:
        return min(self.samples) if self.samples else math.nan

    @property
    def high(self) -> float:
        return max(self.samples) if self.samples else math.nan

    @property
    def verdict(self) -> str:
        return self.target.verdict(self.median) if self.target is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "title": self.title,
            "variant": self.variant,
            "metric": self.metric,
            "unit": self.unit,
            "samples": self.samples,
            "role": self.role,
            "target": dataclasses.asdict(self.target) if self.target is not None else None,
            "note": self.note,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Row:
        return cls(
            workload=raw["workload"],
            title=raw["title"],
            variant=raw["variant"],
            metric=raw["metric"],
            unit=raw["unit"],
            samples=[float(s) for s in raw["samples"]],
            role=raw.get("role", ""),
            target=Target(**raw["target"]) if raw.get("target") else None,
            note=raw.get("note", ""),
            extra=raw.get("extra") or {},
        )


def fmt_value(value: float) -> str:
    """A figure with about three significant digits, thousands separated."""
    if math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def timed(
    make: Callable[[], Awaitable[Any]], before: Callable[[], None] | None = None
) -> float:
    """Seconds one call of `make()` takes, after `before()` (untimed) and a full collection so
    that repetitions start alike (the collector stays on while timing: the engine runs with it
    on)."""
    if before is not None:
        before()
    gc.collect()
    start = time.perf_counter()
    await make()
    return time.perf_counter() - start


async def repeat(make: Callable[[], Awaitable[Any]], reps: int, warmup: int = 1) -> list[float]:
    """Seconds per call over `reps` calls, after `warmup` calls that are not counted."""
    for _ in range(warmup):
        await make()
    return [await timed(make) for _ in range(reps)]


def per_item(seconds: Sequence[float], items: int, scale: float = 1e6) -> list[float]:
    """Seconds per workload turned into (micro)seconds per item."""
    return [s / items * scale for s in seconds]


async def wait_until(check: Callable[[], bool], limit: float, every: float = 0.02) -> None:
    """Return once `check()` holds; TimeoutError after `limit` seconds."""
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110  (another component's state, which has no event)
            await asyncio.sleep(every)


def write_result(value: Any) -> None:
    """What a benchmark subprocess hands back (the workers, the peers): JSON, as the last line
    of its stdout, so that whatever it or a framework printed before does not matter."""
    sys.stdout.write("\n" + json.dumps(value) + "\n")
    sys.stdout.flush()


def read_result(out: bytes) -> Any:
    """`write_result`'s value from a subprocess's stdout; None if it wrote none."""
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
