"""The competitors, installed by the harness from PyPI into virtual environments of
their own, so that none of their dependencies reaches ours.

``~/.cache/flask-sse-sessions-bench/<kind>-venv`` (``$XDG_CACHE_HOME`` if set) is
made with ``python -m venv`` and ``pip install`` on first use and reused after;
it is made again when the requirements below change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from .servers import log

COMPETITORS = ("sse-starlette", "flask-sse")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "flask-sse-sessions-bench"
)
# The distributions whose versions each competitor's results record.
DISTRIBUTIONS = {
    "sse-starlette": ("sse-starlette", "starlette", "anyio", "uvicorn", "uvloop", "httptools"),
    "flask-sse": ("flask-sse", "flask", "gunicorn", "gevent", "redis", "hiredis"),
}


def requirements(kind: str) -> list[str]:
    """What ``pip install`` gets for ``kind``.

    sse-starlette: its latest release and ``uvicorn[standard]``, as users deploy it.
    flask-sse: 1.0.0 (its latest), with the Flask, gunicorn and gevent that ours
    runs with here, so that only the library differs (and ``packaging``, which
    gunicorn's gevent worker imports without declaring it); redis-py comes as
    its dependency.
    """
    if kind == "sse-starlette":
        return ["sse-starlette", "uvicorn[standard]"]
    if kind == "flask-sse":
        ours = ("flask", "gunicorn", "gevent", "packaging")
        return ["flask-sse==1.0.0", *(f"{name}=={version(name)}" for name in ours)]
    raise ValueError(kind)


def python(kind: str) -> Path:
    """The interpreter of ``kind``'s virtual environment, made on first use."""
    venv = CACHE / f"{kind}-venv"
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join(requirements(kind)) + "\n"
    interpreter = venv / "bin" / "python"
    if interpreter.exists() and stamp.exists() and stamp.read_text() == wanted:
        return interpreter
    log(f"installing {kind} into {venv} (first use): {' '.join(requirements(kind))}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(interpreter), "-m", "pip", "install", "-q", *requirements(kind)], check=True
    )
    stamp.write_text(wanted)
    return interpreter


def versions(kind: str) -> dict[str, str]:
    """The installed versions of ``kind``'s distributions ("-" for one not installed);
    for flask-sse, the ``redis-server`` the harness starts too."""
    script = (
        "import json, sys\n"
        "from importlib.metadata import PackageNotFoundError, version\n"
        "def get(name):\n"
        "    try:\n"
        "        return version(name)\n"
        "    except PackageNotFoundError:\n"
        "        return '-'\n"
        "print(json.dumps({name: get(name) for name in sys.argv[1:]}))\n"
    )
    out = subprocess.run(
        [str(python(kind)), "-c", script, *DISTRIBUTIONS[kind]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, str] = json.loads(out)
    if kind == "flask-sse":
        found["redis-server"] = redis_server_version()
    return found


def redis_server_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "-"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return next((part[2:] for part in out.split() if part.startswith("v=")), out.strip())
