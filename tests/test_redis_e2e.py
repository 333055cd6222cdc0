"""End to end on Redis: ``gunicorn -k gevent -w 3``, dozens of clients, real failures.

One ``redis-server`` with append-only persistence (``--appendfsync always``)
and one gunicorn with three gevent workers serve every test of this file; each
test has sessions and clients of its own. The clients are plain sockets in
threads that behave like EventSource: when a stream ends or is refused they
reconnect with the last id they saw in ``Last-Event-ID``. Events come from an
HTTP route of the app (so from inside a worker), from a :class:`Publisher` in
the test process and from a real RQ worker process, while Redis or a worker
fails. In the end every client must hold exactly the session's stream as
Redis stored it: every event once, in order, and every acknowledged publish
among them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_sse_sessions import BackendUnavailable, Publisher, new_session_id
from flask_sse_sessions._wire import ServerSentEvent
from tests.appstream import wait_until
from tests.conftest import ROOT, Server
from tests.rawhttp import RawStream
from tests.redisproc import RedisProcess

WORKERS = 3
HISTORY = 10_000  # every event of a test stays stored, to compare with
# The documented bound for a broadcast while Redis does not answer is 5 s;
# the tests allow for a loaded machine.
BOUND = 5.0 + 3.0
# The workers probe an idle listener connection after 0.5 s and give the
# probe 0.5 s (5 s and 3 s by default), so that a SIGSTOP is noticed soon.
PROBE = [0.5, 0.5]
OWN_TYPES = ("connected", "heartbeat", "reset")


def config(redis_url: str) -> dict[str, Any]:
    return {
        "SSE_SESSIONS_REDIS_URL": redis_url,
        "SSE_SESSIONS_HEARTBEAT_INTERVAL": 1,
        "SSE_SESSIONS_HISTORY_SIZE": HISTORY,
        "SSE_SESSIONS_REQUIRE_TOKEN": False,
    }


def start_gunicorn(redis_url: str, workers: int = WORKERS) -> Server:
    hooks = {"worker_pid": True, "redis_probe": PROBE}
    return Server(config(redis_url), hooks, workers=workers).start()


@pytest.fixture(scope="module")
def deployment() -> Iterator[tuple[RedisProcess, Server]]:
    """The Redis server and the three-worker gunicorn shared by the tests."""
    redis_process = RedisProcess(appendonly=True).start()
    server = None
    try:
        server = start_gunicorn(redis_process.url)
        yield redis_process, server
    finally:
        if server is not None:
            server.stop()
        redis_process.cleanup()


@pytest.fixture
def redis_process(deployment: tuple[RedisProcess, Server]) -> Iterator[RedisProcess]:
    process = deployment[0]
    if process.process is None:  # a failed test left it down
        process.start()
    yield process
    if process.process is None:
        process.start()
    else:
        process.resume()


@pytest.fixture
def server(deployment: tuple[RedisProcess, Server]) -> Server:
    return deployment[1]


class Placement:
    """Spreads the first streams of clients evenly over the workers.

    The kernel hands a new connection to whichever worker accepts first, and
    a worker that holds streams is often that one again; short requests
    spread well. A client whose first stream lands on a worker that has its
    share already closes it and connects again (reconnects later go
    wherever the kernel sends them).
    """

    def __init__(self, share: int, attempts: int = 200) -> None:
        self.share = share
        self.attempts = attempts
        self.placed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, pid: str) -> bool:
        with self._lock:
            self.attempts -= 1
            if self.placed[pid] >= self.share and self.attempts > 0:
                return False
            self.placed[pid] += 1
            return True


class Client:
    """A client that reads one session's stream in a thread and reconnects
    like EventSource: after an end or a refusal, with ``Last-Event-ID``."""

    def __init__(self, port: int, session_id: str, placement: Placement | None = None) -> None:
        self.port = port
        self.session_id = session_id
        self.placement = placement
        self.events: list[tuple[str, dict[str, Any]]] = []  # (id, data) of broadcasts
        self.resets: list[int] = []  # how many events had come before each reset
        self.connects = 0
        self.pids: list[str] = []  # the worker of each stream, in order
        self.refusals: list[int] = []  # statuses other than 200
        self.last_id: str | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._one_stream()
                self._stop.wait(0.1)  # reconnect soon, as with a short retry:
        except BaseException as exc:  # pragma: no cover - reported by the checks
            self.error = exc

    def _one_stream(self) -> None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        try:
            stream = RawStream(self.port, f"/api/stream/{self.session_id}", headers, timeout=15)
        except OSError:
            return
        try:
            if stream.status != 200:
                self.refusals.append(stream.status)
                return
            pid = stream.headers["x-worker-pid"]
            if not self.pids and self.placement and not self.placement.take(pid):
                return  # that worker has its share: connect again
            self.pids.append(pid)
            while not self._stop.is_set() and not stream.ended:
                for event in stream.pending_events(0.2):
                    self._take(event)
        except OSError:
            pass
        finally:
            stream.close()

    def _take(self, event: ServerSentEvent) -> None:
        data = event.json()
        assert isinstance(data, dict)
        kind = data["type"]
        if kind == "connected":
            self.connects += 1
        elif kind == "reset":
            self.resets.append(len(self.events))
        elif kind != "heartbeat":
            self.events.append((event.id, data))
            self.last_id = event.id

    @property
    def pid(self) -> str | None:
        return self.pids[-1] if self.pids else None

    def ids(self) -> list[str]:
        return [event_id for event_id, _ in list(self.events)]

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)


class Crowd:
    """``per_session`` clients on each of ``sessions`` new sessions."""

    def __init__(
        self, server: Server, sessions: int = 3, per_session: int = 12, workers: int = WORKERS
    ) -> None:
        self.server = server
        self.sessions = [new_session_id() for _ in range(sessions)]
        placement = Placement(-(-sessions * per_session // workers))
        self.clients = [
            Client(server.port, session_id, placement)
            for _ in range(per_session)
            for session_id in self.sessions
        ]
        wait_until(
            lambda: all(client.connects for client in self.clients),
            timeout=30,
            what="every client connected",
        )

    def workers(self) -> Counter[str]:
        """How many clients each worker serves now."""
        return Counter(client.pid for client in self.clients if client.pid)

    def close(self) -> None:
        for client in self.clients:
            client.stop()
        for client in self.clients:
            client.close()


@pytest.fixture
def crowd(server: Server) -> Iterator[Callable[..., Crowd]]:
    made: list[Crowd] = []

    def make(**options: Any) -> Crowd:
        made.append(Crowd(server, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


class Publishing:
    """Publishing that goes on in the background until :meth:`stop`: through the
    app's HTTP route and through a :class:`Publisher` of the test process.

    Every event is ``{"src": ..., "n": ...}``; an event is acknowledged when
    its publish returned (the route: 200). A publish that failed may still
    have been stored (a timeout cannot tell); it must then be delivered too.
    """

    def __init__(self, redis_url: str, server: Server, sessions: list[str]) -> None:
        self.server = server
        self.sessions = sessions
        self.publisher = Publisher(redis_url, history_size=HISTORY)
        self.acked: list[tuple[str, str, int]] = []  # (session, src, n)
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(self._by_publisher, "publisher")),
            threading.Thread(target=self._loop, args=(self._by_http, "http")),
        ]
        for thread in self._threads:
            thread.start()

    def _by_publisher(self, session_id: str, n: int) -> bool:
        try:
            self.publisher.broadcast_progress(session_id, src="publisher", n=n)
        except BackendUnavailable:
            return False
        return True

    def _by_http(self, session_id: str, n: int) -> bool:
        try:
            response = httpx.post(
                f"{self.server.url}/publish/{session_id}",
                json={"data": {"src": "http", "n": n}},
                timeout=30,
            )
        except httpx.TransportError:  # a worker killed while it answered
            return False
        if response.status_code == 503:
            assert response.json()["error"] == "BackendUnavailable"
            return False
        response.raise_for_status()
        return True

    def _loop(self, publish: Callable[[str, int], bool], source: str) -> None:
        n = 0
        while not self._stop.is_set():
            for session_id in self.sessions:
                if publish(session_id, n):
                    self.acked.append((session_id, source, n))
                else:
                    self.failures[source] += 1
                n += 1
            self._stop.wait(0.03)

    def count(self) -> int:
        return len(self.acked)

    def wait_for_more(self, more: int = 30) -> None:
        """Wait until ``more`` further publishes were acknowledged."""
        target = self.count() + more
        wait_until(lambda: self.count() >= target, timeout=60, what=f"{more} more publishes")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self.publisher.close()


@pytest.fixture
def publishing(redis_process: RedisProcess, server: Server) -> Iterator[Callable[..., Publishing]]:
    made: list[Publishing] = []

    def start(sessions: list[str]) -> Publishing:
        made.append(Publishing(redis_process.url, server, sessions))
        return made[-1]

    yield start
    for each in made:
        each.stop()


def stored(redis_process: RedisProcess, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The session's events as Redis stored them, in order."""
    entries = redis_process.client().xrange(f"sse_sessions:{{{session_id}}}:events")
    return [(raw_id.decode(), json.loads(fields[b"d"])) for raw_id, fields in entries]


