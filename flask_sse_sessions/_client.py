"""The browser client, served by the blueprint as a classic script and a module.

``static/client.js`` is written once, as the body of both: the classic script
wraps it in a function that defines ``window.SSESessions``; the module appends
its exports. ``static/sse-sessions.d.ts`` types both.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import Request, Response

_STATIC = Path(__file__).parent / "static"

_CLASSIC = """\
/* flask-sse-sessions browser client: defines window.SSESessions */
(function (global) {
"use strict";
%s
global.SSESessions = { connect: connect };
})(typeof window !== "undefined" ? window : globalThis);
"""

_MODULE = """\
/* flask-sse-sessions browser client, as an ES module */
%s
export { connect };
export default { connect };
"""


@functools.cache
def _files() -> dict[str, tuple[str, bytes]]:
    core = (_STATIC / "client.js").read_text("utf-8")
    types = (_STATIC / "sse-sessions.d.ts").read_text("utf-8")
    return {
        "sse-sessions.js": ("text/javascript; charset=utf-8", (_CLASSIC % core).encode()),
        "sse-sessions.mjs": ("text/javascript; charset=utf-8", (_MODULE % core).encode()),
        "sse-sessions.d.ts": ("application/typescript; charset=utf-8", types.encode()),
    }


def client_response(name: str, request: Request) -> Response:
    content_type, body = _files()[name]
    response = Response(body, content_type=content_type, headers={"Cache-Control": "no-cache"})
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    response.make_conditional(request)
    return response
