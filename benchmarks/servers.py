"""Start, query and stop the servers under test: the floor and ours (gunicorn)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
CLIENT_CPU = 1
WORKER_CONNECTIONS = 20000


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


class Server:
    """One server under test in a subprocess, pinned to :data:`SERVER_CPU`."""

    def __init__(
        self,
        kind: str,
        config: dict[str, Any] | None = None,
        heartbeat: float = 5,
        workers: int = 1,
    ):
        if kind not in ("floor", "ours"):
            raise ValueError(kind)
        self.kind = kind
        self.workers = workers
        self.config = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": heartbeat, **(config or {})}
        self.heartbeat = heartbeat
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.log = Path(f"/tmp/sse-bench-{kind}-{self.port}.log")

    def command(self) -> list[str]:
        if self.kind == "floor":
            return [
                sys.executable, "-m", "benchmarks.floor",
                "--port", str(self.port), "--heartbeat", str(self.heartbeat),
            ]  # fmt: skip
        return [
            sys.executable, "-m", "gunicorn",
            "-k", "gevent", "-w", str(self.workers),
            "--worker-connections", str(WORKER_CONNECTIONS),
            "--backlog", "4096",
            "-b", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "2",
            "benchmarks.app:create_app()",
        ]  # fmt: skip

    def start(self) -> Server:
        env = dict(os.environ, PYTHONPATH=str(ROOT), SSE_BENCH_CONFIG=json.dumps(self.config))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                preexec_fn=_pin_to_server_cpu,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-3000:]}")
            try:
                self.pid = int(self.stats()["pid"])
                return self
            except (OSError, ValueError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer: {self.log.read_text()[-3000:]}")

    def stats(self) -> dict[str, Any]:
        return dict(http_json(self.port, "GET", "/debug/stats", timeout=30))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the serving process (gunicorn's worker for ours)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self.kind == "ours" and self.pid and self.workers == 1:
            # The worker normally exits with its master; make sure it did.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
