"""gunicorn settings of the example: ``gunicorn -c example_app/gunicorn.conf.py``.

One gevent worker: every stream is a greenlet, so one process holds thousands
of them. It is one worker because the example uses the in-process bus: a job
and the tabs that watch it must share a process.

No hook is needed for a graceful stop: on SIGTERM, a reload (SIGHUP) or
``max_requests``, each worker ends its streams at once, telling every client
to come back after a jittered delay, and exits well within ``graceful_timeout``.
"""

wsgi_app = "example_app.app:create_app()"
bind = "127.0.0.1:8000"
worker_class = "gevent"
workers = 1
# Above SSE_SESSIONS_MAX_CONNECTIONS (10000 by default), so that the stream
# limit answers 429 before the worker stops accepting; ulimit -n must exceed it.
worker_connections = 10100
graceful_timeout = 5
accesslog = "-"
# Stream URLs carry a token that opens the stream to whoever holds it: log
# paths without their query strings (%(U)s, not the request line %(r)s).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def child_exit(server, worker):
    """With Prometheus metrics in multi-process mode (PROMETHEUS_MULTIPROC_DIR
    set before gunicorn starts), drop the open-connection gauge of a worker
    that exited, so that scrapes count only live workers."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
