"""The flask-sse-sessions example: live background jobs and a streamed answer."""
