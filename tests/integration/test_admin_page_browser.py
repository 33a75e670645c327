"""The admin page in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright
for Python, against a proxy on config-mock.toml and the mock server. Log in, see every
backend, switch the default provider, run the inspector on an OpenAI-client request to the
Bedrock backend and read the converted Converse body on the page; a screenshot of each step
goes to reports/admin-page/. Without the admin key every admin route is a 401 and shows nothing.

`python3 scripts/dev.py test` installs the chromium package when it is missing; the test
skips only where neither it nor Playwright can be had (never `playwright install`)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from app.config import load_config
from tests.conftest import REPO, ServerProcess

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_KEY = "browser-test-admin-key"
SHOTS = REPO / "reports" / "admin-page"
PROMPT = "Hello from the browser"
XSS = '<img src=x onerror="window.__xss = 1">'

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; scripts/dev.py test installs it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """Mock + proxy with the admin key; its own state store, so the switch is this test's alone."""
    mock = ServerProcess(["mock"])
    data = tmp_path_factory.mktemp("admin-state")
    try:
        proxy = ServerProcess(["serve", "--config", "config-mock.toml"],
                              env={"MOCK_URL": mock.url, "INTERCHANGE_ADMIN_KEY": ADMIN_KEY, "XDG_DATA_HOME": str(data)})
    except Exception:
        mock.stop()
        raise
    yield proxy.url, mock.url
    proxy.stop()
    mock.stop()


@pytest.fixture(scope="module")
def backends() -> dict[str, str]:
    """config-mock.toml's backends: name -> kind."""
    return {name: b.kind for name, b in load_config(REPO / "config-mock.toml").backends.items()}


@pytest.fixture(scope="module")
def browser_page():
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="interchange-chromium-")  # a fresh user-data-dir
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                       viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        problems: list[str] = []  # console errors (a CSP violation is one) and uncaught exceptions
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        yield page, problems
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_without_the_admin_key_every_admin_route_is_a_401_that_shows_nothing(proxy, backends):
    proxy, _ = proxy
    bad = {"Authorization": "Bearer not-the-admin-key"}
    answers = [requests.get(proxy + "/admin", timeout=10),
               requests.post(proxy + "/admin/login", data={"key": "not-the-admin-key"}, timeout=10),
               requests.post(proxy + "/admin/logout", timeout=10),
               requests.post(proxy + "/admin/inspect", json={"protocol": "openai"}, headers=bad, timeout=10),
               requests.get(proxy + "/admin/provider-settings", headers=bad, timeout=10),
               requests.put(proxy + "/admin/provider-settings", json={"default_provider": "openrouter"}, headers=bad,
                            timeout=10)]
    for r in answers:
        assert r.status_code == 401, (r.request.method, r.request.url)
        assert not any(f'"{name}"' in r.text or f">{name}<" in r.text for name in backends), r.text
        assert "interchange_admin" not in r.headers.get("Set-Cookie", "")


