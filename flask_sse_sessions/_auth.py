"""Signed stream tokens: a URL that opens one session's stream for a while.

EventSource cannot send headers, so the proof travels in the query string: a
token signed with the app's secret key that names the session and expires after
``SSE_SESSIONS_TOKEN_MAX_AGE``. When the app identifies users it binds the user
too, by a keyed hash: the token's text is readable (base64 JSON) and lands in
access logs, so it holds nothing but the session id and that hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from flask import Flask, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ._state import get_state

_SALT = "flask-sse-sessions.stream-token"
_USER_SALT = b"flask-sse-sessions.stream-token.user"


class TokenError(Exception):
    """A token is missing, forged, for another session or user, or expired."""


def _secret_key(app: Flask) -> bytes:
    key = app.secret_key
    if not key:
        raise RuntimeError(
            "flask-sse-sessions signs stream tokens with the app's secret key:"
            " set app.config['SECRET_KEY']"
        )
    return key.encode() if isinstance(key, str) else bytes(key)


def _serializer(app: Flask) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret_key(app), salt=_SALT)


def _user_digest(app: Flask, user_key: str | None) -> str | None:
    """A keyed hash of the user: equal for the same user, meaningless without the key."""
    if user_key is None:
        return None
    key = hmac.new(_secret_key(app), _USER_SALT, hashlib.sha256).digest()
    digest = hmac.new(key, user_key.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(app: Flask, session_id: str, user_key: str | None) -> str:
    return _serializer(app).dumps([session_id, _user_digest(app, user_key)])


def check_token(
    app: Flask, token: str, session_id: str, user_key: str | None, max_age: int
) -> float:
    """Verify ``token`` for this session and user.

    :returns: when it expires, in seconds since the epoch.
    :raises TokenError: with a sentence for the client.
    """
    if not app.secret_key:
        # Nothing was signed here: a public app without a key answers 401, not 500.
        raise TokenError("the stream token is not valid")
    try:
        value, signed_at = _serializer(app).loads(token, max_age=max_age, return_timestamp=True)
    except SignatureExpired:
        raise TokenError("the stream token has expired: ask the page for a new one") from None
    except BadSignature:
        raise TokenError("the stream token is not valid") from None
    # itsdangerous counts whole seconds and lets a token through for up to a
    # second after ``signed_at + max_age``, when its stream would end at once.
    expires = float(signed_at.timestamp()) + max_age
    if expires <= time.time():
        raise TokenError("the stream token has expired: ask the page for a new one")
    if value != [session_id, _user_digest(app, user_key)]:
        raise TokenError("the stream token was issued for another session or user")
    return expires


def stream_url(session_id: str, **values: Any) -> str:
    """The URL of a session's stream with a signed ``token`` for it.

    The token binds the session and, if the app has an ``@sse.identify`` hook,
    the user it names (by a keyed hash: the token's text does not contain
    it); it expires after ``SSE_SESSIONS_TOKEN_MAX_AGE`` seconds,
    and an open stream ends then too (the browser client fetches a new page or
    URL to go on). Needs an app context (a request context to call the identify
    hook); ``values`` go to :func:`flask.url_for` (``_external=True`` and so on).

    :raises ValueError: an invalid session id.
    """
    state = get_state("stream_url")
    state.check_session_id(session_id)
    token = make_token(state.app, session_id, state.bound_user_key())
    return url_for(f"{state.endpoint_prefix}.stream", session_id=session_id, token=token, **values)
