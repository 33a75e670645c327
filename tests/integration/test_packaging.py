"""`interchange mock` from an installed package, not a checkout: the wheel built from this tree
carries the scenario fixtures (scenarios/, installed as mocks.fixtures) and the mock's test
service account, and the installed mock, run from outside the checkout, loads every fixture
and answers a scenario; `--scenarios DIR` still replaces them.

The wheel is built without build isolation (the running environment's setuptools, no index)
and installed into a fresh venv with `--no-deps`; the dependencies come from the running
environment's site-packages through a .pth file (plain paths, so its editable install of this
checkout is not among them)."""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import requests

from mocks.scenarios import DEFAULT_ROOT, ScenarioLibrary
from tests.conftest import REPO, ServerProcess

TEXT = "Hello! I'm a mock assistant. How can I help you today?"  # scenarios/*/text.yaml
# What a build of the working tree must not pick up or leave behind.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "reports",
                                     "node_modules", ".pytest_cache")


def run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this working tree installed; its directory."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "--no-index",
        "-q", "-w", tmp / "dist", cwd=tmp)
    (wheel,) = (tmp / "dist").glob("interchange-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp).strip())
    deps = [p for p in (*site.getsitepackages(), sysconfig.get_path("purelib")) if Path(p).is_dir()]
    (purelib / "interchange-test-deps.pth").write_text("".join(f"{p}\n" for p in dict.fromkeys(deps)))
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp)
    return venv


def test_the_installed_package_finds_its_own_fixtures(installed):
    where = run(installed / "bin" / "python", "-c", "import mocks.scenarios as s; print(s.__file__); "
                "print(s.DEFAULT_ROOT)", cwd=installed).split()
    purelib = run(installed / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                  cwd=installed).strip()
    assert where == [f"{purelib}/mocks/scenarios.py", f"{purelib}/mocks/fixtures"]
    fixtures = Path(where[1])
    bundled = sorted(p.relative_to(DEFAULT_ROOT) for p in DEFAULT_ROOT.rglob("*") if p.is_file())
    assert sorted(p.relative_to(fixtures) for p in fixtures.rglob("*") if p.is_file()) == bundled
    assert (Path(purelib) / "mocks" / "testdata" / "vertex-service-account.json").is_file()


def test_the_installed_package_has_the_admin_pages_templates(installed):
    """app/admin_templates ships as package data: the admin page renders from an install."""
    listed = run(installed / "bin" / "python", "-c", "from app.admin_page import TEMPLATES; "
                 "print(TEMPLATES); print(*sorted(p.name for p in TEMPLATES.iterdir()))", cwd=installed).splitlines()
    assert "site-packages" in listed[0]
    assert listed[1].split() == sorted(p.name for p in (REPO / "app" / "admin_templates").iterdir())


def chat(mock: ServerProcess, scenario: str) -> requests.Response:
    return requests.post(mock.url + "/v1/chat/completions", timeout=10,
                         headers={"Authorization": "Bearer sk-test-key", "X-Mock-Scenario": scenario},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})


def test_installed_mock_runs_outside_the_checkout_and_answers_a_scenario(installed, tmp_path):
    mock = ServerProcess(["mock"], command=[str(installed / "bin" / "interchange")], cwd=tmp_path)
    try:
        r = chat(mock, "text")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == TEXT
        listed = requests.get(mock.url + "/_mock/scenarios", timeout=5).json()
        assert sorted(listed["openai"]) == sorted(s.name for s in ScenarioLibrary(DEFAULT_ROOT).all()
                                                  if s.provider == "openai")
        # The Vertex emulation's token endpoint loads the test service account from the install.
        assert requests.get(mock.url + "/_mock/oauth", timeout=5).json()["token_requests"] == 0
    finally:
        mock.stop()


def test_installed_mock_takes_another_scenario_folder(installed, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(DEFAULT_ROOT, folder)
    text = folder / "openai" / "text.yaml"
    text.write_text(text.read_text().replace(TEXT, "Hello from my own fixtures."))
    mock = ServerProcess(["mock", "--scenarios", str(folder)], command=[str(installed / "bin" / "interchange")],
                         cwd=tmp_path)
    try:
        r = chat(mock, "text")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hello from my own fixtures."
    finally:
        mock.stop()
