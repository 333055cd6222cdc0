"""The counters of one app in this process: plain integers, for stats() and metrics.

They are bumped where things happen (a connection opens or is refused, a
stream writes) at the cost of an integer addition; nothing here locks or
allocates. :mod:`flask_sse_sessions.metrics` copies them into
``prometheus_client`` off the hot path. Under gevent every update is atomic;
under a threaded server two threads bumping the same counter at once may
rarely lose one.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

REFUSAL_REASONS = ("process", "session", "user", "unauthorized", "forbidden", "draining")
"""Why a stream request was refused: a connection limit (429), a missing or bad
token (401), the authorize hook (403), or a worker that is shutting down (503)."""

LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
"""Upper bounds (milliseconds) of the publish-to-write histogram; one more
bucket holds everything slower."""


_bucket = bisect.bisect_left
_time_ns = time.time_ns


class Counters:
    """What happened to the streams of one app in this process since it started."""

    __slots__ = (
        "closed",
        "delivered",
        "direct_writes",
        "latency_buckets",
        "latency_sum_ms",
        "opened",
        "refused",
    )

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.delivered = 0
        # Chunks of events a broadcast wrote to an idle stream's socket itself.
        self.direct_writes = 0
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)
        # Not cumulative: latency_buckets[i] counts writes in bucket i alone.
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum_ms = 0.0

    def wrote(self, events: int, published_ms: int, *, writes: int = 1) -> None:
        """A stream wrote ``events`` live events, the oldest published at
        ``published_ms`` (epoch milliseconds, from its id); ``writes``: so
        many streams wrote the same events at once."""
        self.delivered += events * writes
        waited = _time_ns() // 1_000_000 - published_ms
        if waited < 0:
            waited = 0  # an id from another host's clock
        self.latency_buckets[_bucket(LATENCY_BUCKETS_MS, waited)] += writes
        self.latency_sum_ms += waited * writes

    def as_stats(self) -> dict[str, Any]:
        """The counters as :func:`~flask_sse_sessions.stats` shows them."""
        writes = sum(self.latency_buckets)
        return {
            "connections_opened": self.opened,
            "connections_closed": self.closed,
            "events_delivered": self.delivered,
            "direct_writes": self.direct_writes,
            "refused": dict(self.refused),
            "publish_to_write": {
                "writes": writes,
                "mean_ms": round(self.latency_sum_ms / writes, 3) if writes else None,
            },
        }
