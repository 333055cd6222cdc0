"""What every server under test shares, so that all do the same work and report alike.

Nothing here imports gevent: the sse-starlette app runs in a virtual environment of
its own (asyncio, no gevent) and uses it too.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

# How long the load greenlet or task sleeps between two ticks of ``POST /load``.
LOAD_TICK = 0.0005


def timestamp() -> str:
    """Now, as ISO 8601 in UTC with milliseconds, as ours writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: object) -> str:
    """Compact JSON, as ours encodes its events."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def connected_json(session_id: str) -> str:
    """The data of the first frame of every stream (after ``retry: 3000``)."""
    return dumps({"type": "connected", "sessionId": session_id, "timestamp": timestamp()})


def heartbeat_json() -> str:
    """The data of a heartbeat frame."""
    return dumps({"type": "heartbeat", "timestamp": timestamp()})


def progress(data: dict[str, Any]) -> dict[str, Any]:
    """One broadcast's payload: ``"s0"`` is the send time, taken now, just before the
    fan-out; the load client measures latency from it."""
    return {"type": "progress", **data, "s0": time.time(), "timestamp": timestamp()}


class EventIds:
    """Event ids as ours gives them: ``<milliseconds>-<sequence>``, rising per session."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, int]] = {}

    def next(self, session_id: str) -> str:
        now_ms = int(time.time() * 1000)
        last = self.last.get(session_id)
        key = (now_ms, 0) if last is None or now_ms > last[0] else (last[0], last[1] + 1)
        self.last[session_id] = key
        return f"{key[0]}-{key[1]}"


def load_ticks(body: dict[str, Any]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The steady load of ``POST /load``: ``body["rate"]`` events a second for
    ``body["seconds"]``, to sessions drawn (seeded) from ``body["sessions"]``.

    Yields, at each tick, the ``(session_id, data)`` now due; the caller sends them
    and sleeps :data:`LOAD_TICK` (its own way: gevent or asyncio) before the next.
    """
    sessions: list[str] = body["sessions"]
    rate: float = body["rate"]
    seconds: float = body["seconds"]
    rng = random.Random(body.get("seed", 0))
    data = body.get("data") or {}
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = []
        while sent < int(elapsed * rate):
            due.append((rng.choice(sessions), {**data, "n": sent}))
            sent += 1
        yield due
    yield [(rng.choice(sessions), {**data, "n": n}) for n in range(sent, int(seconds * rate))]


def publish_all(
    send: Callable[[str, dict[str, Any]], int], session_ids: list[str], body: dict[str, Any]
) -> list[int]:
    """The body of ``POST /publish/<sid>`` and ``POST /publish-many``: ``body["count"]``
    events (default 1) to each session, ``body["data"]`` with ``"n"``, each ``send``-ed."""
    data = body.get("data") or {}
    return [
        send(session_id, {**data, "n": index})
        for session_id in session_ids
        for index in range(body.get("count", 1))
    ]


def run_load(
    body: dict[str, Any],
    send: Callable[[str, dict[str, Any]], object],
    sleep: Callable[[float], object],
) -> None:
    """:func:`load_ticks` for a gevent server: ``send`` each event, ``sleep`` between ticks."""
    for due in load_ticks(body):
        for session_id, data in due:
            send(session_id, data)
        sleep(LOAD_TICK)


def rss_kib() -> int:
    """This process's resident memory, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
