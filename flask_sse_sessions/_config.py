"""The ``SSE_SESSIONS_*`` config keys: defaults, validation, one frozen object per app."""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

DEFAULTS: Mapping[str, Any] = {
    "SSE_SESSIONS_REDIS_URL": None,
    "SSE_SESSIONS_REDIS_OPTIONS": {},
    "SSE_SESSIONS_KEY_PREFIX": "sse_sessions",
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": 30,
    "SSE_SESSIONS_HEARTBEAT_FORMAT": "event",
    "SSE_SESSIONS_RETRY_MS": 3000,
    "SSE_SESSIONS_HISTORY_SIZE": 100,
    "SSE_SESSIONS_HISTORY_TTL": 3600,
    "SSE_SESSIONS_REPLAY_ON_CONNECT": "latest",
    "SSE_SESSIONS_QUEUE_SIZE": 256,
    "SSE_SESSIONS_MAX_CONNECTIONS": 10000,
    "SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION": None,
    "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": None,
    "SSE_SESSIONS_MAX_STREAM_SECONDS": 3600,
    "SSE_SESSIONS_MAX_EVENT_BYTES": 65536,
    "SSE_SESSIONS_CORS_ORIGINS": [],
    "SSE_SESSIONS_SESSION_ID_PATTERN": r"[A-Za-z0-9_-]{1,128}",
    "SSE_SESSIONS_REQUIRE_TOKEN": None,
    "SSE_SESSIONS_TOKEN_MAX_AGE": 3600,
    "SSE_SESSIONS_MAX_STORED_SESSIONS": 100000,
    "SSE_SESSIONS_SEND_BUFFER_BYTES": 65536,
    "SSE_SESSIONS_CLIENT_TIMEOUT": 30,
}

DEFAULT_MAX_CONNECTIONS_PER_USER = 32
"""The per-user limit of users named by the identify hook when
``SSE_SESSIONS_MAX_CONNECTIONS_PER_USER`` is None; plain addresses then have none."""


class ConfigError(ValueError):
    """An ``SSE_SESSIONS_*`` value that cannot work; the message names the key."""


@dataclass(frozen=True)
class Config:
    """The validated settings of one app, read once when the blueprint is registered."""

    redis_url: str | None
    redis_options: Mapping[str, Any]
    key_prefix: str
    heartbeat_interval: float
    heartbeat_format: str
    retry_ms: int
    history_size: int
    history_ttl: float
    replay_on_connect: str
    queue_size: int
    max_connections: int
    max_connections_per_session: int | None
    max_connections_per_user: int | None
    max_stream_seconds: float | None
    max_event_bytes: int
    cors_origins: frozenset[str]
    session_id_pattern: re.Pattern[str]
    require_token: bool | None
    token_max_age: int
    max_stored_sessions: int
    send_buffer_bytes: int | None
    client_timeout: float | None

    @classmethod
    def from_app_config(cls, config: MutableMapping[str, Any]) -> Config:
        """Fill in the defaults of ``config`` (a Flask ``app.config``) and validate them.

        :raises ConfigError: a value of the wrong type or out of range.
        """
        for key, value in DEFAULTS.items():
            config.setdefault(key, type(value)(value) if isinstance(value, list | dict) else value)
        r = _Reader(config)
        pattern = r.text("SESSION_ID_PATTERN")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"SSE_SESSIONS_SESSION_ID_PATTERN is not a regex: {exc}") from None
        origins = config["SSE_SESSIONS_CORS_ORIGINS"]
        if isinstance(origins, str) or not all(isinstance(o, str) for o in origins):
            raise ConfigError(
                "SSE_SESSIONS_CORS_ORIGINS must be a list of origins such as"
                f' ["https://app.example.com"], not {origins!r}'
            )
        options = config["SSE_SESSIONS_REDIS_OPTIONS"]
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise ConfigError(
                "SSE_SESSIONS_REDIS_OPTIONS must be a dict of keyword arguments for"
                f' redis-py such as {{"socket_timeout": 2}}, not {options!r}'
            )
        return cls(
            redis_url=r.optional_text("REDIS_URL"),
            redis_options=MappingProxyType(dict(options)),
            key_prefix=r.text("KEY_PREFIX"),
            heartbeat_interval=r.number("HEARTBEAT_INTERVAL"),
            heartbeat_format=r.choice("HEARTBEAT_FORMAT", ("event", "comment")),
            retry_ms=r.integer("RETRY_MS", minimum=0),
            history_size=r.integer("HISTORY_SIZE", minimum=1),
            history_ttl=r.number("HISTORY_TTL"),
            replay_on_connect=r.choice("REPLAY_ON_CONNECT", ("latest", "all", "none")),
            queue_size=r.integer("QUEUE_SIZE", minimum=1),
            max_connections=r.integer("MAX_CONNECTIONS", minimum=1),
            max_connections_per_session=r.optional_integer("MAX_CONNECTIONS_PER_SESSION"),
            max_connections_per_user=r.optional_integer("MAX_CONNECTIONS_PER_USER"),
            max_stream_seconds=r.optional_number("MAX_STREAM_SECONDS"),
            max_event_bytes=r.integer("MAX_EVENT_BYTES", minimum=64),
            cors_origins=frozenset(o.rstrip("/") for o in origins),
            session_id_pattern=compiled,
            require_token=r.optional_boolean("REQUIRE_TOKEN"),
            token_max_age=r.integer("TOKEN_MAX_AGE", minimum=1),
            max_stored_sessions=r.integer("MAX_STORED_SESSIONS", minimum=1),
            send_buffer_bytes=r.optional_integer("SEND_BUFFER_BYTES", minimum=4096),
            client_timeout=r.optional_number("CLIENT_TIMEOUT"),
        )


class _Reader:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config

    def _get(self, name: str) -> tuple[str, Any]:
        key = "SSE_SESSIONS_" + name
        return key, self._config[key]

    def text(self, name: str) -> str:
        key, value = self._get(name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a non-empty string, not {value!r}")
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self._get(name)[1] is None else self.text(name)

    def number(self, name: str) -> float:
        key, value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{key} must be a number of seconds above 0, not {value!r}")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        return None if self._get(name)[1] is None else self.number(name)

    def integer(self, name: str, minimum: int) -> int:
        key, value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{key} must be an integer of at least {minimum}, not {value!r}")
        return value

    def optional_integer(self, name: str, minimum: int = 1) -> int | None:
        return None if self._get(name)[1] is None else self.integer(name, minimum)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        key, value = self._get(name)
        if value not in choices:
            listed = ", ".join(map(repr, choices))
            raise ConfigError(f"{key} must be one of {listed}, not {value!r}")
        return str(value)

    def optional_boolean(self, name: str) -> bool | None:
        key, value = self._get(name)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{key} must be None, True or False, not {value!r}")
        return value
