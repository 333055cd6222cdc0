"""The Redis backend at work: listeners, subscriptions, failures and recovery.

Two apps in the test process share one ``redis-server`` and stand for two
workers: each has its own registry, backend and listener (a real thread here,
as under Flask's threaded server). Streams are read through Flask's test
client. The failures are real: the server killed, restarted, stopped with
SIGSTOP; the listener's connection killed by ``CLIENT KILL`` or made half-open
by a proxy. Every stream must end with every event once, in order.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_sse_sessions import (
    BackendUnavailable,
    Publisher,
    broadcast,
    broadcast_complete,
    broadcast_error,
    broadcast_progress,
    stats,
)
from flask_sse_sessions import _redis as redis_module
from flask_sse_sessions.signals import event_broadcast
from tests.appstream import StreamReader, make_app, wait_until
from tests.conftest import ROOT
from tests.redisproc import RedisProcess
from tests.tcpproxy import TcpProxy

Apps = Callable[..., Flask]

# The documented bound for a broadcast while Redis does not answer is 5 s;
# the tests allow for a loaded machine.
BOUND = 5.0 + 3.0


def on_redis(apps: Apps, url: str, **config: Any) -> Flask:
    return apps(SSE_SESSIONS_REDIS_URL=url, **config)


def publish(app: Flask, session_id: str, count: int, start: int = 0) -> list[int]:
    with app.app_context():
        return [broadcast_progress(session_id, n=n) for n in range(start, start + count)]


def app_stats(app: Flask) -> dict[str, Any]:
    with app.app_context():
        return stats()


def numbers(reader: StreamReader) -> list[int]:
    """The ``n`` of each broadcast event the stream received, in order."""
    return [event.json()["n"] for event in reader.broadcasts()]


def assert_once_in_order(reader: StreamReader, count: int) -> None:
    reader.wait_for(lambda r: len(numbers(r)) >= count, what=f"{count} events")
    assert numbers(reader) == list(range(count))
    keys = [tuple(map(int, event.id.split("-"))) for event in reader.broadcasts()]
    assert keys == sorted(set(keys))
    assert reader.types().count("connected") == 1  # one stream throughout
    assert reader.error is None


@pytest.fixture
def fast_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe an idle listener connection after 0.5 s, and give it 0.5 s to answer."""
    monkeypatch.setattr(redis_module, "_PROBE_INTERVAL", 0.5)
    monkeypatch.setattr(redis_module, "_PROBE_TIMEOUT", 0.5)


def test_a_broadcast_in_one_app_reaches_the_streams_of_another(
    redis_server: RedisProcess, apps: Apps
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)
    reader = StreamReader(b, "job")
    reader.wait_for(lambda r: "connected" in r.types())
    assert publish(a, "job", 2) == [1, 1]  # one worker (b's listener) received each
    assert Publisher(redis_server.url).broadcast_progress("job", n=2) == 1
    with a.app_context():
        broadcast_complete("job", n=3)
    reader.wait_for(lambda r: r.done, what="the end after complete")
    assert [event.json()["n"] for event in reader.broadcasts()] == [0, 1, 2, 3]
    ids = [event.id for event in reader.broadcasts()]

    # Resume and the terminal 204 work on the other app, from the shared history.
    again = StreamReader(a, "job", {"Last-Event-ID": ids[0]})
    again.wait_for(lambda r: r.done, what="the replay to end")
    assert [event.id for event in again.broadcasts()] == ids[1:]
    assert StreamReader(a, "job", {"Last-Event-ID": ids[-1]}).status == 204
    assert a.test_client().get("/api/stream/job/latest").get_json()["id"] == ids[-1]


def test_a_stream_reads_history_only_once_redis_confirmed_its_subscription(
    redis_server: RedisProcess, apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "_GRACE", 0.2)
    backend = on_redis(apps, redis_server.url).extensions["sse_sessions"].backend
    client = redis_server.client()
    channel = backend.store.channel("s")
    backend.subscribe("s")
    assert client.pubsub_numsub(channel) == [(channel.encode(), 1)]
    backend.subscribe("s")  # a second stream of the session: already there
    backend.unsubscribe("s")
    backend.unsubscribe("s")
    wait_until(lambda: client.pubsub_numsub(channel) == [(channel.encode(), 0)], what="UNSUBSCRIBE")
    assert backend.stats()["redis_channels"] == 0


