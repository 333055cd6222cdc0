"""The in-process backend on its own: ids, bounded history, TTL, delivery order."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flask_sse_sessions import _events
from flask_sse_sessions._events import Event, next_event_id, parse_event_id
from flask_sse_sessions._memory import MemoryBackend


class Clock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Bus:
    """A ``deliver`` that records what it is given and reaches ``reached`` connections."""

    def __init__(self, reached: int = 0) -> None:
        self.delivered: list[tuple[str, Event]] = []
        self.reached = reached

    def __call__(self, session_id: str, event: Event) -> int:
        self.delivered.append((session_id, event))
        return self.reached


def make(size: int = 100, ttl: float = 60.0) -> tuple[MemoryBackend, Bus, Clock]:
    bus, clock = Bus(), Clock()
    return MemoryBackend(bus, size, ttl, clock=clock), bus, clock


def publish(backend: MemoryBackend, session_id: str, count: int = 1) -> list[Event]:
    """Publish ``count`` events; return them."""
    events = []
    for index in range(count):
        backend.publish(session_id, "progress", f'{{"type":"progress","n":{index}}}')
        latest = backend.latest(session_id)
        assert latest is not None
        events.append(latest)
    return events


@pytest.fixture
def frozen_ms(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the wall clock the ids are made from, in milliseconds."""

    class WallClock:
        ms = 1_732_000_000_000

        def time_ns(self) -> int:
            return self.ms * 1_000_000

    wall = WallClock()
    monkeypatch.setattr(_events, "time", wall)
    return wall


def test_ids_are_milliseconds_dash_sequence_and_only_grow() -> None:
    backend, bus, _ = make(size=1000)
    publish(backend, "s", 500)
    keys = [event.key for _, event in bus.delivered]
    assert keys == sorted(set(keys))  # strictly growing
    for _, event in bus.delivered:
        assert parse_event_id(event.id) == event.key
        assert event.id == f"{event.key[0]}-{event.key[1]}"


def test_within_one_millisecond_the_sequence_counts(frozen_ms: Any) -> None:
    backend, bus, _ = make()
    publish(backend, "s", 3)
    frozen_ms.ms += 1
    publish(backend, "s", 1)
    frozen_ms.ms -= 10  # the wall clock steps back: the ids must not
    publish(backend, "s", 2)
    ms = frozen_ms.ms + 9
    assert [e.id for _, e in bus.delivered] == [
        f"{ms}-0", f"{ms}-1", f"{ms}-2", f"{ms + 1}-0", f"{ms + 1}-1", f"{ms + 1}-2"
    ]  # fmt: skip


def test_ids_grow_across_sessions_too(frozen_ms: Any) -> None:
    backend, bus, _ = make()
    publish(backend, "a", 2)
    publish(backend, "b", 1)
    assert [(sid, e.id) for sid, e in bus.delivered] == [
        ("a", f"{frozen_ms.ms}-0"), ("a", f"{frozen_ms.ms}-1"), ("b", f"{frozen_ms.ms}-2")
    ]  # fmt: skip


def test_next_event_id_starts_at_the_clock_and_never_goes_back() -> None:
    assert next_event_id(None, now_ms=5) == (5, 0)
    assert next_event_id((5, 0), now_ms=6) == (6, 0)
    assert next_event_id((5, 0), now_ms=5) == (5, 1)
    assert next_event_id((5, 7), now_ms=3) == (5, 8)


def test_publish_delivers_each_event_once_and_returns_what_deliver_reached() -> None:
    bus, clock = Bus(reached=3), Clock()
    backend = MemoryBackend(bus, 10, 60, clock=clock)
    assert backend.publish("s", "progress", '{"type":"progress"}') == 3
    ((session_id, event),) = bus.delivered
    assert session_id == "s"
    assert event.type == "progress"
    assert event.json == '{"type":"progress"}'
    assert event.frame == f'id: {event.id}\ndata: {{"type":"progress"}}\n\n'.encode()
    latest = backend.latest("s")
    assert latest is not None and latest.record == event.record


def test_history_keeps_the_newest_size_events() -> None:
    backend, bus, _ = make(size=5)
    publish(backend, "s", 12)
    events = [e for _, e in bus.delivered]
    assert backend.history("s", None) == events[-5:]
    latest = backend.latest("s")
    assert latest is not None and latest.record == events[-1].record


def test_history_after_an_id_is_what_follows_it() -> None:
    backend, bus, _ = make(size=5)
    publish(backend, "s", 12)
    events = [e for _, e in bus.delivered]
    assert backend.history("s", events[-5].key) == events[-4:]
    assert backend.history("s", events[-2].key) == events[-1:]
    assert backend.history("s", events[-1].key) == []


def test_history_after_an_id_no_longer_stored_is_none() -> None:
    backend, bus, _ = make(size=5)
    publish(backend, "s", 12)
    events = [e for _, e in bus.delivered]
    assert backend.history("s", events[0].key) is None  # evicted long ago
    assert backend.history("s", events[-7].key) is None  # two before the oldest stored
    newer = (events[-1].key[0] + 1, 0)
    assert backend.history("s", newer) is None  # never issued
    between = (events[-3].key[0], events[-3].key[1] + 1000)
    assert backend.history("s", between) is None


