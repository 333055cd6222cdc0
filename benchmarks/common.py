"""What the floor and ours share, so that both do the same work and report alike."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import gevent


def run_load(body: dict[str, Any], send: Callable[[str, dict[str, Any]], object]) -> None:
    """Call ``send(session_id, data)`` ``body["rate"]`` times a second for
    ``body["seconds"]``, to sessions drawn (seeded) from ``body["sessions"]``,
    yielding to the streams between ticks."""
    sessions: list[str] = body["sessions"]
    rate: float = body["rate"]
    seconds: float = body["seconds"]
    rng = random.Random(body.get("seed", 0))
    data = body.get("data") or {}
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            send(rng.choice(sessions), {**data, "n": sent})
            sent += 1
        gevent.sleep(0.0005)
    while sent < int(seconds * rate):  # the last tick's share
        send(rng.choice(sessions), {**data, "n": sent})
        sent += 1


def rss_kib() -> int:
    """This process's resident memory, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
