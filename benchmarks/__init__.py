"""The benchmark harness of flask-sse-sessions: see README.rst beside this file."""
