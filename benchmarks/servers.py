"""Start, query and stop the servers under test: the floor, the Flask floor, ours and
the competitors (sse-starlette on uvicorn, flask-sse with its own redis-server)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
CLIENT_CPU = 1
WORKER_CONNECTIONS = 20000
KINDS = ("floor", "flask-floor", "ours", "sse-starlette", "flask-sse")
# The gunicorn apps: the same command for each (`-k gevent -w 1 --worker-connections ...`).
GUNICORN_APPS = {
    "flask-floor": "benchmarks.flask_floor:create_app()",
    "ours": "benchmarks.app:create_app()",
    "flask-sse": "benchmarks.flask_sse_app:create_app()",
}
# flask-sse holds one Redis connection per stream, and opens one per publish.
REDIS_MAX_CLIENTS = 19000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(port: int, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    """A blocking request (for set-up and read-outs, never while measuring delivery)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        data = b"" if body is None else json.dumps(body).encode()
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        from .loadclient import _unchunk

        payload = _unchunk(payload)
    return json.loads(payload)


def _pin_to_server_cpu() -> None:
    # The child inherits the harness's affinity (CLIENT_CPU alone): pin by the machine.
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {SERVER_CPU})


def _pin_threads(pid: int) -> None:
    """Pin every thread of a running process to :data:`SERVER_CPU`."""
    if (os.cpu_count() or 1) > 1:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(task), {SERVER_CPU})


def _status_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server under test in a subprocess, pinned to :data:`SERVER_CPU`.

    flask-sse's ``redis-server`` is pinned there too: its fan-out happens in Redis,
    so Redis's work is part of what that server does with its one core, and its
    memory and CPU are counted with the worker's (:meth:`processes`).
    """

    def __init__(
        self,
        kind: str,
        config: dict[str, Any] | None = None,
        heartbeat: float = 5,
        workers: int = 1,
    ):
        if kind not in KINDS:
            raise ValueError(kind)
        self.kind = kind
        self.workers = workers
        self.config = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": heartbeat, **(config or {})}
        self.heartbeat = heartbeat
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.redis: Any = None
        self.pid = 0
        self.info: dict[str, Any] = {}
        self.log = Path(f"/tmp/sse-bench-{kind}-{self.port}.log")

    @property
    def publishes(self) -> bool:
        """Whether it answers the publish routes (the Flask floor does not)."""
        return self.kind != "flask-floor"

    def stream_path(self, session_id: str) -> str:
        if self.kind == "flask-sse":
            return f"/api/stream?channel={session_id}"
        return f"/api/stream/{session_id}"

    def held(self, session_ids: list[str]) -> Callable[[], int] | None:
        """For a server that sends nothing before the first event (flask-sse): a
        function counting the streams of these sessions it holds, its subscribers
        in Redis. ``None`` for the others: their first frame says so."""
        if self.redis is None:
            return None
        channels = sorted(set(session_ids))
        client = self.redis.client()
        return lambda: sum(int(count) for _, count in client.pubsub_numsub(*channels))

    def command(self) -> list[str]:
        if self.kind == "floor":
            return [
                sys.executable, "-m", "benchmarks.floor",
                "--port", str(self.port), "--heartbeat", str(self.heartbeat),
            ]  # fmt: skip
        if self.kind == "sse-starlette":
            from .competitors import python

            return [
                str(python(self.kind)), "-m", "uvicorn", "benchmarks.starlette_app:app",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--backlog", "4096", "--no-access-log", "--log-level", "warning",
                "--timeout-graceful-shutdown", "2",
            ]  # fmt: skip
        interpreter = sys.executable
        if self.kind == "flask-sse":
            from .competitors import python

            interpreter = str(python(self.kind))
        return [
            interpreter, "-m", "gunicorn",
            "-k", "gevent", "-w", str(self.workers),
            "--worker-connections", str(WORKER_CONNECTIONS),
            "--backlog", "4096",
            "-b", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "2",
            GUNICORN_APPS[self.kind],
        ]  # fmt: skip

    def start(self) -> Server:
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            SSE_BENCH_CONFIG=json.dumps(self.config),
            SSE_BENCH_HEARTBEAT=str(self.heartbeat),
        )
        if self.kind == "flask-sse":
            self.redis = _start_redis()
            env["SSE_BENCH_REDIS_URL"] = self.redis.url
        command = self.command()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                preexec_fn=_pin_to_server_cpu,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-3000:]}")
            try:
                self.info = self.stats()
                self.pid = int(self.info["pid"])
                return self
            except (OSError, ValueError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer: {self.log.read_text()[-3000:]}")

    def stats(self) -> dict[str, Any]:
        return dict(http_json(self.port, "GET", "/debug/stats", timeout=30))

    def processes(self) -> dict[str, int]:
        """The serving processes by name: gunicorn's worker for the gunicorn apps,
        and flask-sse's ``redis-server``."""
        found = {"server": self.pid}
        if self.redis is not None and self.redis.process is not None:
            found["redis-server"] = self.redis.process.pid
        return found

    def rss_kib_by_process(self) -> dict[str, int]:
        return {name: _status_kib(pid) for name, pid in self.processes().items()}

    def rss_kib(self) -> int:
        """Resident memory of the serving processes, together."""
        return sum(self.rss_kib_by_process().values())

    def cpu_seconds(self) -> float:
        """User + system CPU time of the serving processes, together."""
        return sum(_cpu_seconds(pid) for pid in self.processes().values())

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.kind in GUNICORN_APPS and self.pid and self.workers == 1:
            # The worker normally exits with its master; make sure it did.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        redis, self.redis = self.redis, None
        if redis is not None:
            redis.cleanup()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_redis() -> Any:
    """flask-sse's ``redis-server``: a free port, no persistence, ``maxclients`` for
    10k streams (within this process's ``RLIMIT_NOFILE``, which it inherits), the
    stock pub/sub output buffer limits, pinned to :data:`SERVER_CPU`."""
    from tests.redisproc import RedisProcess

    redis = RedisProcess(appendonly=False, options=("--maxclients", str(REDIS_MAX_CLIENTS)))
    redis.start()
    assert redis.process is not None
    _pin_threads(redis.process.pid)
    return redis
