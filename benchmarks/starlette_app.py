"""sse-starlette on uvicorn, as the benchmark runs it (in its own virtual environment):

    python -m uvicorn benchmarks.starlette_app:app --host 127.0.0.1 --port P \\
        --backlog 4096 --no-access-log --timeout-graceful-shutdown 2

One uvicorn process, ``uvicorn[standard]``'s automatic choice of event loop and
HTTP parser (``/debug/stats`` says which ran), no ``--limit-concurrency``.
The routes mirror ``benchmarks/floor.py`` (same bodies, same payload with ``"s0"``
taken just before each fan-out):

``GET /api/stream/<sid>``
    an :class:`~sse_starlette.EventSourceResponse` over one :class:`asyncio.Queue`
    per subscriber: the connected frame first (``retry: 3000``), then whatever
    the queue gets. sse-starlette's ``ping`` sends the same heartbeat as ours
    every ``SSE_BENCH_HEARTBEAT`` seconds. Frames end in ``\\n`` (``sep``), as
    ours do; the headers are sse-starlette's with ``Cache-Control: no-cache``.
``POST /publish/<sid>``, ``POST /publish-many``, ``POST /load``
    each event is encoded once and its bytes are put in every subscriber's
    queue (as ours and the floor encode once).
``GET /debug/stats``
    ``{"connections", "sessions", "pid", "rss_kib", "loop", "http"}``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from benchmarks.common import (
    LOAD_TICK,
    EventIds,
    connected_json,
    dumps,
    heartbeat_json,
    load_ticks,
    progress,
    publish_all,
    rss_kib,
)

HEARTBEAT = float(os.environ.get("SSE_BENCH_HEARTBEAT", "5"))
HEADERS = {"Cache-Control": "no-cache"}

sessions: dict[str, set[asyncio.Queue[bytes]]] = {}
ids = EventIds()
loads: set[asyncio.Task[None]] = set()


def heartbeat() -> ServerSentEvent:
    return ServerSentEvent(data=heartbeat_json(), sep="\n")


async def stream(request: Request) -> EventSourceResponse:
    session_id = request.path_params["sid"]
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def events() -> AsyncIterator[Any]:
        subscribers = sessions.setdefault(session_id, set())
        subscribers.add(queue)
        try:
            yield {"retry": 3000, "data": connected_json(session_id)}
            while True:
                yield await queue.get()
        finally:
            subscribers.discard(queue)
            if not subscribers and sessions.get(session_id) is subscribers:
                del sessions[session_id]

    return EventSourceResponse(
        events(), ping=HEARTBEAT, ping_message_factory=heartbeat, sep="\n", headers=HEADERS
    )


def send(session_id: str, data: dict[str, Any]) -> int:
    """Encode one event once and put its bytes in each subscriber's queue."""
    payload = progress(data)
    frame = ServerSentEvent(data=dumps(payload), id=ids.next(session_id), sep="\n").encode()
    subscribers = sessions.get(session_id, ())
    for queue in subscribers:
        queue.put_nowait(frame)
    return len(subscribers)


def publish(session_ids: list[str], body: dict[str, Any]) -> list[int]:
    return publish_all(send, session_ids, body)


async def publish_one(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"reached": publish([request.path_params["sid"]], body)})


async def publish_many(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"reached": publish(body["sessions"], body)})


async def run_load(body: dict[str, Any]) -> None:
    for due in load_ticks(body):
        for session_id, data in due:
            send(session_id, data)
        await asyncio.sleep(LOAD_TICK)


async def start_load(request: Request) -> JSONResponse:
    task = asyncio.create_task(run_load(await request.json()))
    loads.add(task)
    task.add_done_callback(loads.discard)
    return JSONResponse({"started": True})


async def debug_stats(request: Request) -> JSONResponse:
    loop = type(asyncio.get_running_loop())
    return JSONResponse(
        {
            "connections": sum(len(subscribers) for subscribers in sessions.values()),
            "sessions": len(sessions),
            "pid": os.getpid(),
            "rss_kib": rss_kib(),
            "loop": f"{loop.__module__}.{loop.__qualname__}",
            "http": AutoHTTPProtocol.__name__,
        }
    )


app = Starlette(
    routes=[
        Route("/api/stream/{sid}", stream),
        Route("/publish/{sid}", publish_one, methods=["POST"]),
        Route("/publish-many", publish_many, methods=["POST"]),
        Route("/load", start_load, methods=["POST"]),
        Route("/debug/stats", debug_stats),
    ]
)