def assert_everyone_has_everything(
    redis_process: RedisProcess, crowd: Crowd, acked: Sequence[tuple[str, str, int]] = ()
) -> int:
    """Every client holds its session's stored events, each once, in order,
    with no reset; every acknowledged publish is among them. Returns the
    number of events checked."""
    total = 0
    for session_id in crowd.sessions:
        events = stored(redis_process, session_id)
        tags = [(data["src"], data["n"]) for _, data in events]
        assert len(tags) == len(set(tags)), "an event was stored twice"
        missing = {(s, src, n) for s, src, n in acked if s == session_id} - {
            (session_id, src, n) for src, n in tags
        }
        assert not missing, f"acknowledged publishes missing from Redis: {sorted(missing)[:5]}"
        ids = [event_id for event_id, _ in events]
        clients = [client for client in crowd.clients if client.session_id == session_id]
        deadline = time.monotonic() + 30
        while any(client.ids() != ids for client in clients) and time.monotonic() < deadline:
            time.sleep(0.05)
        for client in clients:
            assert client.error is None, client.error
            received = client.ids()
            if received != ids:
                lost = [i for i in ids if i not in set(received)]
                twice = [i for i, c in Counter(received).items() if c > 1]
                pytest.fail(
                    f"client of {session_id} on workers {client.pids}: {len(received)} of"
                    f" {len(ids)} events, lost {lost[:5]}, twice {twice[:5]},"
                    f" in order {received == sorted(received, key=_key)}"
                )
            assert [data for _, data in client.events] == [data for _, data in events]
            assert client.resets == []
        total += len(ids)
    return total


