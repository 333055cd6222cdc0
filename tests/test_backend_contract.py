"""The backend contract: the same cases against the in-process backend and Redis.

The stream code relies on exactly this, whichever backend it has: ids that only
grow and look like Redis stream ids, each event naming the one before it,
bounded history, ``None`` when history after an id is no longer complete,
expiry, and delivery of subscribed sessions in id order. The cases at the end
are Redis's own: an idempotent publish, and ids that keep growing when the
server's clock is behind them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flask_sse_sessions._backend import Backend
from flask_sse_sessions._events import Event, parse_event_id
from flask_sse_sessions._memory import MemoryBackend
from flask_sse_sessions._redis import RedisBackend
from tests.appstream import wait_until
from tests.redisproc import RedisProcess

SIZE = 5


class Harness:
    """A backend, what it delivered, and a way to let its histories expire."""

    def __init__(self, kind: str, redis: RedisProcess | None) -> None:
        self.kind = kind
        self.delivered: list[tuple[str, Event]] = []
        self.redis = redis
        self.now = 1000.0
        self.backend: Backend
        if redis is None:
            self.backend = MemoryBackend(self.deliver, SIZE, 10.0, clock=lambda: self.now)
        else:
            self.backend = RedisBackend(
                self.deliver,
                lambda session_id: None,
                redis.url,
                {},
                key_prefix="contract",
                history_size=SIZE,
                history_ttl=0.5,
            )

    def deliver(self, session_id: str, event: Event) -> int:
        self.delivered.append((session_id, event))
        return 1

    def publish(self, session_id: str, count: int = 1, type: str = "progress") -> list[Event]:
        """Publish ``count`` events; return them as the backend stored them."""
        events = []
        for index in range(count):
            self.backend.publish(session_id, type, f'{{"type":"{type}","n":{index}}}')
            latest = self.backend.latest(session_id)
            assert latest is not None
            events.append(latest)
        return events

    def expire(self, session_id: str) -> None:
        """Let the session's history expire: its TTL passes."""
        if self.redis is None:
            self.now += 10.0
        else:
            wait_until(lambda: self.backend.latest(session_id) is None, what="expiry")


