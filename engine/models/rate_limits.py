"""Per-model rate limits: concurrency, and requests/tokens per minute over a sliding window."""

from __future__ import annotations

import asyncio
import time

from engine.config import ModelSettings


class RateLimiter:
    """Per-model concurrency and requests/tokens per minute (a sliding one-minute window)."""

    def __init__(self, settings: ModelSettings):
        self.semaphore = (
            asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None
        )
        self.rpm = settings.rpm
        self.tpm = settings.tpm
        self.window: list[tuple[float, int]] = []
        self.lock = asyncio.Lock()

    async def admit(self, tokens: int) -> None:
        """Wait until one more request of `tokens` tokens fits this minute's limits."""
        if not self.rpm and not self.tpm:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.window = [(t, n) for t, n in self.window if now - t < 60]
                requests_ok = not self.rpm or len(self.window) < self.rpm
                # A single request larger than the whole tpm is let through alone rather
                # than waiting forever.
                tokens_ok = (
                    not self.tpm
                    or sum(n for _, n in self.window) + tokens <= self.tpm
                    or not self.window
                )
                if requests_ok and tokens_ok:
                    self.window.append((now, tokens))
                    return
                await asyncio.sleep(max(0.05, 60 - (now - self.window[0][0])))
