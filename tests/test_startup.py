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
from packaging.version import Version

from tests.harness import ROOT, Server


def lower_bounds() -> dict[str, str]:
    """``{name: version}`` of every ``>=`` bound in ``install_requires``."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    bounds = {}
    for line in parser["options"]["install_requires"].strip().splitlines():
        requirement = Requirement(line)
        (spec,) = (s for s in requirement.specifier if s.operator == ">=")
        bounds[requirement.name] = spec.version
    return bounds


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
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    install = [venv / "bin" / "pip", "install", "-q", ROOT]
    if versions == "lowest":
        constraints = tmp_path / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in lower_bounds().items()))
        install += ["-c", constraints]
    run(*install)
    # Nothing from the tests' environment: no test extras, no redis.
    listed = subprocess.run(
        [venv / "bin" / "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert "pytest" not in installed and "redis" not in installed, installed
    if versions == "lowest":
        for name, version in lower_bounds().items():
            assert Version(installed[name]) == Version(version), (name, installed)

    server = Server(
        app=None,  # the config file names it
        gunicorn=[str(venv / "bin" / "gunicorn")],
        extra_args=("-c", "example_app/gunicorn.conf.py"),
        base_env=clean_env(),
        ready_path="/",
    )
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "sse-sessions.mjs" in page.text  # the import map names the client
        assert client.get("/api/sse-sessions.mjs").status_code == 200

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
    assert json.loads(first[1])["type"] == "connected"


def test_ci_runs_the_readme_test_command() -> None:
    """The README's test command and ``.ci/run``'s are the same, word for word."""
    readme = (ROOT / "README.rst").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^    (apt-get update .*python -m pytest)$", readme, re.M)
    assert command is not None, "no test command in the README's quick start"
    assert command[1] in ci.splitlines()