def test_the_admin_page_in_chromium(proxy, backends, browser_page):
    page, problems = browser_page
    proxy, mock = proxy
    admin = proxy + "/admin"

    # 1. No session: the login form, as a 401, and nothing of the backends.
    r = page.goto(admin)
    assert r.status == 401
    assert page.locator("#providers").count() == 0 and "bedrock" not in page.content()
    page.fill("#key", "not-the-admin-key")
    page.click("#login")
    assert page.locator("#login-error").inner_text() == "Wrong admin key."
    shot(page, "01-login-refused")

    # 2. Log in: every backend, with its kind, from the admin API.
    page.fill("#key", ADMIN_KEY)
    with page.expect_navigation():
        page.click("#login")
    assert page.url == admin
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == \
           ("interchange_admin", "/admin", True, "Strict")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it
    rows = page.locator("#providers tr")
    rows.nth(len(backends) - 1).wait_for()
    assert rows.count() == len(backends)
    shown = {rows.nth(i).get_attribute("data-backend"): rows.nth(i).locator("td").nth(1).inner_text()
             for i in range(rows.count())}
    assert shown == backends
    assert page.locator("#default-current").inner_text() == "runpod"  # config-mock.toml's default_provider
    bedrock = page.locator('#providers tr[data-backend="bedrock"] td')
    assert "claude-3-sonnet" in bedrock.nth(3).inner_text() and bedrock.nth(4).inner_text() == "present"
    shot(page, "02-backends")

    # 3. Switch the default provider (the page's PUT, with its CSRF token): the API agrees.
    page.select_option("#default-select", "openrouter")
    page.click("#default-save")
    page.locator("#default-status", has_text="default provider is now openrouter").wait_for()
    assert page.locator("#default-current").inner_text() == "openrouter"
    assert page.locator('#providers tr[data-backend="openrouter"] td').first.inner_text() == "openrouter (default)"
    settings = requests.get(proxy + "/admin/provider-settings", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                            timeout=10).json()
    assert settings["default_provider"] == "openrouter"
    shot(page, "03-default-switched")

    # 4. The inspector: an OpenAI client's request for claude-3-sonnet, written as Bedrock Converse.
    page.select_option("#inspect-protocol", "openai")
    page.fill("#inspect-model", "claude-3-sonnet")
    page.fill("#inspect-prompt", PROMPT)
    page.click("#preview")
    upstream = page.locator("#pane-upstream")
    upstream.filter(has_text="/converse").wait_for()
    text = upstream.inner_text()
    head, _, body = text.partition("\n\n")
    assert head.startswith(f"POST {mock}/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse\n")
    assert "Signature=[MASKED]" in head
    assert json.loads(body) == {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}
    assert page.locator("#pane-route").inner_text() == (
        "bedrock (bedrock_converse, bedrock_converse wire), upstream model "
        "anthropic.claude-3-sonnet-20240229-v1:0, reason model_mapping")
    assert page.locator("#pane-client-reply").inner_text() == ""  # a preview sends nothing
    shot(page, "04-inspector-preview")

    page.click("#send")
    reply = page.locator("#pane-client-reply")
    reply.filter(has_text="HTTP ").wait_for()
    status_line, _, rest = reply.inner_text().partition("\n")
    assert status_line == "HTTP 200"
    client_body = json.loads(rest.partition("\n\n")[2])
    assert client_body["object"] == "chat.completion" and client_body["model"] == "claude-3-sonnet"
    upstream_reply = page.locator("#pane-upstream-reply").inner_text()
    assert upstream_reply.startswith("HTTP 200\n") and '"output"' in upstream_reply  # Converse's reply shape
    shot(page, "05-inspector-sent")

    # 5. Echoed input is text, never markup: in a prompt (echoed in three panes), and in a model
    #    name the proxy refuses (the error shown beside the echoed request).
    page.fill("#inspect-prompt", XSS)
    page.click("#preview")
    page.locator("#pane-upstream").filter(has_text="onerror").wait_for()
    page.fill("#inspect-request", json.dumps({"model": XSS, "messages": [{"role": "user", "content": XSS}]}))
    page.click("#preview")
    page.locator("#inspect-error").filter(has_text="parse: 'model' contains the character U+003C").wait_for()
    assert f'"model": {json.dumps(XSS)}' in page.locator("#pane-client").inner_text()  # as JSON text
    assert page.evaluate("window.__xss") is None
    assert page.locator("#inspector img").count() == 0
    shot(page, "06-inspector-escapes")

    # 6. Log out: the form again, as a 401.
    with page.expect_navigation():
        page.click("#logout")
    assert page.locator("#key").count() == 1
    assert page.goto(admin).status == 401
    # The browser logs the 401s and the refused request above as failed loads; anything else (a
    # script error, a Content-Security-Policy violation) is a fault of the page.
    assert [m for m in problems if not m.startswith("Failed to load resource: the server responded")] == []

    # Leave the default as the config has it (the store is this module's, but say what we changed).
    requests.put(proxy + "/admin/provider-settings", json={"default_provider": "runpod"},
                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).raise_for_status()
