"""What the library learns from the server it runs in: its settings, and when it stops.

Under gunicorn, the worker's SIGTERM handler is a bound method of the worker
object (the arbiter's, in the master process of ``--preload``), so the
library finds gunicorn's settings without any config hook. From them it
warns, once, about setups that cannot serve streams well (logger
``flask_sse_sessions``, each message naming the fix), and it watches the
worker's ``alive`` flag: gunicorn clears it on SIGTERM (shutdown, the old
workers of a SIGHUP reload, a single worker told to stop) and after
``max_requests``. Then the worker *drains*: every open stream is told to come
back after a jittered delay and ends, so the worker exits in a second or two
instead of at ``graceful_timeout``, and new stream requests get 503 until it does.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._state import State

logger = logging.getLogger("flask_sse_sessions")

# How often the drain monitor looks at the worker's alive flag: streams end
# within this much (and a turn of the loop) of gunicorn's decision to stop.
_POLL_SECONDS = 0.25


def gunicorn_process() -> Any | None:
    """The gunicorn worker serving this process, or the arbiter of a
    ``--preload`` master; None outside gunicorn."""
    if "gunicorn" not in sys.modules:
        return None
    try:
        owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    except (ValueError, OSError):
        return None
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

    return owner if isinstance(owner, Worker | Arbiter) else None


class _Warnings:
    """Each start-up warning once per process, and in only one worker of a gunicorn."""

    def __init__(self) -> None:
        self.given: set[str] = set()

    def warn(self, key: str, message: str, *args: object) -> None:
        if key not in self.given:
            self.given.add(key)
            logger.warning(message, *args)


WARNINGS = _Warnings()


def check_setup(state: State) -> None:
    """Warn about a server setup that cannot serve ``state``'s streams well.

    Called when the blueprint is registered. Under gunicorn the worker that
    gunicorn started first speaks for all (the others share its settings);
    with ``--preload`` the master does.
    """
    process = gunicorn_process()
    if process is None:
        check_gevent_patched()
        return
    from gunicorn.arbiter import Arbiter

    if isinstance(process, Arbiter):
        worker_class = process.worker_class
    else:
        if process.age != 1:
            return
        worker_class = type(process)
    cfg = process.cfg
    config = state.config
    kind = _worker_kind(worker_class)
    if kind in ("sync", "gthread"):
        WARNINGS.warn(
            "worker_class",
            "gunicorn runs the %s worker: each open stream holds a whole %s for"
            " as long as it lasts. Run gunicorn with the gevent worker: -k gevent"
            ' (worker_class = "gevent" in gunicorn.conf.py).',
            kind,
            "worker process" if kind == "sync" else "thread",
        )
    elif kind == "gevent" and not isinstance(process, Arbiter):
        check_gevent_patched()
    if cfg.workers > 1 and config.redis_url is None:
        WARNINGS.warn(
            "workers",
            "gunicorn runs %d workers on the in-process bus: a broadcast reaches only"
            " the streams of the worker that made it. Set SSE_SESSIONS_REDIS_URL to"
            " share events between workers, or run one worker (-w 1).",
            cfg.workers,
        )
    if kind != "sync" and cfg.worker_connections < config.max_connections:
        WARNINGS.warn(
            "worker_connections",
            "gunicorn's worker_connections (%d) is below SSE_SESSIONS_MAX_CONNECTIONS"
            " (%d): a worker stops accepting every request at %d connections, before"
            " the stream limit can answer 429. Raise it (--worker-connections %d, and"
            " ulimit -n above it) or lower SSE_SESSIONS_MAX_CONNECTIONS.",
            cfg.worker_connections,
            config.max_connections,
            cfg.worker_connections,
            config.max_connections + 100,
        )
    if _multiprocess_metrics() and _default_hook(cfg.child_exit):
        WARNINGS.warn(
            "child_exit",
            "PROMETHEUS_MULTIPROC_DIR is set but gunicorn has no child_exit hook: the"
            " open-connection gauge of a worker that died stays in every scrape. Add"
            " to gunicorn.conf.py: def child_exit(server, worker):"
            " prometheus_client.multiprocess.mark_process_dead(worker.pid)",
        )


def _multiprocess_metrics() -> bool:
    from .metrics import multiprocess_dir

    return multiprocess_dir() is not None


def _default_hook(hook: Any) -> bool:
    return getattr(hook, "__module__", None) == "gunicorn.config"


def check_gevent_patched() -> None:
    """Warn when gevent is in use but ``socket`` is not monkey-patched: each
    stream's waits would then block the whole process."""
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        WARNINGS.warn(
            "gevent_patch",
            "gevent is imported but socket is not monkey-patched: a stream that waits"
            " blocks every greenlet of the process. Serve with gunicorn -k gevent,"
            " which patches, or call gevent.monkey.patch_all() first thing, before"
            " anything else is imported.",
        )


def _worker_kind(worker_class: type) -> str:
    from gunicorn.workers.sync import SyncWorker

    if issubclass(worker_class, SyncWorker):
        return "sync"
    module = worker_class.__module__
    if module.endswith(".gthread"):
        return "gthread"
    if module.endswith(".ggevent"):
        return "gevent"
    return "other"


class Drain:
    """Ends the streams of a gunicorn worker that is stopping.

    One monitor thread per process (a greenlet under gevent) polls the
    worker's ``alive`` flag; it starts with the first registered app in a
    worker, or with the first stream of a ``--preload`` worker.
    """

    def __init__(self) -> None:
        self.draining = False
        self._pid = 0
        self._lock = threading.Lock()

    def attach(self) -> None:
        """Drain every app's streams when this process's gunicorn worker stops."""
        if self._pid == os.getpid():
            return
        worker = gunicorn_process()
        if worker is None:
            return
        from gunicorn.workers.base import Worker

        if not isinstance(worker, Worker):
            return  # the master of --preload: each worker attaches at its first stream
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self.draining = False
            threading.Thread(
                target=self._run, args=(worker,), name="flask-sse-sessions-drain", daemon=True
            ).start()

    def _run(self, worker: Any) -> None:
        while worker.alive:
            time.sleep(_POLL_SECONDS)
        self.draining = True
        logger.info("gunicorn worker %s is stopping: ending its streams", os.getpid())
        # Streams that were opening as the flag fell are drained at the next turn.
        from ._state import STATES

        while True:
            for state in list(STATES):
                state.registry.drain()
            time.sleep(_POLL_SECONDS)


DRAIN = Drain()
