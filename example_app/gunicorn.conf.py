"""gunicorn settings of the example: ``gunicorn -c example_app/gunicorn.conf.py``.

gevent workers: every stream is a greenlet, so one process holds thousands of
them. Without ``REDIS_URL`` it is one worker, because the in-process bus needs
a job and the tabs that watch it in one process. With ``REDIS_URL`` set (say
``redis://127.0.0.1:6379/0``) the streams and the job list are in Redis, and
four workers share them.
"""

import os
from typing import Any

wsgi_app = "example_app.app:create_app()"
bind = "127.0.0.1:8000"
worker_class = "gevent"
workers = 4 if os.environ.get("REDIS_URL") else 1
worker_connections = 1000
graceful_timeout = 5
accesslog = "-"


def post_worker_init(worker: Any) -> None:
    """Each worker starts looking for jobs to take over (with Redis) at once,
    not only at its first request."""
    jobs = getattr(worker.wsgi, "extensions", {}).get("batchline")
    if jobs is not None:
        jobs.start_background()
