"""The publisher of W5: a process of its own that publishes to ours through Redis.

    python -m benchmarks.redis_publisher steady URL PREFIX SESSIONS --rate R --seconds S
    python -m benchmarks.redis_publisher each URL PREFIX SESSIONS
    python -m benchmarks.redis_publisher raw URL PREFIX SESSIONS --events N

Sessions are ``<PREFIX><i>`` for ``i < SESSIONS``. Every event carries ``"s0"``,
this process's ``time.time()`` just before it is published (the load client
reads it, as for the app's own broadcasts).

``steady``
    :class:`~flask_sse_sessions.Publisher` at a steady rate to random sessions
    (seeded), as a Celery or RQ worker would: the Lua script stores the event
    and publishes it.
``each``
    One event through :class:`Publisher` to each session, once.
``raw``
    ``N`` events in all, round-robin over the sessions, as the messages the
    publish script sends (``prev``, id, type and JSON, each session's ids in a
    chain), with pipelined ``PUBLISH`` and nothing stored: faster than any
    worker reads them, to measure what one worker takes in from its listener.

Prints one JSON line: ``{"sent": ..., "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from .run import PAYLOAD

NAME = "sse-bench-publisher"  # its connections' name in CLIENT LIST


def steady(url: str, sessions: list[str], rate: float, seconds: float, seed: int) -> int:
    from flask_sse_sessions import Publisher

    publisher = Publisher(url, client_name=NAME)
    publisher.broadcast_progress(sessions[0] + "-warmup")  # loads the script, opens the pool
    rng = random.Random(seed)
    start = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            publisher.broadcast_progress(
                rng.choice(sessions), {**PAYLOAD, "n": sent, "s0": time.time()}
            )
            sent += 1
        time.sleep(0.0005)
    return sent


def each(url: str, sessions: list[str]) -> int:
    from flask_sse_sessions import Publisher

    publisher = Publisher(url, client_name=NAME)
    for n, session_id in enumerate(sessions):
        publisher.broadcast_progress(session_id, {**PAYLOAD, "n": n, "s0": time.time()})
    return len(sessions)


def raw(url: str, sessions: list[str], events: int, key_prefix: str = "sse_sessions") -> int:
    import redis

    client = redis.Redis.from_url(url, protocol=2, client_name=NAME)
    counts = dict.fromkeys(sessions, 0)
    batch = 1000
    sent = 0
    while sent < events:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(batch, events - sent)):
            session_id = sessions[sent % len(sessions)]
            k = counts[session_id] = counts[session_id] + 1
            prev = f"{k - 1}-0" if k > 1 else ""
            data = {"type": "progress", **PAYLOAD, "n": sent, "s0": time.time()}
            text = json.dumps({**data, "timestamp": "2026-01-01T00:00:00Z"}, separators=(",", ":"))
            channel = f"{key_prefix}:{{{session_id}}}"
            pipe.publish(channel, f"{prev}\n{k}-0\nprogress\n{text}")
            sent += 1
        pipe.execute()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("steady", "each", "raw"))
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("sessions", type=int)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    sessions = [f"{args.prefix}{i}" for i in range(args.sessions)]
    start = time.monotonic()
    if args.mode == "steady":
        sent = steady(args.url, sessions, args.rate, args.seconds, args.seed)
    elif args.mode == "each":
        sent = each(args.url, sessions)
    else:
        sent = raw(args.url, sessions, args.events)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
