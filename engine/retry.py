"""Retry policy as data, turned into tenacity settings in this one adapter.

`RetryPolicy` (engine.spec) says how many attempts a node gets in all, which error classes are
retried and the backoff. `backoff_wait` is exponential with a relative jitter (`jitter: 0.1` is
+/-10% of the delay); `sleep` is injected so tests record the delays instead of waiting.
Nodes with a single attempt never touch tenacity (the executor checks `max_attempts == 1`).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.wait import wait_base

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from engine.spec import Backoff, RetryPolicy


class backoff_wait(wait_base):
    """Exponential backoff, capped, with relative jitter."""

    def __init__(self, backoff: Backoff, rng: random.Random | None = None, first: int = 1) -> None:
        self.backoff = backoff
        self.rng = rng or random.Random()
        self.first = first

    def delay_for(self, failed_attempt: int) -> float:
        """The delay after the `failed_attempt`-th attempt of this node (1-based)."""
        b = self.backoff
        base = min(b.max, b.initial * (b.multiplier ** max(0, failed_attempt - 1)))
        if b.jitter:
            base *= 1.0 + self.rng.uniform(-b.jitter, b.jitter)
        return max(0.0, min(base, b.max * (1.0 + b.jitter)))

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.delay_for(self.first + retry_state.attempt_number - 1)


def make_retrying(
    policy: RetryPolicy,
    *,
    classify: Callable[[BaseException], str],
    prior_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
    before_sleep: Callable[[RetryCallState], Awaitable[None] | None],
    rng: random.Random | None = None,
) -> AsyncRetrying:
    """A tenacity controller for the attempts a node has left (attempts continue on resume)."""
    remaining = max(1, policy.max_attempts - prior_attempts)
    retry_on = frozenset(policy.on)

    def retryable(exc: BaseException) -> bool:
        # tenacity's attempt context catches BaseException: a cancelled attempt (the run is
        # stopping) must end the node, never be retried, whatever `on` names.
        return not isinstance(exc, asyncio.CancelledError) and classify(exc) in retry_on
    return AsyncRetrying(
        stop=stop_after_attempt(remaining),
        wait=backoff_wait(policy.backoff, rng, first=prior_attempts + 1),
        retry=retry_if_exception(retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