@pytest.fixture(params=["memory", "redis"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    harness = Harness(request.param, redis)
    yield harness
    harness.backend.close()


@pytest.fixture
def redis_harness(redis_server: RedisProcess) -> Iterator[Harness]:
    harness = Harness("redis", redis_server)
    yield harness
    harness.backend.close()


def same(events: list[Event] | None) -> list[tuple[Any, ...]] | None:
    """Events as comparable tuples (each backend makes its own Event objects)."""
    if events is None:
        return None
    return [(e.id, e.type, e.json, e.prev) for e in events]


def test_ids_look_like_stream_ids_and_only_grow(harness: Harness) -> None:
    events = harness.publish("s", 50)
    keys = [event.key for event in events]
    assert keys == sorted(set(keys))
    for event in events:
        assert re.fullmatch(r"\d{13}-\d+", event.id)
        assert parse_event_id(event.id) == event.key


def test_each_event_names_the_one_before(harness: Harness) -> None:
    events = harness.publish("s", 8)
    assert events[0].prev is None
    assert [event.prev for event in events[1:]] == [event.key for event in events[:-1]]


def test_history_keeps_the_newest_size_events(harness: Harness) -> None:
    events = harness.publish("s", 12)
    assert same(harness.backend.history("s", None)) == same(events[-SIZE:])
    assert same([harness.backend.latest("s")]) == same(events[-1:])  # type: ignore[list-item]


def test_history_after_an_id_is_what_follows_it(harness: Harness) -> None:
    events = harness.publish("s", 12)
    backend = harness.backend
    assert same(backend.history("s", events[-5].key)) == same(events[-4:])
    assert same(backend.history("s", events[-2].key)) == same(events[-1:])
    assert backend.history("s", events[-1].key) == []


def test_history_after_the_event_just_before_the_oldest_stored_is_all_of_it(
    harness: Harness,
) -> None:
    events = harness.publish("s", 12)
    assert same(harness.backend.history("s", events[-SIZE - 1].key)) == same(events[-SIZE:])


def test_history_after_an_id_no_longer_stored_is_none(harness: Harness) -> None:
    events = harness.publish("s", 12)
    backend = harness.backend
    assert backend.history("s", events[0].key) is None  # trimmed long ago
    assert backend.history("s", events[-SIZE - 2].key) is None  # two before the oldest
    assert backend.history("s", (events[-1].key[0] + 1, 0)) is None  # never issued
    between = (events[-3].key[0], events[-3].key[1] + 1000)
    assert backend.history("s", between) is None


def test_a_session_without_history(harness: Harness) -> None:
    backend = harness.backend
    assert backend.latest("nobody") is None
    assert backend.history("nobody", None) == []
    assert backend.history("nobody", (1, 0)) is None


def test_sessions_keep_their_own_events(harness: Harness) -> None:
    a = harness.publish("a", 3)
    b = harness.publish("b", 2)
    assert same(harness.backend.history("a", None)) == same(a)
    assert same(harness.backend.history("b", None)) == same(b)
    assert b[0].prev is None


def test_the_latest_event_says_whether_the_session_is_over(harness: Harness) -> None:
    (progress,) = harness.publish("s", 1)
    assert not progress.terminal
    (complete,) = harness.publish("s", 1, type="complete")
    latest = harness.backend.latest("s")
    assert latest is not None and latest.terminal
    assert (latest.id, latest.type, latest.prev) == (complete.id, "complete", progress.key)
    assert same(harness.backend.history("s", progress.key)) == same([complete])


def test_history_expires_and_ids_keep_growing_after_it(harness: Harness) -> None:
    first, last = harness.publish("s", 2)
    harness.expire("s")
    backend = harness.backend
    assert backend.latest("s") is None
    assert backend.history("s", None) == []
    assert backend.history("s", first.key) is None
    assert backend.history("s", last.key) is None
    (again,) = harness.publish("s", 1)
    assert again.key > last.key
    assert same(backend.history("s", None)) == same([again])
    # Redis remembers the last id past the stream's expiry, and so that
    # nothing came between; the in-process backend forgets the session.
    expected = [again] if again.prev == last.key else None
    assert same(backend.history("s", last.key)) == same(expected)
    assert harness.kind == "memory" or again.prev == last.key


def test_a_subscribed_session_is_delivered_once_in_id_order(harness: Harness) -> None:
    backend = harness.backend
    backend.subscribe("s")
    try:
        events = harness.publish("s", 20)
        harness.publish("other", 3)
        wait_until(lambda: len(harness.delivered) >= 20, what="20 deliveries")
        mine = [event for session_id, event in harness.delivered if session_id == "s"]
        assert same(mine) == same(events)
    finally:
        backend.unsubscribe("s")


# Redis's own cases.


def test_a_retried_publish_is_stored_and_published_once(redis_harness: Harness) -> None:
    """redis-py sends a command again after a timeout: the second run of the
    script, with the first one's token, must neither add nor publish."""
    store = redis_harness.backend.store  # type: ignore[attr-defined]
    client, script = store._connection()
    subscriber = client.pubsub()
    subscriber.subscribe(store.channel("s"))
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    keys = store.script_keys("s")
    args = ["token-1", "progress", '{"type":"progress"}', SIZE, 60_000, 600_000, store.channel("s")]
    args += [64, 60_000]
    first = script(keys=keys, args=args, client=client)
    again = script(keys=keys, args=args, client=client)
    assert again == first
    assert client.xlen(store.stream_key("s")) == 1
    assert subscriber.get_message(timeout=5)["type"] == "message"
    client.publish(store.channel("s"), b"marker")  # whatever came second would be here
    assert subscriber.get_message(timeout=5)["data"] == b"marker"
    other = script(keys=keys, args=["token-2", *args[1:]], client=client)
    assert other[0] != first[0]
    assert client.xlen(store.stream_key("s")) == 2
    subscriber.close()


def test_a_retry_after_other_publishes_to_the_session_is_still_stored_once(
    redis_harness: Harness,
) -> None:
    """While Redis stalls, publishes of other processes to the session can run
    between a publish and its retry: the retry must still find its first run."""
    store = redis_harness.backend.store  # type: ignore[attr-defined]
    client, script = store._connection()
    keys = store.script_keys("s")
    rest = [
        "progress",
        '{"type":"progress"}',
        SIZE,
        60_000,
        600_000,
        store.channel("s"),
        64,
        60_000,
    ]
    first = script(keys=keys, args=["retried", *rest], client=client)
    for n in range(63):  # others, up to what the session remembers
        script(keys=keys, args=[f"other-{n}", *rest], client=client)
    assert script(keys=keys, args=["retried", *rest], client=client) == first
    assert client.xlen(store.stream_key("s")) == min(SIZE, 64)
    assert 0 < client.pttl(store.sent_key("s")) <= 60_000


def test_ids_keep_growing_when_the_redis_clock_is_behind_them(redis_harness: Harness) -> None:
    store = redis_harness.backend.store  # type: ignore[attr-defined]
    client = store.client()
    future_ms = int(time.time() * 1000) + 3_600_000
    client.hset(store.meta_key("s"), "last", f"{future_ms}-7")
    (event,) = redis_harness.publish("s", 1)
    assert event.key == (future_ms, 8)
    assert event.prev == (future_ms, 7)


def test_ids_go_on_from_the_stream_when_its_meta_was_lost(redis_harness: Harness) -> None:
    events = redis_harness.publish("s", 3)
    store = redis_harness.backend.store  # type: ignore[attr-defined]
    client = store.client()
    future_ms = int(time.time() * 1000) + 3_600_000
    client.xadd(store.stream_key("s"), {"p": events[-1].id, "t": "x", "d": "{}"}, f"{future_ms}-0")
    client.delete(store.meta_key("s"))
    (event,) = redis_harness.publish("s", 1)
    assert event.key == (future_ms, 1)


def test_every_key_of_a_session_shares_its_hash_tag(redis_harness: Harness) -> None:
    redis_harness.publish("job-1", 2)
    store = redis_harness.backend.store  # type: ignore[attr-defined]
    keys = sorted(key.decode() for key in store.client().keys("contract:*"))
    assert keys == ["contract:{job-1}:events", "contract:{job-1}:meta", "contract:{job-1}:sent"]
    assert store.channel("job-1") == "contract:{job-1}"
    # Redis Cluster hashes only what is inside the first braces.
    for name in [*keys, store.channel("job-1")]:
        assert re.match(r"[^{]*\{job-1\}", name)
