"""The blueprint's views: every check happens here, before a byte is streamed."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys

from flask import Response, request

from ._auth import TokenError, check_token
from ._backend import BackendUnavailable
from ._client import client_response
from ._direct import direct_socket
from ._events import parse_event_id
from ._registry import LimitExceeded
from ._server import DRAIN, check_gevent_patched
from ._sockets import tune_stream_socket
from ._state import State, get_state
from ._stream import open_stream
from ._watcher import WATCHER
from .metrics import exporter
from .signals import connection_opened

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_MAX_LAST_EVENT_ID = 64
_UNSENT_STREAM = "flask_sse_sessions.unsent_stream"

logger = logging.getLogger("flask_sse_sessions")


def error_response(
    status: int, code: str, message: str, *, retry_after: int | None = None
) -> Response:
    """The JSON error body every route answers with."""
    response = Response(
        json.dumps({"error": code, "message": message}),
        status=status,
        mimetype="application/json",
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


_REASONS = {401: "unauthorized", 403: "forbidden"}


def _refuse(
    state: State, session_id: str, response: Response, reason: str | None = None
) -> Response:
    """Count and log (at INFO, never the token) a refused stream or latest
    request: 401, 403, 429 (``reason``: the limit) or 503 while draining."""
    reason = reason or _REASONS.get(response.status_code)
    if reason is None:
        return response  # a bad request, not a refusal
    state.counters.refused[reason] += 1
    # The path, never the query string: that is where the token is.
    logger.info(
        "refused %s (session %r) from %s: %d %s",
        request.path,
        session_id,
        request.remote_addr,
        response.status_code,
        reason,
    )
    return response


def _query_arg(name: str) -> str | None:
    """A query argument of the request; most streams come without a query
    string, and then there is nothing to parse."""
    if not request.environ.get("QUERY_STRING"):
        return None
    return request.args.get(name)


def _admit(state: State, session_id: str) -> float | Response:
    """Check the session id, the token and the authorize hook.

    :returns: when access ends (the token's expiry, epoch seconds; inf without
        one), or the error response.
    """
    config = state.config
    if not config.session_id_pattern.fullmatch(session_id):
        return error_response(
            400, "invalid_session_id", "The session id is not one this server issues."
        )
    expires = math.inf
    token = _query_arg("token")
    if token is not None or state.require_token():
        if not token:
            return error_response(
                401, "token_required", "This stream needs the signed URL the page was given."
            )
        try:
            expires = check_token(
                state.app, token, session_id, state.bound_user_key(), config.token_max_age
            )
        except TokenError as exc:
            return error_response(401, "invalid_token", str(exc).capitalize() + ".")
    hook = state.hooks.authorize_hook
    if hook is not None and not hook(session_id):
        return error_response(403, "forbidden", "You may not watch this session.")
    return expires


def stream(session_id: str) -> Response:
    """``GET /stream/<session_id>``: the event stream of one session."""
    state = get_state("stream")
    backend = state.backend
    _first_stream_checks()
    if DRAIN.draining:
        retry_after = state.registry.retry_after
        return _refuse(
            state,
            session_id,
            error_response(
                503,
                "draining",
                "This server is shutting down; connect again shortly.",
                retry_after=retry_after + random.randint(0, retry_after),
            ),
            "draining",
        )
    admitted = _admit(state, session_id)
    if isinstance(admitted, Response):
        return _refuse(state, session_id, admitted)
    environ = request.environ
    last_id = environ.get("HTTP_LAST_EVENT_ID") or _query_arg("lastEventId") or None
    after = None
    if last_id is not None:
        after = parse_event_id(last_id) if len(last_id) <= _MAX_LAST_EVENT_ID else None
        if after is None:
            return error_response(
                400, "invalid_last_event_id", "Last-Event-ID is not an id this server sent."
            )
    try:
        latest = backend.latest(session_id)
        if after is not None and latest is not None and latest.terminal and after >= latest.key:
            return Response(status=204)  # the session is over: EventSource stops
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        try:
            user_key, limit_key, user_limit = state.client()
            conn = state.registry.open(
                session_id,
                user_key,
                sock,
                limit_key=limit_key,
                user_limit=user_limit,
                out=direct_socket(environ),
            )
        except LimitExceeded as exc:
            return _refuse(
                state,
                session_id,
                error_response(
                    429,
                    "too_many_connections",
                    str(exc).capitalize() + ".",
                    retry_after=state.registry.retry_after,
                ),
                exc.scope,
            )
        try:
            # Live events reach the connection from here on; only then is
            # history read, so nothing falls between the two.
            backend.subscribe(session_id)
        except BaseException:
            state.registry.close(conn)
            raise
        try:
            body = open_stream(state, conn, after, admitted)
        except BaseException:
            state.close_connection(conn)
            raise
    except BackendUnavailable as exc:
        return _unavailable(state, exc)
    # Until the server holds the body, an error anywhere (a signal receiver, an
    # after_request hook) means nobody else will close it: close_unsent_stream.
    environ[_UNSENT_STREAM] = body
    config = state.config
    tune_stream_socket(sock, config.send_buffer_bytes, config.client_timeout)
    WATCHER.watch(conn)
    state.counters.opened += 1
    logger.debug("stream opened: session %r, user %r", session_id, conn.user_key)
    if connection_opened.receivers:
        connection_opened.send(state.app, session_id=session_id, user_key=conn.user_key)
    return Response(
        body,
        headers=STREAM_HEADERS,
        content_type=STREAM_CONTENT_TYPE,
        direct_passthrough=True,
    )


_checked_pid = 0


def _first_stream_checks() -> None:
    """Once per process, at its first stream: watch for the worker stopping
    (a ``--preload`` app was registered before the worker existed), and warn
    if gevent serves this stream without having patched ``socket``."""
    global _checked_pid
    pid = os.getpid()
    if _checked_pid == pid:
        return
    _checked_pid = pid
    DRAIN.attach()
    exporter()
    greenlet = sys.modules.get("greenlet")
    if greenlet is not None and greenlet.getcurrent().parent is not None:
        check_gevent_patched()


def close_unsent_stream(exc: BaseException | None) -> None:
    """``teardown_request``: free the connection of a stream response that a
    failing request threw away before the server could take (and close) it."""
    body = request.environ.pop(_UNSENT_STREAM, None)
    if exc is not None and body is not None:
        body.close()


def _unavailable(state: State, exc: BackendUnavailable) -> Response:
    # The detail names hosts and addresses: it goes to the log, not to clients.
    # The backend logs the start of an outage once, as a warning.
    logger.debug("answered 503 to %s: %s", request.path, exc)
    return error_response(
        503,
        "unavailable",
        "Live events are unavailable right now; try again shortly.",
        retry_after=state.registry.retry_after,
    )


def latest(session_id: str) -> Response:
    """``GET /stream/<session_id>/latest``: the polling fallback.

    Answers ``{"id": ..., "type": ..., "data": {...}}`` with the event's id as
    ETag, so a poller sending If-None-Match gets 304 until something new happens.
    """
    state = get_state("latest")
    admitted = _admit(state, session_id)
    if isinstance(admitted, Response):
        return _refuse(state, session_id, admitted)
    try:
        event = state.backend.latest(session_id)
    except BackendUnavailable as exc:
        return _unavailable(state, exc)
    if event is None:
        return error_response(404, "not_found", "This session has no events yet.")
    body = f'{{"id":"{event.id}","type":{json.dumps(event.type)},"data":{event.json}}}'
    # Access is checked per request: no shared cache may keep the answer.
    response = Response(
        body, mimetype="application/json", headers={"Cache-Control": "private, no-cache"}
    )
    response.set_etag(event.id)
    response.make_conditional(request)
    return response


def client_script(name: str) -> Response:
    """The browser client: ``sse-sessions.js``, ``.mjs`` or ``.d.ts``."""
    return client_response(name, request)


def add_cors_headers(response: Response) -> Response:
    """Allow cross-site reads for the origins in ``SSE_SESSIONS_CORS_ORIGINS`` only."""
    allowed = get_state("cors").config.cors_origins
    if not allowed:
        return response
    if "*" not in allowed:
        # Every answer depends on Origin, also one that allows nothing: a cache
        # must not serve the answer to one origin (or to none) to another.
        response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin is None:
        return response
    if "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin.rstrip("/") in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
    else:
        return response
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET"
        response.headers["Access-Control-Allow-Headers"] = "Last-Event-ID, Cache-Control"
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        # The browser client reads it (with fetch) to know when to come back.
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    return response
