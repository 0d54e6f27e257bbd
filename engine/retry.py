"""Retry policy as data, turned into tenacity's strategies in this one adapter.

Contract: `RetryPolicy` (engine.spec) says how many attempts a node gets in all, which error
classes are retried and the backoff. `RetryDecider` answers, after an attempt failed, whether
another one follows and after how long, through tenacity's own `stop`, `retry` and `wait`
strategies: every node's attempts go through it, a node with a single attempt too (its stop
strategy says stop). `backoff_wait` is exponential with a relative jitter (`jitter: 0.1` is
+/-10% of the delay), its generator injected so tests fix it; the attempt path
(`engine.attempt`) sleeps through an injected `sleep`, so tests record delays instead of waiting.

Why not tenacity's `AsyncRetrying` controller around the attempts: it costs 70-90 us per
node even when the first attempt succeeds (measured, see benchmarks/NOTES.md "## Executor"),
three times what a whole node costs; the strategies cost nothing until an attempt fails.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

if TYPE_CHECKING:
    from collections.abc import Callable

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


class RetryDecider:
    """A node's retry policy as tenacity strategies, for the attempts it has left (attempts
    continue on resume: `prior_attempts` were made before)."""

    __slots__ = ("_retry", "_stop", "_wait", "prior")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        classify: Callable[[BaseException], str],
        prior_attempts: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        retry_on = frozenset(policy.on)

        def retryable(exc: BaseException) -> bool:
            # A cancelled attempt (the run is stopping) ends the node, whatever `on` names.
            return not isinstance(exc, asyncio.CancelledError) and classify(exc) in retry_on

        self.prior = prior_attempts
        self._stop = stop_after_attempt(max(1, policy.max_attempts - prior_attempts))
        self._retry = retry_if_exception(retryable)
        self._wait = backoff_wait(policy.backoff, rng, first=prior_attempts + 1)

    def delay_after(self, exc: BaseException, attempt: int) -> float | None:
        """After the node's `attempt`-th attempt (counting the prior ones) failed with `exc`:
        the delay before the next attempt, or None when there is none."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # strategies only
        state.attempt_number = attempt - self.prior
        state.set_exception((type(exc), exc, None))
        if not self._retry(state) or self._stop(state):
            return None
        return self._wait(state)
