"""The README's staging command as written: `pip install -e .[serve]`, then gunicorn's gevent
worker serving app.wsgi:application, with /metrics summing every worker's counts."""
from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement

from tests.conftest import REPO
from tests.gunicorn_process import running_gunicorn

README = REPO / "README.md"
WORKERS = 2


def readme_command() -> list[str]:
    """The staging command exactly as the README gives it (env assignments first)."""
    m = re.search(r"`(INTERCHANGE_CONFIG=\S+ gunicorn [^`]+)`", README.read_text(encoding="utf-8"))
    assert m, "the README no longer shows the gunicorn command"
    return shlex.split(m.group(1))


def _declared_closure(extra: str) -> set[str]:
    """Normalised names of every distribution `pip install .[extra]` installs, from pyproject.toml
    and the installed dependencies' own declarations."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in md.requires(req.name) or ()]
        except md.PackageNotFoundError:
            pass  # not installed here: its own dependencies are not ours to check
    return seen


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_serve_extra_declares_what_the_gevent_worker_imports():
    spec = importlib.util.find_spec("gunicorn.workers.ggevent")
    if spec is None:
        pytest.skip("gunicorn is not installed (pip install -e .[serve])")
    tree = ast.parse(Path(spec.origin).read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                and n.level == 0}
    owners = md.packages_distributions()
    needed = {_norm(d) for m in modules - set(sys.stdlib_module_names) for d in owners.get(m, [m])}
    assert needed - _declared_closure("serve") == set()


@pytest.fixture
def gunicorn(stack, tmp_path):
    env_words = []
    argv = readme_command()
    while "=" in argv[0]:
        env_words.append(argv.pop(0))
    assert argv[0] == "gunicorn" and argv[-1] == "app.wsgi:application"
    args = argv[1:]
    args[args.index("-w") + 1] = str(WORKERS)
    env = dict(w.split("=", 1) for w in env_words)
    env["INTERCHANGE_CONFIG"] = str(REPO / "config-mock.toml")  # the README's config.toml, for the mock
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    with running_gunicorn(args, {**env, "MOCK_URL": stack.mock_url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
                          ) as (url, workers):
        yield url, workers, multiproc


def _requests_total(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("interchange_requests_total{"))


def test_the_readme_gunicorn_command_serves_and_metrics_sum_the_workers(gunicorn):
    url, workers, multiproc = gunicorn
    assert len(workers) == WORKERS
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    sent = 0
    # New connections until both workers have served (each writes its own counter file).
    while sent < 200 and len({p.stem.rsplit("_", 1)[1] for p in multiproc.glob("counter_*.db")}) < WORKERS:
        r = requests.post(url + "/v1/chat/completions", json=body, headers={"Connection": "close"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hello! I'm a mock assistant. How can I help you today?"
        sent += 1
    served_by = {int(p.stem.rsplit("_", 1)[1]) for p in multiproc.glob("counter_*.db")}
    assert served_by == set(workers)
    for _ in range(4):  # whichever worker answers /metrics, it counts both
        metrics = requests.get(url + "/metrics", headers={"Connection": "close"}, timeout=10)
        assert metrics.status_code == 200
        assert _requests_total(metrics.text) == sent
