"""Prometheus metrics of the streams, with ``prometheus_client``.

Install the extra (``pip install 'flask-sse-sessions[metrics]'``) and they
are kept; expose them with a route of your app, protected like any other::

    from flask_sse_sessions.metrics import metrics_response

    @app.get("/metrics")
    def metrics():
        if request.headers.get("Authorization") != f"Bearer {SCRAPE_TOKEN}":
            abort(401)
        return metrics_response()

Under gunicorn with several workers, use ``prometheus_client``'s
multi-process mode so that one scrape covers every worker: set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in gunicorn's environment
before it starts, and remove each dead worker's gauges in ``gunicorn.conf.py``
(``example_app/gunicorn.conf.py`` does both)::

    def child_exit(server, worker):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

The numbers are those of :func:`~flask_sse_sessions.stats`, summed over the
apps of a process: the streams count them in plain integers, and they are
copied into ``prometheus_client`` when this process is scraped and, in
multi-process mode, every second by one thread per worker, so a scrape shows
other workers' numbers as they were up to a second before.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from flask import Response

from ._counters import LATENCY_BUCKETS_MS, REFUSAL_REASONS
from ._state import STATES

__all__ = ["metrics_response"]

_FLUSH_SECONDS = 1.0
_PREFIX = "sse_sessions"


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multi-process mode, if it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _Exporter:
    """This process's metrics, and what of the counters they already hold."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(f"{_PREFIX}_{name}", text, labels)

        self.connections = Gauge(
            f"{_PREFIX}_connections",
            "Open streams.",
            multiprocess_mode="livesum",
        )
        self.opened = counter("connections_opened", "Streams accepted.")
        self.closed = counter("connections_closed", "Streams ended, for any reason.")
        self.refused = counter(
            "connections_refused",
            "Stream requests refused, by reason: a connection limit (process, session,"
            " user), a token (unauthorized), the authorize hook (forbidden), or a"
            " worker shutting down (draining).",
            ("reason",),
        )
        self.published = counter("events_published", "Events published by this process.")
        self.delivered = counter("events_delivered", "Live events written to streams.")
        self.dropped = counter("clients_dropped", "Clients cut for not reading.")
        self.backend_errors = counter("backend_errors", "Failures reaching the backend (Redis).")
        self.backend_reconnects = counter(
            "backend_reconnects", "Times the Redis listener connected again."
        )
        self.latency = Histogram(
            f"{_PREFIX}_publish_to_write_seconds",
            "Time from an event's publication (its id) to the write of the stream"
            " chunk that carries it, per chunk, by its oldest event.",
            buckets=[bound / 1000 for bound in LATENCY_BUCKETS_MS],
        )
        self._seen: dict[str, float] = {}
        self._seen_buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self._lock = threading.Lock()
        self.pid = os.getpid()

    def _add(self, key: str, metric: Any, total: float) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            metric.inc(delta)
        self._seen[key] = total

    def sync(self) -> None:
        """Copy the counters of every app in this process into the metrics."""
        with self._lock:
            totals: dict[str, float] = {}
            buckets = [0] * len(self._seen_buckets)
            latency_sum = 0.0
            for state in list(STATES):
                stats = state.stats()
                for name in (
                    "connections",
                    "connections_opened",
                    "connections_closed",
                    "events_published",
                    "events_delivered",
                    "dropped",
                    "backend_errors",
                    "backend_reconnects",
                ):
                    totals[name] = totals.get(name, 0) + stats[name]
                for reason, count in stats["refused"].items():
                    totals["refused_" + reason] = totals.get("refused_" + reason, 0) + count
                counters = state.counters
                for index, count in enumerate(counters.latency_buckets):
                    buckets[index] += count
                latency_sum += counters.latency_sum_ms
            self.connections.set(totals.get("connections", 0))
            self._add("opened", self.opened, totals.get("connections_opened", 0))
            self._add("closed", self.closed, totals.get("connections_closed", 0))
            self._add("published", self.published, totals.get("events_published", 0))
            self._add("delivered", self.delivered, totals.get("events_delivered", 0))
            self._add("dropped", self.dropped, totals.get("dropped", 0))
            self._add("errors", self.backend_errors, totals.get("backend_errors", 0))
            self._add("reconnects", self.backend_reconnects, totals.get("backend_reconnects", 0))
            for reason in REFUSAL_REASONS:
                key = "refused_" + reason
                self._add(key, self.refused.labels(reason), totals.get(key, 0))
            # prometheus_client has no way to add many observations at once:
            # its histogram keeps one value per bucket (not cumulative) and a sum.
            for index, count in enumerate(buckets):
                delta = count - self._seen_buckets[index]
                if delta > 0:
                    self.latency._buckets[index].inc(delta)
            self._seen_buckets = buckets
            self._add("latency_sum", self.latency._sum, latency_sum / 1000)

    def flush_forever(self) -> None:
        while True:
            time.sleep(_FLUSH_SECONDS)
            self.sync()


_exporter: _Exporter | None = None
_exporter_lock = threading.Lock()


def exporter() -> _Exporter | None:
    """This process's exporter, started on first use; None without prometheus_client."""
    global _exporter
    current = _exporter
    if current is not None and current.pid == os.getpid():
        return current
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return None
    with _exporter_lock:
        if _exporter is None:
            _exporter = _Exporter()
        elif _exporter.pid != os.getpid():
            # A forked worker: its metrics start from this process's counters,
            # which are its own from now on; the files of multi-process mode
            # are per process already.
            _exporter.pid = os.getpid()
            _exporter._seen = {}
            _exporter._seen_buckets = [0] * len(_exporter._seen_buckets)
        else:
            return _exporter
        if multiprocess_dir() is not None:
            threading.Thread(
                target=_exporter.flush_forever, name="flask-sse-sessions-metrics", daemon=True
            ).start()
        return _exporter


def metrics_response() -> Response:
    """The metrics in Prometheus's text format: every worker's in
    multi-process mode, else this process's (with ``prometheus_client``'s
    default process and platform metrics).

    :raises RuntimeError: ``prometheus_client`` is not installed.
    """
    current = exporter()
    if current is None:
        raise RuntimeError(
            "metrics_response() needs prometheus_client: pip install 'flask-sse-sessions[metrics]'"
        )
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    current.sync()
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
