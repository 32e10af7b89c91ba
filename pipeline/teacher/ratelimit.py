"""Requests-per-minute and tokens-per-minute pacing for the live teacher (one event loop).

Each ``acquire`` reserves the next free slot of both budgets and sleeps until it: requests are
spaced evenly (no burst), so a limit set a little under the account's limit avoids 429s instead of
relying on retries. Tokens are counted as the endpoint counts them up front: the prompt plus
``max_tokens`` per sample.
"""
from __future__ import annotations

import asyncio
import time
from typing import Optional


class RateLimiter:
    def __init__(self, requests_per_minute: Optional[int] = None, tokens_per_minute: Optional[int] = None,
                 clock=time.monotonic):
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._clock = clock
        self._next_request = 0.0
        self._next_tokens = 0.0

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def reserve(self, tokens: int) -> float:
        """Reserve a slot for one request of ``tokens``; returns the seconds to wait before sending."""
        now = self._clock()
        start = now
        if self.rpm:
            start = max(start, self._next_request)
        if self.tpm:
            start = max(start, self._next_tokens)
        if self.rpm:
            self._next_request = start + 60.0 / self.rpm
        if self.tpm:
            # a request larger than the per-minute budget still goes, alone, after a full minute
            self._next_tokens = start + 60.0 * min(tokens, self.tpm) / self.tpm
        return start - now

    async def acquire(self, tokens: int) -> None:
        if not self.active:
            return
        delay = self.reserve(tokens)  # no await between reading and updating the schedule
        if delay > 0:
            await asyncio.sleep(delay)
