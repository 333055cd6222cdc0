"""The Redis backend: a stream per session for ids and history, pub/sub for delivery.

The keys of a session ``s`` under the prefix ``p`` (``SSE_SESSIONS_KEY_PREFIX``)
all carry the hash tag ``{s}``, so they share one slot of a Redis Cluster:

``p:{s}:events``
    A stream of the session's last ``SSE_SESSIONS_HISTORY_SIZE`` events. An
    entry's id is the event id; its fields are ``p`` (the id of the session's
    event before it, empty for the first), ``t`` (the type) and ``d`` (the
    JSON). It expires ``SSE_SESSIONS_HISTORY_TTL`` seconds after the last event.
``p:{s}:meta``
    A hash: ``last``, the last id ever issued, so ids keep growing after the
    stream expired. It lives ten times as long as the stream, and at least a day.
``p:{s}:sent``
    A list of the session's last ``_SENT_KEPT`` publishes (``token id reached``),
    so a publish that redis-py sends again after a timeout is not stored twice,
    even when other publishes to the session ran in between. It expires
    ``_SENT_TTL_MS`` after the last publish: retries come within seconds.
``p:{s}``
    The session's pub/sub channel; each message is ``prev\\nid\\ntype\\njson``.
``p:listener:<random>``
    Each listener's own channel: the probes it sends itself, and wake-ups.

Publishing is one Lua script: it takes the next id from the meta hash (and the
clock of Redis), adds the entry, sets both expiries and publishes, atomically:
no event is stored without being published, or the reverse.

Each process that serves streams has one listener: one thread (a greenlet under
gevent) that owns one RESP2 connection and subscribes a session's channel while
the process has a stream of it (and for ``_GRACE`` seconds after the last one
ended). A stream reads history only once Redis has confirmed the subscription,
so nothing falls between the two. The listener never dies: on any error, or
when a probe sent to its own channel while idle does not come back (a
half-open connection), it reconnects with capped backoff and jitter,
subscribes again in batches, and every local stream of those sessions catches
up from history. redis-py's own reconnect-and-resubscribe is not used: it is
silent, and events published meanwhile would be lost unnoticed.

Every message names the event before it, so a stream also notices a gap by
itself (see ``_stream.py``). Nothing connects before the first use in a
process: an app created before a fork (``gunicorn --preload``) is fine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

try:
    import redis
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
    from redis.commands.core import Script
    from redis.retry import Retry
except ImportError as exc:
    raise ImportError(
        "SSE_SESSIONS_REDIS_URL and Publisher need redis-py:"
        " pip install 'flask-sse-sessions[redis]'"
    ) from exc

from ._backend import Backend, BackendUnavailable, CatchUp, Deliver
from ._events import Event, EventKey, format_event_id, parse_event_id

logger = logging.getLogger("flask_sse_sessions")
_T = TypeVar("_T")

DEFAULT_OPTIONS: Mapping[str, Any] = {
    # A command fails within 2 attempts x (1 s to connect + 1 s to answer)
    # + 0.2 s between them, after at most 0.75 s waiting for one of the 2
    # pooled connections: under 5 s in all. A retried publish is not stored
    # twice (see the meta hash).
    "socket_connect_timeout": 1.0,
    "socket_timeout": 1.0,
    "retry": Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.05), 1),
    "max_connections": 2,
    "timeout": 0.75,
}
"""redis-py options used unless ``SSE_SESSIONS_REDIS_OPTIONS`` (or a
:class:`Publisher`'s keyword arguments) say otherwise. The pool is redis-py's
``BlockingConnectionPool``: ``max_connections`` and ``timeout`` (the wait for a
free connection) are its own."""

_META_TTL_MIN_MS = 24 * 3600 * 1000
# Publishes remembered per session against a retry storing one twice, and for how
# long after the last one (redis-py retries within its socket timeouts).
_SENT_KEPT = 64
_SENT_TTL_MS = 60_000

# The listener's timing, in seconds.
_GRACE = 5.0  # a channel stays subscribed this long after its last local stream
_PROBE_INTERVAL = 5.0  # without a message for this long, the listener probes
_PROBE_TIMEOUT = 3.0  # a probe, or a reply to (UN)SUBSCRIBE, must come back within this
_SUBSCRIBE_TIMEOUT = 5.0  # a new stream waits this long for its subscription
_BACKOFF_FIRST = 0.1  # before the first reconnect, doubled at each failure...
_BACKOFF_MAX = 2.0  # ...up to this, each with jitter
_BATCH = 500  # channels per SUBSCRIBE or UNSUBSCRIBE, messages read per turn
# A new stream's commands wait this long in all for a pooled connection while
# every one is busy (a burst of new streams), rather than answer 503.
_POOL_WAIT = 10.0

_START_LOCK = threading.Lock()

_PUBLISH = """
-- KEYS: meta, stream, sent.  ARGV: token, type, json, history size, stream ttl
-- ms, meta ttl ms, channel, publishes kept in sent, sent ttl ms.
-- Returns {id, subscribers reached}.
if redis.replicate_commands then redis.replicate_commands() end
local meta, stream, sent, token = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local head = token .. ' '
for _, done in ipairs(redis.call('LRANGE', sent, 0, -1)) do
  if string.sub(done, 1, #head) == head then
    local id, reached = string.match(done, '^%S+ (%S+) (%d+)$')
    return {id, tonumber(reached)}
  end
end
local last = redis.call('HGET', meta, 'last')
if not last then
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  last = newest and newest[1] or ''
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local id = string.format('%d-0', now)
if last ~= '' then
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if now <= ms then id = string.format('%d-%d', ms, seq + 1) end
end
redis.call('XADD', stream, 'MAXLEN', ARGV[4], id, 'p', last, 't', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', stream, ARGV[5])
local reached = redis.call('PUBLISH', ARGV[7],
  last .. '\\n' .. id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
redis.call('HSET', meta, 'last', id)
redis.call('PEXPIRE', meta, ARGV[6])
redis.call('LPUSH', sent, head .. id .. ' ' .. reached)
redis.call('LTRIM', sent, 0, tonumber(ARGV[8]) - 1)
redis.call('PEXPIRE', sent, ARGV[9])
return {id, reached}
"""


class RedisStore:
    """Ids, history and publishing of sessions in Redis.

    Connects lazily, with a connection pool of its own in each process, so it
    may be created before a fork. Every failure of Redis is raised as
    :class:`BackendUnavailable` and counted; the first of an outage is logged.

    :raises ValueError: the URL is not a Redis URL.
    :raises TypeError: an option redis-py does not know.
    """

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any],
        key_prefix: str,
        history_size: int,
        history_ttl: float,
    ) -> None:
        self.prefix = key_prefix
        self._channel_head = f"{key_prefix}:{{".encode()
        self._url = url
        # RESP2 always: its pub/sub replies are plain arrays (measured cheaper
        # to read than RESP3's pushes), and the replies parsed here keep one shape.
        self._options = {**DEFAULT_OPTIONS, **options, "decode_responses": False, "protocol": 2}
        self._history_size = history_size
        self._stream_ttl_ms = max(1, round(history_ttl * 1000))
        self._meta_ttl_ms = max(_META_TTL_MIN_MS, 10 * self._stream_ttl_ms)
        self._lock = threading.Lock()
        self._failing = False
        self.errors = 0
        self.last_error: str | None = None
        # Built now to check the URL and options; it connects nothing.
        self._current = (os.getpid(), *self._new_client())

    def _new_client(self) -> tuple[redis.Redis, Script]:
        try:
            pool = redis.BlockingConnectionPool.from_url(self._url, **self._options)
        except ValueError as exc:
            raise ValueError(f"not a Redis URL (redis://, rediss:// or unix://): {exc}") from None
        # Unknown options fail here rather than at the first broadcast.
        pool.connection_class(**pool.connection_kwargs)
        client = redis.Redis(connection_pool=pool)
        return client, client.register_script(_PUBLISH)

    def client(self) -> redis.Redis:
        """This process's client (a new one after a fork)."""
        return self._connection()[0]

    def _connection(self) -> tuple[redis.Redis, Script]:
        pid, client, script = self._current
        if pid != os.getpid():
            client, script = self._new_client()
            self._current = (os.getpid(), client, script)
        return client, script

    def stream_key(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:events"

    def meta_key(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:meta"

    def sent_key(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:sent"

    def script_keys(self, session_id: str) -> list[str]:
        """The keys of the publish script, in its order."""
        return [self.meta_key(session_id), self.stream_key(session_id), self.sent_key(session_id)]

    def channel(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}"

    def session_of(self, channel: bytes) -> str | None:
        """The session whose channel this is; None for any other channel."""
        head = self._channel_head
        if not channel.startswith(head) or not channel.endswith(b"}"):
            return None
        try:
            return channel[len(head) : -1].decode()
        except UnicodeDecodeError:
            return None

    def publish(self, session_id: str, type: str, json_text: str) -> int:
        """Store and publish an event; returns how many listeners received it."""
        client, script = self._connection()
        keys = self.script_keys(session_id)
        args: list[str | int] = [
            secrets.token_hex(8),
            type,
            json_text,
            self._history_size,
            self._stream_ttl_ms,
            self._meta_ttl_ms,
            self.channel(session_id),
            _SENT_KEPT,
            _SENT_TTL_MS,
        ]
        try:
            reply = script(keys=keys, args=args, client=client)
        except redis.RedisError as exc:
            raise self.failed(exc) from exc
        self.answered()
        return int(reply[1])

    def waiting(self, call: Callable[[], _T]) -> _T:
        """``call()``, for a new stream: while every pooled connection is busy,
        try again until ``_POOL_WAIT`` has passed. A burst of new streams (the
        clients of a worker that died, reconnecting at once) can hold the
        small pool longer than its ``timeout``; that is no failure of Redis.
        Broadcasts do not wait longer: their bound stays."""
        deadline = time.monotonic() + _POOL_WAIT
        while True:
            try:
                return call()
            except redis.ConnectionError as exc:
                # What redis-py's BlockingConnectionPool raises after its
                # ``timeout``; during an outage it fails at once, as any command.
                busy = str(exc) == "No connection available." and not self._failing
                if not busy or time.monotonic() >= deadline:
                    raise

    def latest(self, session_id: str) -> Event | None:
        stream = self.stream_key(session_id)
        try:
            entries = self.waiting(lambda: self.client().xrevrange(stream, count=1))
        except redis.RedisError as exc:
            raise self.failed(exc) from exc
        self.answered()
        return _event(entries[0]) if entries else None

    def history(self, session_id: str, after: EventKey | None) -> list[Event] | None:
        """As :meth:`Backend.history`: complete after ``after`` iff it is stored
        or is the previous id of the oldest entry. (``XINFO``'s
        max-deleted-entry-id would not do: trimming does not update it.)"""
        stream = self.stream_key(session_id)

        def read() -> tuple[list[Any], list[Any]]:
            if after is None:
                return [], self.client().xrange(stream) or []
            pipe = self.client().pipeline(transaction=True)
            pipe.xrange(stream, count=1)
            pipe.xrange(stream, min=format_event_id(after))
            oldest, entries = pipe.execute()
            return oldest, entries

        try:
            oldest, entries = self.waiting(read)
        except redis.RedisError as exc:
            raise self.failed(exc) from exc
        self.answered()
        events = [_event(entry) for entry in entries]
        if after is None:
            return events
        if events and events[0].key == after:
            return events[1:]
        if oldest and _event(oldest[0]).prev == after:
            return events
        return None

    def count_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def failed(self, exc: BaseException) -> BackendUnavailable:
        """Count and (once per outage) log a failure; the exception to raise."""
        self.count_error(exc)
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            logger.warning(
                "Redis does not answer (%s): broadcasts raise BackendUnavailable and"
                " new streams are answered 503 until it does",
                self.last_error,
            )
        return BackendUnavailable(f"Redis does not answer: {exc}")

    def answered(self) -> None:
        if self._failing:
            with self._lock:
                was, self._failing = self._failing, False
            if was:
                logger.warning("Redis answers again")

    def close(self) -> None:
        """Close this process's connections; the next command opens new ones."""
        pid, client, _ = self._current
        if pid == os.getpid():
            client.connection_pool.disconnect()


def _key(raw: bytes) -> EventKey:
    key = parse_event_id(raw.decode("ascii", "replace"))
    if key is None:
        raise BackendUnavailable(f"Redis holds a malformed event id: {raw!r}")
    return key


def _event(entry: Any) -> Event:
    """An event from a stream entry ``(id, {b"p": prev, b"t": type, b"d": json})``."""
    raw_id, fields = entry
    prev = fields.get(b"p")
    return Event(
        _key(raw_id),
        fields[b"t"].decode(),
        fields[b"d"].decode(),
        _key(prev) if prev else None,
    )


class _Channel:
    """This process's subscription to one session's channel."""

    __slots__ = ("confirmed", "idle_since", "sent", "settled", "stale", "unanswered", "wanted")

    def __init__(self) -> None:
        # Local streams that subscribed and have not unsubscribed yet.
        self.wanted = 0
        # The last command sent for it was SUBSCRIBE (not UNSUBSCRIBE).
        self.sent = False
        # SUBSCRIBE and UNSUBSCRIBE commands sent and not answered yet; Redis
        # answers them in order, so the channel is confirmed at the last answer.
        self.unanswered = 0
        self.confirmed = False
        # Set (and replaced) when waiting streams may look again: confirmed or failed.
        self.settled = threading.Event()
        self.idle_since: float | None = None
        # The connection was lost while streams held it: they catch up once
        # it is confirmed again.
        self.stale = False


def _settle(channel: _Channel) -> None:
    channel.settled.set()
    channel.settled = threading.Event()


class Listener:
    """One connection per process that receives the events of local sessions.

    Streams call :meth:`subscribe` and :meth:`unsubscribe` from any thread or
    greenlet; only the listener's own thread touches the connection, and takes
    their requests from ``_dirty`` and ``_idle``. A new request wakes it with a
    message on its own channel.
    """

    def __init__(self, store: RedisStore, deliver: Deliver, catch_up: CatchUp) -> None:
        self._store = store
        self._deliver = deliver
        self._catch_up = catch_up
        self._pid = 0
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        """Fresh state for this process (the parent's subscriptions are not ours)."""
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._dirty: set[str] = set()
        self._idle: deque[tuple[float, str]] = deque()
        self._state = "idle"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._control = b""
        self._wake_pending = False
        self._owed = 0
        self._owed_since = 0.0
        self._outage = False
        self._connections = 0
        self.reconnects = 0

    def _start(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with _START_LOCK:
            if self._pid == pid:
                return
            _check_gevent()
            self._reset()
            self._control = f"{self._store.prefix}:listener:{secrets.token_hex(8)}".encode()
            self._state = "connecting"
            self._pid = pid
            self._thread = threading.Thread(
                target=self._run, name="flask-sse-sessions-redis", daemon=True
            )
            self._thread.start()

    def subscribe(self, session_id: str) -> None:
        """Return once the session's events reach this process; see :meth:`Backend.subscribe`."""
        if self._closed:
            raise BackendUnavailable("the Redis backend is closed")
        self._start()
        with self._lock:
            if self._state == "reconnecting":
                raise BackendUnavailable(
                    f"the Redis listener is reconnecting ({self._store.last_error})"
                )
            channel = self._channels.get(session_id)
            if channel is None:
                channel = self._channels[session_id] = _Channel()
            channel.wanted += 1
            channel.idle_since = None
            if channel.confirmed:
                return
            settled = channel.settled
            self._dirty.add(session_id)
            wake = self._state == "connected" and not self._wake_pending
            self._wake_pending |= wake
        try:
            if wake:
                self._wake()
            settled.wait(_SUBSCRIBE_TIMEOUT)
            with self._lock:
                if channel.confirmed:
                    return
            raise BackendUnavailable(
                f"Redis did not confirm a subscription within {_SUBSCRIBE_TIMEOUT} s"
                f" ({self._store.last_error or 'no error recorded'})"
            )
        except BaseException:
            self.unsubscribe(session_id)
            raise

    def unsubscribe(self, session_id: str) -> None:
        with self._lock:
            channel = self._channels.get(session_id)
            if channel is None or not channel.wanted:
                return
            channel.wanted -= 1
            if not channel.wanted:
                now = time.monotonic()
                channel.idle_since = now
                self._idle.append((now, session_id))

    def _wake(self) -> None:
        try:
            self._store.waiting(lambda: self._store.client().publish(self._control, b""))
        except redis.RedisError as exc:
            with self._lock:
                self._wake_pending = False
            raise self._store.failed(exc) from exc

    def stats(self) -> dict[str, Any]:
        if self._pid != os.getpid():
            return {
                "redis_listener": "closed" if self._closed else "idle",
                "redis_connected": False,
                "redis_channels": 0,
                "redis_reconnects": 0,
            }
        with self._lock:
            channels = sum(1 for channel in self._channels.values() if channel.confirmed)
            state = self._state
        return {
            "redis_listener": state,
            "redis_connected": state == "connected",
            "redis_channels": channels,
            "redis_reconnects": self.reconnects,
        }

    def close(self) -> None:
        """Stop the listener and wait for its thread to end."""
        self._closed = True
        if self._pid != os.getpid():
            return
        self._stop.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        with self._lock:
            self._state = "closed"
            for channel in self._channels.values():
                _settle(channel)

    # The rest runs in the listener's thread only.

    def _run(self) -> None:
        failures = 0
        while not self._closed:
            connected = False
            try:
                conn = self._conn = self._connect()
                connected = True
                self._serve(conn)
            except Exception as exc:
                if not self._closed:
                    self._lost(exc)
            finally:
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.disconnect()
                self._disconnected()
            failures = 1 if connected else failures + 1
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1))
            self._stop.wait(delay * random.uniform(0.5, 1))

    def _connect(self) -> Any:
        pool = self._store.client().connection_pool
        # No retries and no health checks of redis-py's on this connection: a
        # failure must reach _run, which reconnects and has streams catch up.
        conn = pool.connection_class(
            **{
                **pool.connection_kwargs,
                "retry": Retry(NoBackoff(), 0),
                "health_check_interval": 0,
            }
        )
        self._conn = conn
        if self._closed:
            raise redis.ConnectionError("closed")
        conn.connect()
        conn.send_command("SUBSCRIBE", self._control)
        reply = _read(conn, _PROBE_TIMEOUT)
        if reply[0] != b"subscribe":
            raise redis.ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        with self._lock:
            self._state = "connected"
            for session_id, channel in self._channels.items():
                if channel.wanted:
                    self._dirty.add(session_id)
        self._connections += 1
        if self._connections > 1:
            self.reconnects += 1
        if self._outage:
            self._outage = False
            logger.warning(
                "the Redis listener of process %d is connected again; its streams"
                " catch up from history",
                os.getpid(),
            )
        return conn

    def _serve(self, conn: Any) -> None:
        last_read = time.monotonic()
        probe_sent: float | None = None
        while not self._closed:
            self._send_requests(conn)
            now = time.monotonic()
            if self._owed and now - max(self._owed_since, last_read) > _PROBE_TIMEOUT:
                raise redis.TimeoutError(
                    f"no answer to SUBSCRIBE or UNSUBSCRIBE within {_PROBE_TIMEOUT} s"
                )
            if probe_sent is None and now - last_read >= _PROBE_INTERVAL:
                # Idle for a while: a half-open connection would look just
                # like this. What Redis publishes to our channel must come back.
                self._store.client().publish(self._control, b"probe")
                probe_sent = now = time.monotonic()
            elif probe_sent is not None and now - probe_sent > _PROBE_TIMEOUT:
                raise redis.TimeoutError(
                    f"a probe did not come back within {_PROBE_TIMEOUT} s: the connection is dead"
                )
            if probe_sent is None:
                deadline = last_read + _PROBE_INTERVAL
            else:
                deadline = probe_sent + _PROBE_TIMEOUT
            if self._owed:
                deadline = min(deadline, max(self._owed_since, last_read) + _PROBE_TIMEOUT)
            idle = self._idle
            if idle:
                deadline = min(deadline, idle[0][0] + _GRACE)
            if not conn.can_read(max(0.0, deadline - now)):
                continue
            for _ in range(_BATCH):
                self._handle(conn.read_response())
                if not conn.can_read(0):
                    break
            last_read = time.monotonic()
            probe_sent = None

    def _send_requests(self, conn: Any) -> None:
        """Send SUBSCRIBE for channels streams wait for, UNSUBSCRIBE for those
        idle past the grace period; at most a batch of each per turn."""
        now = time.monotonic()
        subscribe: list[str] = []
        unsubscribe: list[str] = []
        with self._lock:
            self._wake_pending = False
            channels, dirty, idle = self._channels, self._dirty, self._idle
            while dirty and len(subscribe) < _BATCH:
                session_id = dirty.pop()
                channel = channels.get(session_id)
                if channel is not None and channel.wanted and not channel.sent:
                    channel.sent = True
                    channel.unanswered += 1
                    subscribe.append(session_id)
            while idle and idle[0][0] + _GRACE <= now and len(unsubscribe) < _BATCH:
                since, session_id = idle.popleft()
                channel = channels.get(session_id)
                if channel is None or channel.wanted or channel.idle_since != since:
                    continue
                if channel.sent:
                    channel.sent = channel.confirmed = False
                    channel.unanswered += 1
                    unsubscribe.append(session_id)
                elif not channel.unanswered:
                    del channels[session_id]
            count = len(subscribe) + len(unsubscribe)
            if count and not self._owed:
                self._owed_since = now
            self._owed += count
        channel_of = self._store.channel
        if subscribe:
            conn.send_command("SUBSCRIBE", *map(channel_of, subscribe))
        if unsubscribe:
            conn.send_command("UNSUBSCRIBE", *map(channel_of, unsubscribe))

    def _handle(self, reply: Any) -> None:
        kind = reply[0]
        if kind == b"message":
            self._on_message(reply[1], reply[2])
        elif kind in (b"subscribe", b"unsubscribe"):
            self._on_answer(reply[1])

    def _on_message(self, channel: bytes, data: bytes) -> None:
        if channel == self._control:
            return  # a probe or a wake-up: reading it was the point
        session_id = self._store.session_of(channel)
        if session_id is None:
            return
        try:
            prev, raw_id, type, text = data.split(b"\n", 3)
            event = Event(_key(raw_id), type.decode(), text.decode(), _key(prev) if prev else None)
        except (ValueError, BackendUnavailable):
            logger.warning("ignored a malformed message on the channel %r: %.200r", channel, data)
            return
        try:
            self._deliver(session_id, event)
        except Exception:
            logger.exception("delivering event %s of session %r failed", event.id, session_id)

    def _on_answer(self, raw_channel: bytes) -> None:
        session_id = self._store.session_of(raw_channel)
        if session_id is None:
            return
        with self._lock:
            self._owed = max(0, self._owed - 1)
            channel = self._channels.get(session_id)
            if channel is None:
                return
            channel.unanswered -= 1
            if channel.unanswered:
                return
            stale = False
            if channel.sent:
                channel.confirmed = True
                stale, channel.stale = channel.stale, False
                _settle(channel)
            elif not channel.wanted:
                del self._channels[session_id]
        if stale:
            try:
                self._catch_up(session_id)
            except Exception:
                logger.exception("catching up the streams of session %r failed", session_id)

    def _lost(self, exc: Exception) -> None:
        self._store.count_error(exc)
        if self._outage:
            return
        self._outage = True
        logger.warning(
            "the Redis listener of process %d lost its connection (%s: %s); it"
            " reconnects with backoff, and open streams wait with heartbeats",
            os.getpid(),
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, redis.RedisError),
        )

    def _disconnected(self) -> None:
        """Forget what Redis knew of this connection; streams waiting for a
        subscription fail, streams that held one will catch up."""
        with self._lock:
            self._state = "closed" if self._closed else "reconnecting"
            self._owed = 0
            self._dirty.clear()
            self._idle.clear()
            for session_id, channel in list(self._channels.items()):
                _settle(channel)
                if not channel.wanted:
                    del self._channels[session_id]
                    continue
                channel.sent = channel.confirmed = False
                channel.unanswered = 0
                channel.stale = True


def _read(conn: Any, timeout: float) -> Any:
    if not conn.can_read(timeout):
        raise redis.TimeoutError(f"no reply within {timeout} s")
    return conn.read_response()


def _check_gevent() -> None:
    """Refuse to start the listener as a greenlet that would block its hub."""
    monkey = sys.modules.get("gevent.monkey")
    if (
        monkey is not None
        and monkey.is_module_patched("threading")
        and not monkey.is_module_patched("socket")
    ):
        raise RuntimeError(
            "gevent patched threading but not socket: the Redis listener would block"
            " every greenlet. Call gevent.monkey.patch_all() before anything else"
            " (gunicorn's gevent worker does)."
        )


class RedisBackend(Backend):
    """History and delivery shared by every process and host through Redis.

    :param deliver: hands a received event to this process's bus.
    :param catch_up: makes the local streams of a session read history.
    :param url: ``SSE_SESSIONS_REDIS_URL``.
    :param options: ``SSE_SESSIONS_REDIS_OPTIONS``, over :data:`DEFAULT_OPTIONS`.
    """

    def __init__(
        self,
        deliver: Deliver,
        catch_up: CatchUp,
        url: str,
        options: Mapping[str, Any],
        *,
        key_prefix: str,
        history_size: int,
        history_ttl: float,
    ) -> None:
        self.store = RedisStore(url, options, key_prefix, history_size, history_ttl)
        self.listener = Listener(self.store, deliver, catch_up)

    def publish(self, session_id: str, type: str, json_text: str) -> int:
        return self.store.publish(session_id, type, json_text)

    def latest(self, session_id: str) -> Event | None:
        return self.store.latest(session_id)

    def history(self, session_id: str, after: EventKey | None) -> list[Event] | None:
        return self.store.history(session_id, after)

    def subscribe(self, session_id: str) -> None:
        self.listener.subscribe(session_id)

    def unsubscribe(self, session_id: str) -> None:
        self.listener.unsubscribe(session_id)

    def stats(self) -> dict[str, Any]:
        return {
            **self.listener.stats(),
            "redis_errors": self.store.errors,
            "redis_last_error": self.store.last_error,
        }

    def close(self) -> None:
        self.listener.close()
        self.store.close()