def test_history_after_the_event_just_before_the_oldest_stored_is_all_of_it() -> None:
    # Nothing after it was pushed out: no reason to reset a client that has it.
    backend, bus, _ = make(size=5)
    publish(backend, "s", 12)
    events = [e for _, e in bus.delivered]
    assert backend.history("s", events[-6].key) == events[-5:]


def test_a_session_without_history() -> None:
    backend, _, _ = make()
    assert backend.latest("nobody") is None
    assert backend.history("nobody", None) == []
    assert backend.history("nobody", (1, 0)) is None


def test_history_expires_ttl_after_the_last_event() -> None:
    backend, _, clock = make(size=5, ttl=10)
    (first,) = publish(backend, "s", 1)
    clock.now += 8
    (second,) = publish(backend, "s", 1)
    clock.now += 9.9  # 17.9 s after the first event, 9.9 s after the last
    assert backend.latest("s") == second
    assert backend.history("s", first.key) == [second]
    clock.now += 0.1
    assert backend.latest("s") is None
    assert backend.history("s", None) == []
    assert backend.history("s", first.key) is None


def test_a_session_starts_over_after_it_expired_with_greater_ids(frozen_ms: Any) -> None:
    backend, _, clock = make(ttl=10)
    (old,) = publish(backend, "s", 1)
    clock.now += 11
    frozen_ms.ms -= 60_000  # and the wall clock stepped back a minute
    (new,) = publish(backend, "s", 1)
    assert backend.history("s", None) == [new]
    assert backend.history("s", old.key) is None
    assert new.key > old.key


def test_expired_sessions_leave_the_store_and_the_stats() -> None:
    backend, _, clock = make(ttl=10)
    publish(backend, "a", 1)
    clock.now += 5
    publish(backend, "b", 1)
    assert backend.stats()["stored_sessions"] == 2
    clock.now += 5
    assert backend.stats()["stored_sessions"] == 1
    clock.now += 5
    assert backend.stats()["stored_sessions"] == 0


def test_a_hundred_thousand_sessions_stay_bounded() -> None:
    size = 3
    backend, _, clock = make(size=size, ttl=30)
    for index in range(100_000):
        session_id = f"s{index}"
        backend.publish(session_id, "progress", "{}")
        if index % 1000 == 0:
            for _ in range(2 * size):
                backend.publish(session_id, "progress", "{}")
        clock.now += 0.0001  # 10 s for all of them
    sessions = backend._sessions
    assert len(sessions) == 100_000
    assert max(len(history.events) for history in sessions.values()) == size
    clock.now += 25  # the first half has expired, the second half not yet
    backend.publish("late", "progress", "{}")
    assert 40_000 < len(sessions) < 60_000
    clock.now += 30
    assert backend.stats()["stored_sessions"] == 0
    assert not sessions


def test_threads_publishing_at_once_deliver_each_session_in_id_order() -> None:
    backend, bus, _ = make(size=10_000)

    def work() -> None:
        for index in range(500):
            backend.publish(f"s{index % 3}", "progress", "{}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for offset in range(3):
        session_id = f"s{offset}"
        keys = [e.key for sid, e in bus.delivered if sid == session_id]
        assert len(keys) == 4 * len(range(offset, 500, 3))
        assert keys == sorted(set(keys))
        assert [e.key for e in backend.history(session_id, None) or []] == keys


def test_the_oldest_activity_is_evicted_beyond_max_sessions() -> None:
    bus, clock = Bus(), Clock()
    backend = MemoryBackend(bus, 10, 60, max_sessions=3, clock=clock)
    (a,) = publish(backend, "a")
    publish(backend, "b")
    publish(backend, "c")
    publish(backend, "a")  # a is now the most recently active
    publish(backend, "d")  # evicts b, the oldest activity
    assert backend.latest("b") is None
    assert [backend.latest(s) is not None for s in "acd"] == [True, True, True]
    assert backend.stats() == {"stored_sessions": 3, "evicted_sessions": 1}
    publish(backend, "e")  # evicts c
    assert backend.latest("c") is None
    # A client of an evicted session is told it missed something.
    assert backend.history("b", a.key) is None


def test_200000_new_sessions_stay_within_the_default_cap(apps: Any) -> None:
    from flask_sse_sessions import broadcast_progress, stats

    app = apps()
    with app.app_context():
        broadcast_progress("kept", n=0)
        for index in range(200_000):
            broadcast_progress(f"s{index}", n=index)
            if index in (50_000, 140_000):
                # Active again before 100,000 newer sessions push it out.
                broadcast_progress("kept", n=index)
        numbers = stats()
        backend = app.extensions["sse_sessions"].backend
        assert numbers["stored_sessions"] == 100_000
        assert numbers["evicted_sessions"] == 100_001
        assert backend.latest("s0") is None
        assert backend.latest("s199999") is not None
        kept = backend.latest("kept")
        assert kept is not None and '"n":140000' in kept.json


def test_stored_history_is_not_tracked_by_the_garbage_collector() -> None:
    """A full history of every session must cost nothing in gc's collections:
    the collector's passes over its young generations untrack every record
    before it could reach the old one."""
    import gc

    backend, _, _ = make(size=5)
    gc.collect()
    gc.disable()  # only the passes below, none in between
    try:
        for _ in range(8):
            backend.publish("s", "progress", '{"type":"progress"}')
        gc.collect(0)
        gc.collect(1)
    finally:
        gc.enable()
    records = list(backend._sessions["s"].events)
    assert len(records) == 5
    assert not any(gc.is_tracked(record) for record in records)