def _key(event_id: str) -> tuple[int, ...]:
    return tuple(map(int, event_id.split("-")))


def listeners(redis_process: RedisProcess) -> int:
    """Connections in pub/sub mode: one per worker that has streams."""
    return sum(1 for c in redis_process.client().client_list() if int(c["sub"]) > 0)


def run_rq_job(redis_url: str, sessions: list[str], count: int) -> None:
    """Enqueue a job that publishes ``count`` events per session and run it
    in a real ``rq worker --burst`` process."""
    import redis
    from rq import Queue

    connection = redis.Redis.from_url(redis_url)
    queue = Queue("sse-e2e", connection=connection)
    job = queue.enqueue("tests.rqjobs.publish_events", redis_url, sessions, "rq", count)
    rq = Path(sys.executable).parent / "rq"
    result = subprocess.run(
        [str(rq), "worker", "--burst", "--url", redis_url, "--path", str(ROOT), "sse-e2e"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job.refresh()
    assert job.is_finished, f"{job.get_status()}: {result.stderr[-3000:]}"
    assert job.return_value() == count * len(sessions)
    connection.close()


def test_every_client_on_every_worker_gets_every_event_once_in_order(
    redis_process: RedisProcess, server: Server, crowd: Callable[..., Crowd]
) -> None:
    people = crowd(sessions=3, per_session=12)
    workers = people.workers()
    assert len(people.clients) == 36
    assert len(workers) == WORKERS, f"the clients did not spread over the workers: {workers}"

    acked: list[tuple[str, str, int]] = []
    for n in range(5):  # through the app: a request to some worker
        for session_id in people.sessions:
            response = httpx.post(
                f"{server.url}/publish/{session_id}",
                json={"data": {"src": "http", "n": n}},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["reached"][0] >= 1
            acked.append((session_id, "http", n))
    publisher = Publisher(redis_process.url, history_size=HISTORY)
    for n in range(5):  # from the test process, as a script would
        for session_id in people.sessions:
            # One listener per worker with a client of the session received it.
            reached = publisher.broadcast_progress(session_id, src="publisher", n=n)
            assert 1 <= reached <= WORKERS
            acked.append((session_id, "publisher", n))
    run_rq_job(redis_process.url, people.sessions, 5)  # from a real RQ worker
    acked += [(s, "rq", n) for n in range(5) for s in people.sessions]

    assert assert_everyone_has_everything(redis_process, people, acked) == 45
    # About three connections per worker (a listener and a pool of two),
    # plus this test's publisher (at most two) and its inspection client.
    clients = redis_process.client().client_list()
    assert len(clients) <= 3 * WORKERS + 2 + 1, [c["name"] or c["addr"] for c in clients]
    assert listeners(redis_process) == len(workers)  # one per worker, not per client
    publisher.close()


def test_client_kill_of_the_listeners_while_publishing_loses_nothing(
    redis_process: RedisProcess,
    crowd: Callable[..., Crowd],
    publishing: Callable[..., Publishing],
) -> None:
    people = crowd()
    workers = len(people.workers())
    feed = publishing(people.sessions)
    feed.wait_for_more()
    killed = redis_process.client().client_kill_filter(_type="pubsub")
    assert killed == workers
    wait_until(lambda: listeners(redis_process) == workers, timeout=30, what="the listeners back")
    feed.wait_for_more()
    feed.stop()
    assert assert_everyone_has_everything(redis_process, people, feed.acked) >= 60
    assert sum(client.connects for client in people.clients) == len(people.clients)


def test_redis_killed_and_restarted_while_publishing_loses_nothing(
    redis_process: RedisProcess,
    server: Server,
    crowd: Callable[..., Crowd],
    publishing: Callable[..., Publishing],
) -> None:
    people = crowd()
    feed = publishing(people.sessions)
    feed.wait_for_more()
    redis_process.kill()
    try:
        # A broadcast fails within the bound, from a publisher and in a worker.
        publisher = Publisher(redis_process.url)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            publisher.broadcast_progress(people.sessions[0], src="down", n=0)
        assert time.monotonic() - started < BOUND
        started = time.monotonic()
        response = httpx.post(f"{server.url}/publish/{people.sessions[0]}", json={}, timeout=30)
        assert response.status_code == 503
        assert response.json()["error"] == "BackendUnavailable"
        assert time.monotonic() - started < BOUND

        # A new stream is refused with 503 JSON, naming no host, port or URL.
        with server.stream(new_session_id()) as refused:
            assert refused.status == 503
            assert refused.headers["content-type"].startswith("application/json")
            assert int(refused.headers["retry-after"]) >= 1
            body = refused.read_to_end(timeout=15).decode()
        assert json.loads(body)["error"] == "unavailable"
        for detail in ("127.0.0.1", str(redis_process.port), "redis://", "onnect", "Error"):
            assert detail not in body
        wait_until(
            lambda: feed.failures["publisher"] and feed.failures["http"],
            timeout=30,
            what="publishes failing while Redis is down",
        )
    finally:
        redis_process.start()
    feed.wait_for_more()
    feed.stop()
    assert assert_everyone_has_everything(redis_process, people, feed.acked) >= 60


def test_redis_stopped_past_the_probe_then_continued_loses_nothing(
    redis_process: RedisProcess,
    server: Server,
    crowd: Callable[..., Crowd],
    publishing: Callable[..., Publishing],
) -> None:
    people = crowd()
    pids = set(people.workers())
    feed = publishing(people.sessions)
    feed.wait_for_more()
    redis_process.pause()
    try:
        noticed: set[str] = set()

        def every_listener_noticed() -> bool:
            numbers = server.stats()
            if numbers["redis_listener"] == "reconnecting":
                noticed.add(str(numbers["pid"]))
            return noticed >= pids

        wait_until(every_listener_noticed, timeout=30, what="the probes of every worker failing")
        wait_until(lambda: feed.failures["publisher"], timeout=30, what="a publish failing")
    finally:
        redis_process.resume()
    feed.wait_for_more()
    feed.stop()
    assert assert_everyone_has_everything(redis_process, people, feed.acked) >= 60


def test_a_worker_killed_while_publishing_its_clients_resume_on_the_others(
    redis_process: RedisProcess,
    crowd: Callable[..., Crowd],
    publishing: Callable[..., Publishing],
) -> None:
    people = crowd()
    victim, count = people.workers().most_common(1)[0]
    orphans = [client for client in people.clients if client.pid == victim]
    assert len(orphans) == count >= 1
    feed = publishing(people.sessions)
    feed.wait_for_more()
    os.kill(int(victim), signal.SIGKILL)
    wait_until(
        lambda: all(client.pid != victim and client.connects > 1 for client in orphans),
        timeout=30,
        what="the killed worker's clients on other workers",
    )
    feed.wait_for_more()
    feed.stop()
    assert assert_everyone_has_everything(redis_process, people, feed.acked) >= 60
    for client in people.clients:
        if client not in orphans:
            assert client.connects == 1  # the others kept their streams


def test_redis_restarted_without_persistence_gives_reset_not_a_silent_gap() -> None:
    redis_process = RedisProcess(appendonly=False).start()
    server = None
    try:
        server = start_gunicorn(redis_process.url, workers=2)
        people = Crowd(server, sessions=1, per_session=6, workers=2)
        session_id = people.sessions[0]
        publisher = Publisher(redis_process.url)
        for n in range(3):
            publisher.broadcast_progress(session_id, src="before", n=n)
        wait_until(
            lambda: all(len(client.events) == 3 for client in people.clients),
            timeout=30,
            what="three events everywhere",
        )
        old_id = people.clients[0].events[0][0]
        redis_process.restart()
        wait_until(
            lambda: all(client.resets for client in people.clients),
            timeout=30,
            what="a reset on every client",
        )
        publisher.broadcast_progress(session_id, src="after", n=0)
        wait_until(
            lambda: all(len(client.events) == 4 for client in people.clients),
            timeout=30,
            what="the event after the restart everywhere",
        )
        for client in people.clients:
            assert [data["src"] for _, data in client.events] == ["before"] * 3 + ["after"]
            assert client.resets == [3]  # between the lost history and what came after
        # A client that comes back with an id Redis forgot is told so as well.
        with server.stream(session_id, {"Last-Event-ID": old_id}) as late:
            assert late.status == 200
            kinds = []
            while "progress" not in kinds:
                kinds += [event.json()["type"] for event in late.events(1, timeout=15)]  # type: ignore[index]
        assert [k for k in kinds if k != "heartbeat"] == ["connected", "reset", "progress"]
        people.close()
        publisher.close()
    finally:
        if server is not None:
            server.stop()
        redis_process.cleanup()