def test_a_session_whose_stream_comes_back_within_the_grace_period_stays_subscribed(
    redis_server: RedisProcess, apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "_GRACE", 3.0)
    app = on_redis(apps, redis_server.url)
    client = redis_server.client()

    def unsubscribes() -> int:
        return int(client.info("commandstats").get("cmdstat_unsubscribe", {}).get("calls", 0))

    first = StreamReader(app, "s")
    first.wait_for(lambda r: "connected" in r.types())
    first.close()
    second = StreamReader(app, "s")  # a client reconnecting: within the grace period
    second.wait_for(lambda r: "connected" in r.types())
    publish(app, "s", 1)
    second.wait_broadcasts(1)
    assert unsubscribes() == 0
    second.close()
    wait_until(lambda: unsubscribes() == 1, what="the UNSUBSCRIBE after the grace period")
    assert app_stats(app)["redis_channels"] == 0


def test_a_burst_of_new_streams_waits_for_a_pooled_connection_rather_than_503(
    redis_server: RedisProcess, apps: Apps
) -> None:
    """New streams share the small pool with broadcasts. While all of it is
    busy (the clients of a dead worker reconnecting at once), a new stream
    waits for a connection longer than the pool's own timeout: Redis is fine."""
    options = {"max_connections": 1, "timeout": 0.05}
    app = on_redis(apps, redis_server.url, SSE_SESSIONS_REDIS_OPTIONS=options)
    pool = app.extensions["sse_sessions"].backend.store.client().connection_pool
    held = pool.get_connection()  # the whole pool, busy
    attempts: list[float] = []
    get_connection = pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append(time.monotonic())
        return get_connection(*args, **kwargs)

    pool.get_connection = counted
    released = threading.Event()

    def release_after_a_timed_out_wait() -> None:
        deadline = time.monotonic() + 30
        while len(attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        released.set()
        pool.release(held)

    threading.Thread(target=release_after_a_timed_out_wait, daemon=True).start()
    reader = StreamReader(app, "s")
    assert released.is_set() and len(attempts) >= 2, "no pooled connection was waited for twice"
    assert reader.status == 200, reader.body
    reader.wait_for(lambda r: "connected" in r.types())
    numbers_ = app_stats(app)
    assert (numbers_["redis_errors"], numbers_["redis_last_error"]) == (0, None)
    publish(app, "s", 1)
    assert_once_in_order(reader, 1)


def test_a_message_lost_on_the_way_is_read_from_history(
    redis_server: RedisProcess, apps: Apps
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)
    reader = StreamReader(b, "s")
    reader.wait_for(lambda r: "connected" in r.types())
    publish(a, "s", 1)
    reader.wait_broadcasts(1)
    # Store an event but publish it where nobody listens: its message is lost.
    store = a.extensions["sse_sessions"].backend.store
    client, script = store._connection()
    keys = store.script_keys("s")
    args = [
        "lost",
        "progress",
        '{"type":"progress","n":1}',
        100,
        60_000,
        600_000,
        "nowhere",
        64,
        60_000,
    ]
    script(keys=keys, args=args, client=client)
    publish(a, "s", 1, start=2)  # names the lost one as its previous event
    assert_once_in_order(reader, 3)


def test_the_listener_recovers_from_client_kill_and_streams_catch_up(
    redis_server: RedisProcess, apps: Apps
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)
    reader = StreamReader(b, "s")
    reader.wait_for(lambda r: "connected" in r.types())
    publish(a, "s", 2)
    reader.wait_broadcasts(2)
    client = redis_server.client()
    assert client.client_kill_filter(_type="pubsub") == 1  # b's listener, nothing else
    publish(a, "s", 3, start=2)  # before b's listener is back (it waits 50 ms at least)
    wait_until(lambda: app_stats(b)["redis_reconnects"] == 1, what="the reconnect")
    assert_once_in_order(reader, 5)  # caught up from history, with no later event to tell
    publish(a, "s", 2, start=5)
    assert_once_in_order(reader, 7)
    numbers_ = app_stats(b)
    assert numbers_["redis_connected"] is True
    assert numbers_["redis_channels"] == 1
    assert numbers_["redis_errors"] >= 1
    assert numbers_["redis_last_error"]


def test_redis_killed_and_restarted_with_aof_loses_nothing(
    redis_server: RedisProcess, apps: Apps, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)
    reader = StreamReader(b, "s")
    reader.wait_for(lambda r: "connected" in r.types())
    publish(a, "s", 3)
    reader.wait_broadcasts(3)
    first_id = reader.broadcasts()[0].id
    redis_server.kill()

    started = time.monotonic()
    with a.app_context(), pytest.raises(BackendUnavailable):
        broadcast_progress("s", n=99)
    assert time.monotonic() - started < BOUND
    with Flask(__name__).app_context(), pytest.raises(BackendUnavailable):
        Publisher(redis_server.url).broadcast("s", "progress", n=99)

    # A new stream is refused with 503, and the body names no host or port.
    refused = StreamReader(a, "other")
    assert refused.status == 503
    assert refused.response_headers["Retry-After"] == "3"
    body = refused.body.decode()
    assert json.loads(body)["error"] == "unavailable"
    for detail in ("127.0.0.1", str(redis_server.port), "redis://", "Error", "onnect"):
        assert detail not in body

    # The open stream waits with heartbeats, also through a failed catch-up.
    b.extensions["sse_sessions"].registry.catch_up("s")
    beats = reader.types().count("heartbeat")
    reader.wait_for(lambda r: r.types().count("heartbeat") >= beats + 3, what="heartbeats")
    wait_until(lambda: app_stats(b)["redis_listener"] == "reconnecting", what="the outage")
    assert any("lost its connection" in r.message for r in caplog.records)

    redis_server.start()
    publish(a, "s", 2, start=3)  # before b's listener is back, most likely
    wait_until(lambda: app_stats(b)["redis_connected"], what="the listener back")
    assert_once_in_order(reader, 5)
    publish(a, "s", 1, start=5)
    assert_once_in_order(reader, 6)
    resumed = StreamReader(a, "s", {"Last-Event-ID": first_id})
    resumed.wait_broadcasts(5)
    assert [event.json()["n"] for event in resumed.broadcasts()] == [1, 2, 3, 4, 5]
    resumed.close()
    lost = [r for r in caplog.records if "lost its connection" in r.message]
    assert len(lost) == 1  # logged once for the outage, not once per attempt


def test_redis_restarted_without_persistence_gives_reset_not_silence(
    redis_factory: Callable[..., RedisProcess], apps: Apps
) -> None:
    server = redis_factory(appendonly=False)
    a, b = on_redis(apps, server.url), on_redis(apps, server.url)
    reader = StreamReader(b, "s")
    reader.wait_for(lambda r: "connected" in r.types())
    publish(a, "s", 3)
    reader.wait_broadcasts(3)
    old = reader.broadcasts()[1].id
    server.restart()
    reader.wait_for(lambda r: "reset" in r.types(), what="reset")
    publish(a, "s", 1, start=3)
    reader.wait_for(lambda r: 3 in numbers(r), what="the event after the restart")
    assert [t for t in reader.types() if t != "heartbeat"] == [
        "connected", "progress", "progress", "progress", "reset", "progress"
    ]  # fmt: skip
    assert numbers(reader) == [0, 1, 2, 3]
    resumed = StreamReader(a, "s", {"Last-Event-ID": old})
    resumed.wait_for(lambda r: 3 in numbers(r))
    assert [t for t in resumed.types() if t != "heartbeat"] == ["connected", "reset", "progress"]
    resumed.close()


def test_a_stopped_redis_is_noticed_by_the_probe_and_streams_catch_up_after(
    redis_server: RedisProcess, apps: Apps, fast_probe: None
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)
    reader = StreamReader(b, "s")
    reader.wait_for(lambda r: "connected" in r.types())
    publish(a, "s", 1)
    reader.wait_broadcasts(1)
    redis_server.pause()
    try:
        started = time.monotonic()
        with a.app_context(), pytest.raises(BackendUnavailable):
            broadcast_progress("s", n=99)
        assert time.monotonic() - started < BOUND
        wait_until(lambda: app_stats(b)["redis_listener"] == "reconnecting", what="the probe")
        beats = reader.types().count("heartbeat")
        reader.wait_for(lambda r: r.types().count("heartbeat") >= beats + 2, what="heartbeats")
    finally:
        redis_server.resume()
    wait_until(lambda: app_stats(b)["redis_connected"], what="the listener back")
    publish(a, "s", 2, start=1)
    reader.wait_for(lambda r: 2 in numbers(r), what="the events after the pause")
    # The broadcast that timed out sat in Redis's socket buffer and ran when
    # it woke: a timeout cannot tell. If it ran, the stream has it once, in order.
    assert numbers(reader) in ([0, 1, 2], [0, 99, 1, 2])
    assert reader.types().count("connected") == 1


def test_a_half_open_listener_connection_is_noticed_by_its_probe(
    redis_server: RedisProcess, apps: Apps, fast_probe: None
) -> None:
    proxy = TcpProxy(redis_server.port)
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        a, b = on_redis(apps, redis_server.url), on_redis(apps, url)
        reader = StreamReader(b, "s")
        reader.wait_for(lambda r: "connected" in r.types())
        publish(a, "s", 1)
        reader.wait_broadcasts(1)
        assert proxy.freeze(lambda sent: b"SUBSCRIBE" in sent) == 1
        publish(a, "s", 3, start=1)  # Redis sends them; the listener never sees them
        wait_until(lambda: app_stats(b)["redis_reconnects"] == 1, what="the reconnect")
        assert "probe did not come back" in app_stats(b)["redis_last_error"]
        publish(a, "s", 1, start=4)
        assert_once_in_order(reader, 5)
    finally:
        proxy.close()


def test_a_listener_held_up_until_redis_cuts_it_catches_up(
    redis_factory: Callable[..., RedisProcess], apps: Apps
) -> None:
    """Redis drops a subscriber that reads too slowly (client-output-buffer-limit)."""
    server = redis_factory(options=("--client-output-buffer-limit", "pubsub 64kb 32kb 1"))
    a = on_redis(apps, server.url, SSE_SESSIONS_HISTORY_SIZE=20_000)
    b = on_redis(apps, server.url, SSE_SESSIONS_HISTORY_SIZE=20_000)
    held, release = threading.Event(), threading.Event()

    def slow(sender: Flask, **kwargs: Any) -> None:
        if not release.is_set():  # the listener's thread stops reading here
            held.set()
            release.wait(30)

    event_broadcast.connect(slow, sender=b, weak=False)
    try:
        reader = StreamReader(b, "s")
        reader.wait_for(lambda r: "connected" in r.types())
        channel = b.extensions["sse_sessions"].backend.store.channel("s")
        client = server.client()
        sent = 0
        with a.app_context():
            # Until Redis cuts the listener: the socket buffers of both ends
            # hold some megabytes before Redis's own buffer starts to fill.
            while client.pubsub_numsub(channel)[0][1] and sent < 20_000:
                for n in range(sent, sent + 100):
                    broadcast_progress("s", {"n": n, "padding": "x" * 2000})
                sent += 100
        assert held.is_set()
        assert client.pubsub_numsub(channel)[0][1] == 0, "Redis did not cut the listener"
        release.set()
        wait_until(lambda: app_stats(b)["redis_reconnects"] == 1, what="the reconnect")
        assert_once_in_order(reader, sent)
    finally:
        release.set()
        event_broadcast.disconnect(slow, sender=b)


def test_an_observer_that_raises_fails_neither_broadcast_nor_listener(
    redis_server: RedisProcess, apps: Apps, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)

    def broken(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("observer bug")

    event_broadcast.connect(broken, sender=b, weak=False)
    try:
        reader = StreamReader(b, "s")
        reader.wait_for(lambda r: "connected" in r.types())
        with caplog.at_level(logging.ERROR, logger="flask_sse_sessions"):
            publish(a, "s", 3)
            assert_once_in_order(reader, 3)
            failures = "receiver of event_broadcast raised"
            wait_until(
                lambda: sum(failures in r.message for r in caplog.records) == 3,
                what="three logged failures",
            )
        assert app_stats(b)["redis_connected"] is True
    finally:
        event_broadcast.disconnect(broken, sender=b)


def test_stats_describe_the_listener(redis_server: RedisProcess, apps: Apps) -> None:
    app = on_redis(apps, redis_server.url)
    idle = app_stats(app)
    assert idle["redis_listener"] == "idle"
    assert idle["redis_connected"] is False
    reader = StreamReader(app, "s")
    reader.wait_for(lambda r: "connected" in r.types())
    numbers_ = app_stats(app)
    assert numbers_["redis_listener"] == "connected"
    assert (numbers_["redis_channels"], numbers_["redis_reconnects"]) == (1, 0)
    assert (numbers_["redis_errors"], numbers_["redis_last_error"]) == (0, None)
    assert numbers_["connections"] == 1
    reader.close()


def test_flask_sse_publish_goes_through_redis_and_stats_show_the_backend(
    redis_server: RedisProcess, apps: Apps
) -> None:
    a, b = on_redis(apps, redis_server.url), on_redis(apps, redis_server.url)
    reader = StreamReader(b, "job")
    reader.wait_for(lambda r: "connected" in r.types())
    result = a.test_cli_runner().invoke(args=["sse", "publish", "job", '{"n": 0}'])
    assert result.exit_code == 0, result.output
    assert "published to job: reached 1" in result.output
    assert_once_in_order(reader, 1)
    result = a.test_cli_runner().invoke(args=["sse", "stats"])
    numbers_ = json.loads(result.output)
    assert numbers_["redis_listener"] == "idle"
    assert numbers_["redis_errors"] == 0
    redis_server.kill()
    result = a.test_cli_runner().invoke(args=["sse", "publish", "job", "{}"])
    assert result.exit_code == 1
    assert "Redis does not answer" in result.output


def test_a_publish_retried_through_a_stall_is_stored_and_published_once(
    redis_server: RedisProcess,
) -> None:
    """redis-py sends a timed-out command again on a new connection; a stopped
    Redis runs every copy when it wakes. A plain XADD is stored once per copy
    (the control); the publish script only once."""
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    store = redis_module.RedisStore(
        redis_server.url,
        {
            "socket_timeout": 0.3,
            "retry": Retry(ConstantBackoff(0.05), 100),
            "driver_info": None,  # nothing to say on connect: each retry sends its command
        },
        "stall",
        100,
        60,
    )
    client = store.client()
    subscriber = redis_server.client().pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(store.channel("s"))
    store.publish("s", "progress", '{"n":0}')  # loads the script and warms the pool
    assert next_message(subscriber).endswith(b'{"n":0}')

    def stalled(call: Callable[[], Any]) -> Any:
        result: list[Any] = []
        redis_server.pause()
        try:
            worker = threading.Thread(target=lambda: result.append(call()))
            worker.start()
            wait_until(
                lambda: sum(size > 50 for size in unread_by_server(redis_server.port)) >= 2,
                what="a second copy of the command waiting in Redis's sockets",
            )
        finally:
            redis_server.resume()
        worker.join(30)
        return result[0]

    stalled(lambda: client.xadd("stall:control", {"d": "x"}))
    assert client.xlen("stall:control") >= 2  # the trap is real
    assert stalled(lambda: store.publish("s", "progress", '{"n":1}')) == 1
    assert client.xlen(store.stream_key("s")) == 2
    assert next_message(subscriber).endswith(b'{"n":1}')
    client.publish(store.channel("s"), b"marker")
    assert next_message(subscriber) == b"marker"  # nothing in between
    subscriber.close()
    store.close()


def next_message(subscriber: Any) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = subscriber.get_message(timeout=1)
        if message is not None:
            return bytes(message["data"])
    pytest.fail("no message")


def unread_by_server(port: int) -> list[int]:
    """Bytes waiting unread in each of the server's TCP sockets on ``port``."""
    sizes = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.split(":")[1], 16) == port and state != "0A":  # 0A: LISTEN
                sizes.append(int(queues.split(":")[1], 16))
    return sizes


# Publisher.


@pytest.mark.parametrize(
    ("name", "args", "fields"),
    [
        ("broadcast_progress", ("s", {"x": object()}), {}),
        ("broadcast_progress", ("s", [1, 2]), {}),
        ("broadcast_progress", ("s", {"x": float("nan")}), {}),
        ("broadcast_progress", ("s", {"x": "\ud800"}), {}),
        ("broadcast_progress", ("s", {"x": "y" * 70_000}), {}),
        ("broadcast_progress", ("bad id",), {}),
        ("broadcast_progress", ("x" * 129,), {}),
        ("broadcast_progress", (42,), {}),
        ("broadcast_progress", ("s", {"type": "connected"}), {}),
        ("broadcast", ("s", "two\nlines"), {}),
        ("broadcast", ("s", ""), {}),
        ("broadcast", ("s", 3), {}),
        ("broadcast", ("s", "heartbeat"), {}),
        ("broadcast", ("s", "t", None), {"x": {1, 2}}),
        ("broadcast_error", ("s", 404), {}),
        ("broadcast_complete", ("s", "not a dict"), {}),
    ],
)
def test_publisher_refuses_what_the_app_refuses_with_the_same_error(
    name: str, args: tuple[Any, ...], fields: dict[str, Any]
) -> None:
    # Nothing listens on port 9: validation must fail before any connection.
    publisher = Publisher("redis://127.0.0.1:9/0")
    with pytest.raises((TypeError, ValueError)) as from_publisher:
        getattr(publisher, name)(*args, **fields)
    functions = {
        "broadcast": broadcast,
        "broadcast_progress": broadcast_progress,
        "broadcast_complete": broadcast_complete,
        "broadcast_error": broadcast_error,
    }
    with make_app().app_context(), pytest.raises((TypeError, ValueError)) as from_app:
        functions[name](*args, **fields)
    assert type(from_publisher.value) is type(from_app.value)
    assert str(from_publisher.value) == str(from_app.value)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"redis_url": "http://example.com"}, ValueError, "not a Redis URL"),
        ({"redis_url": None}, TypeError, "redis_url must be a string"),
        ({"key_prefix": ""}, ValueError, "key_prefix must not be empty"),
        ({"history_size": 0}, ValueError, "history_size must be at least 1"),
        ({"history_ttl": "1h"}, TypeError, "history_ttl must be a number"),
        ({"max_event_bytes": 10}, ValueError, "max_event_bytes must be at least 64"),
        ({"socket_timout": 1}, TypeError, "socket_timout"),
    ],
)
def test_publisher_options_are_checked_when_it_is_made(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    options = {"redis_url": "redis://127.0.0.1:9/0", **options}
    with pytest.raises(error, match=match):
        Publisher(**options)


def test_a_publisher_made_before_a_fork_publishes_from_the_child(
    redis_server: RedisProcess, apps: Apps
) -> None:
    client = redis_server.client()
    connected = len(client.client_list())
    publisher = Publisher(redis_server.url, history_size=50)
    assert len(client.client_list()) == connected  # nothing connects when it is made
    app = on_redis(apps, redis_server.url, SSE_SESSIONS_HISTORY_SIZE=50)
    reader = StreamReader(app, "job")
    reader.wait_for(lambda r: "connected" in r.types())
    pid = os.fork()
    if pid == 0:  # the child: as a Celery or RQ worker would
        code = 1
        try:
            publisher.broadcast_progress("job", n=0)
            publisher.broadcast_progress("job", n=1)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert publisher.broadcast_progress("job", n=2) == 1
    assert_once_in_order(reader, 3)
    publisher.close()


def test_without_redis_py_the_error_says_what_to_install() -> None:
    script = """
import sys
sys.modules["redis"] = None  # as if redis-py were not installed
from flask import Flask
from flask_sse_sessions import Publisher, SSESessions

app = Flask("a")
app.config["SECRET_KEY"] = "test"
url = "redis://127.0.0.1:9/0"
app.config["SSE_SESSIONS_REDIS_URL"] = url
app.config["SSE_SESSIONS_REQUIRE_TOKEN"] = False
app.config["SECRET_KEY"] = "a key, so that the check of the backend comes next"
for attempt in (lambda: Publisher(url), lambda: app.register_blueprint(SSESessions())):
    try:
        attempt()
    except ImportError as exc:
        print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "pip install 'flask-sse-sessions[redis]'" in line


def test_the_listener_refuses_to_start_as_a_greenlet_over_blocking_sockets(
    redis_server: RedisProcess,
) -> None:
    script = f"""
from gevent import monkey
monkey.patch_thread()  # threading patched, socket not: a listener would block the hub
from tests.appstream import make_app
app = make_app(SSE_SESSIONS_REDIS_URL={redis_server.url!r})
try:
    app.extensions["sse_sessions"].backend.subscribe("s")
except RuntimeError as exc:
    print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "gevent.monkey.patch_all()" in result.stdout


def test_gunicorn_gevent_workers_with_preload_on_redis(
    own_server: Any, redis_server: RedisProcess
) -> None:
    """The app is made in gunicorn's master before the fork: it must not have
    connected there, and each gevent worker runs its own listener greenlet."""
    client = redis_server.client()
    server = own_server(
        {"SSE_SESSIONS_REDIS_URL": redis_server.url, "SSE_SESSIONS_HEARTBEAT_INTERVAL": 1},
        workers=2,
        extra_args=("--preload",),
    )
    streams = [server.stream("job") for _ in range(6)]
    try:
        for stream in streams:
            assert stream.status == 200
            stream.events(1)
        # Every stream's worker has subscribed: the publish reaches one or both workers.
        publisher = Publisher(redis_server.url)
        wait_until(lambda: sum(n for _, n in client.pubsub_numsub("sse_sessions:{job}")) >= 1)
        reached = publisher.broadcast_progress("job", n=0)
        assert reached in (1, 2)
        for stream in streams:
            event = stream.events(1, timeout=10)[0]
            while not event.id:  # heartbeats
                event = stream.events(1, timeout=10)[0]
            assert event.json()["n"] == 0
        listeners = [c for c in client.client_list() if int(c["sub"]) > 0]
        assert 1 <= len(listeners) <= 2  # one per worker that has a stream, none for the master
    finally:
        for stream in streams:
            stream.close()
    assert httpx.get(server.url + "/debug/stats", timeout=10).json()["redis_listener"] in (
        "connected",
        "idle",
    )


def test_a_503_tells_clients_nothing_of_the_server_and_the_log_has_the_cause(
    redis_server: RedisProcess, own_server: Any
) -> None:
    server = own_server({"SSE_SESSIONS_REDIS_URL": redis_server.url})
    redis_server.kill()
    for path in ("s", "s/latest"):
        response = httpx.get(f"{server.url}/api/stream/{path}", timeout=30)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.json() == {
            "error": "unavailable",
            "message": "Live events are unavailable right now; try again shortly.",
        }
    log = server.log(0).rpartition("Starting gunicorn")[2]
    cause = f"Error 111 connecting to 127.0.0.1:{redis_server.port}"
    assert f"Redis does not answer (ConnectionError: {cause}" in log, log[-3000:]
