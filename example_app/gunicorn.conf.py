"""gunicorn settings of the example: ``gunicorn -c example_app/gunicorn.conf.py``.

gevent workers: every stream is a greenlet, so one process holds thousands of
them. Without ``REDIS_URL`` it is one worker, because the in-process bus needs
a job and the tabs that watch it in one process. With ``REDIS_URL`` set (say
``redis://127.0.0.1:6379/0``) the streams and the job list are in Redis, and
four workers share them.

No hook is needed for a graceful stop: on SIGTERM, a reload (SIGHUP) or
``max_requests``, each worker ends its streams at once, telling every client
to come back after a jittered delay, and exits well within ``graceful_timeout``.
"""

import os
import secrets
from typing import Any

wsgi_app = "example_app.app:create_app()"
bind = "127.0.0.1:8000"
worker_class = "gevent"
workers = 4 if os.environ.get("REDIS_URL") else 1
# Above SSE_SESSIONS_MAX_CONNECTIONS (10000 by default), so that the stream
# limit answers 429 before the worker stops accepting; ulimit -n must exceed it.
worker_connections = 10100
graceful_timeout = 5
accesslog = "-"
# Stream URLs carry a token that opens the stream to whoever holds it: log
# paths without their query strings (%(U)s, not the request line %(r)s).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def on_starting(server: Any) -> None:
    """Several workers must sign cookies and stream URLs with one key: without
    SECRET_KEY, make a random one here, in the master, for all of them (the
    app still warns that a restart forgets every browser's jobs)."""
    if workers > 1 and not os.environ.get("SECRET_KEY"):
        os.environ["EXAMPLE_SHARED_RANDOM_KEY"] = secrets.token_hex(32)


def post_worker_init(worker: Any) -> None:
    """Each worker starts looking for jobs to take over (with Redis) at once,
    not only at its first request."""
    jobs = getattr(worker.wsgi, "extensions", {}).get("batchline")
    if jobs is not None:
        jobs.start_background()


def child_exit(server, worker):
    """With Prometheus metrics in multi-process mode (PROMETHEUS_MULTIPROC_DIR
    set before gunicorn starts), drop the open-connection gauge of a worker
    that exited, so that scrapes count only live workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
