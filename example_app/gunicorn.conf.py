"""gunicorn settings of the example: ``gunicorn -c example_app/gunicorn.conf.py``.

One gevent worker: every stream is a greenlet, so one process holds thousands
of them. It is one worker because the example uses the in-process bus: a job
and the tabs that watch it must share a process.
"""

wsgi_app = "example_app.app:create_app()"
bind = "127.0.0.1:8000"
worker_class = "gevent"
workers = 1
worker_connections = 1000
graceful_timeout = 5
accesslog = "-"
# Stream URLs carry a token that opens the stream to whoever holds it: log
# paths without their query strings (%(U)s, not the request line %(r)s).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
