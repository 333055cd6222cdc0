"""A fresh machine: the package installs into a new virtual environment with
nothing but its own dependencies, and the example app starts and streams under
gunicorn's gevent worker, with the newest versions and with the lowest ones
``setup.cfg`` allows."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.harness import ROOT, Server
from tests.redisproc import RedisProcess


def lower_bounds(*extras: str) -> dict[str, str]:
    """``{name: version}`` of every ``>=`` bound in ``install_requires`` and in
    the given extras."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options"]["install_requires"].strip().splitlines()
    for extra in extras:
        lines += parser["options.extras_require"][extra].strip().splitlines()
    bounds = {}
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        (spec,) = (s for s in requirement.specifier if s.operator == ">=")
        bounds[requirement.name] = spec.version
    return bounds


def fresh_venv(tmp_path: Path, target: str, bounds: dict[str, str] | None) -> dict[str, str]:
    """A new virtual environment in ``tmp_path/venv`` with ``target`` installed
    (at the versions of ``bounds`` when given); ``{name: version}`` of what it holds."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    install: list[str | Path] = [venv / "bin" / "pip", "install", "-q", target]
    if bounds is not None:
        constraints = tmp_path / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in bounds.items()))
        install += ["-c", constraints]
    run(*install)
    listed = subprocess.run(
        [venv / "bin" / "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    for name, version in (bounds or {}).items():
        assert Version(installed[canonicalize_name(name)]) == Version(version), (name, installed)
    return installed


def first_event(client: httpx.Client) -> dict[str, object]:
    """Start a job of the example and read the first event of its stream."""
    job = client.post("/jobs", json={"kind": "report"})
    assert job.status_code == 201, job.text
    with client.stream("GET", job.json()["url"]) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        received = ""
        for text in stream.iter_text():
            received += text
            if "\n\n" in received:
                break
    first = re.search(r"^data: (.*)$", received, re.M)
    assert first is not None, received
    return dict(json.loads(first[1]))


def clean_env() -> dict[str, str]:
    """The environment without anything that points at the test's own Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(*command: str | Path, timeout: float = 240) -> None:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


@pytest.mark.parametrize("versions", ["newest", "lowest"])
def test_example_app_starts_from_a_fresh_virtualenv(tmp_path: Path, versions: str) -> None:
    bounds = lower_bounds() if versions == "lowest" else None
    installed = fresh_venv(tmp_path, str(ROOT), bounds)
    # Nothing from the tests' environment: no test extras, no redis.
    assert "pytest" not in installed and "redis" not in installed, installed

    server = Server(
        app=None,  # the config file names it
        gunicorn=[str(tmp_path / "venv" / "bin" / "gunicorn")],
        extra_args=("-c", "example_app/gunicorn.conf.py"),
        base_env=clean_env(),
        ready_path="/",
    )
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "sse-sessions.mjs" in page.text  # the import map names the client
        assert client.get("/api/sse-sessions.mjs").status_code == 200
        assert first_event(client)["type"] == "connected"


def test_the_redis_and_metrics_extras_work_at_their_lowest_versions(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    """``pip install '.[redis,metrics]'`` at the lowest versions setup.cfg
    allows: redis-py takes up hiredis, the metrics module loads, and the
    example runs on Redis with two workers."""
    bounds = lower_bounds("redis", "metrics")
    installed = fresh_venv(tmp_path, f"{ROOT}[redis,metrics]", bounds)
    assert "pytest" not in installed, installed
    python = tmp_path / "venv" / "bin" / "python"
    run(
        python,
        "-c",
        "import redis.utils, flask_sse_sessions.metrics;"
        " assert redis.utils.HIREDIS_AVAILABLE, 'redis-py does not use this hiredis'",
    )
    server = Server(
        app=None,
        gunicorn=[str(tmp_path / "venv" / "bin" / "gunicorn")],
        extra_args=("-c", "example_app/gunicorn.conf.py", "-w", "2"),
        base_env={**clean_env(), "REDIS_URL": redis_server.url, "SECRET_KEY": "startup-test"},
        ready_path="/",
    )
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert first_event(client)["type"] == "connected"
    assert redis_server.client().keys("batchline:job:*")  # the job list is in Redis


def test_ci_runs_the_readme_test_command() -> None:
    """The README's test command and ``.ci/run``'s are the same, word for word."""
    readme = (ROOT / "README.rst").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^    (apt-get update .*python -m pytest)$", readme, re.M)
    assert command is not None, "no test command in the README's quick start"
    assert command[1] in ci.splitlines()
