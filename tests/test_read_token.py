"""The optional read token (BOTMON_READ_TOKEN): page, API reads and WebSocket."""

import copy
import json

import pytest
from conftest import API_KEY, SEED_PATH, LiveServer
from playwright.sync_api import expect, sync_playwright
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

READ_TOKEN = "read-token-9876543210"
COOKIE = "botmon_read"
PROTECTED = [
    "/api/bot/resumen/",
    "/api/bot/estado/",
    "/api/bot/servers/",
    "/api/bot/rechazos/",
    "/api/bot/history/",
    "/api/bot/config/",
    "/api/bot/servers",
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, seed_module):
    """A server with a read token (given with stray whitespace) and one push."""
    env = {"BOTMON_READ_TOKEN": f"  {READ_TOKEN}\n", "BOTMON_ACCESS_LOG": "-"}
    server = LiveServer(tmp_path_factory.mktemp("botmon-read"), env).start()
    assert server.post(seed_module).status_code == 201
    yield server
    server.kill()


@pytest.fixture(scope="module")
def seed_module() -> dict:
    return json.loads(SEED_PATH.read_text())


def browser_cookie(server: LiveServer) -> str:
    response = server.get(f"/?token={READ_TOKEN}", allow_redirects=False)
    assert response.status_code == 303
    return response.cookies[COOKIE]


# The API under /api/.


@pytest.mark.parametrize("path", PROTECTED)
def test_reads_without_the_token_are_401_with_a_bearer_challenge(guarded, path):
    response = guarded.get(path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["error"] == "unauthorized"
    assert "/?token=" in body["message"] and "Bearer" in body["message"]


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("secret", [READ_TOKEN, API_KEY])
def test_reads_accept_the_read_token_or_the_api_key(guarded, path, secret):
    response = guarded.get(path, headers={"Authorization": f"bearer {secret}"})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {READ_TOKEN}x",
        f"Bearer {READ_TOKEN[:-1]}",
        f"Basic {READ_TOKEN}",
        READ_TOKEN,
        "Bearer ",
    ],
)
def test_reads_with_a_wrong_token_are_401_and_do_not_echo_it(guarded, authorization):
    headers = {"Authorization": authorization}

    response = guarded.get("/api/bot/resumen/", headers=headers)

    assert response.status_code == 401
    assert READ_TOKEN not in response.text


@pytest.mark.parametrize("path", ["/api/health/", "/api/openapi.json"])
def test_health_and_the_document_stay_public(guarded, path):
    assert guarded.get(path).status_code == 200


def test_the_push_needs_the_api_key_not_the_read_token(guarded, seed_module):
    assert guarded.post(seed_module, key=READ_TOKEN).status_code == 401
    assert guarded.post(seed_module).status_code == 201


def test_the_read_cookie_opens_every_read_the_page_makes(guarded):
    cookies = {COOKIE: browser_cookie(guarded)}

    for path in PROTECTED:
        assert guarded.get(path, cookies=cookies).status_code == 200, path


def test_a_forged_or_stale_cookie_is_refused(guarded):
    for value in [READ_TOKEN, "0" * 64, ""]:
        response = guarded.get("/api/bot/estado/", cookies={COOKIE: value})
        assert response.status_code == 401


# The page at /.


def test_the_page_without_the_token_says_how_to_open_it(guarded):
    response = guarded.get("/")

    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("text/html")
    assert "/?token=&lt;read token&gt;" in response.text
    assert "app.js" not in response.text


def test_a_wrong_token_in_the_address_sets_no_cookie(guarded):
    response = guarded.get("/?token=nope", allow_redirects=False)

    assert response.status_code == 401
    assert "not valid" in response.text
    assert "Set-Cookie" not in response.headers


def test_the_token_in_the_address_becomes_a_strict_cookie_and_leaves(guarded):
    response = guarded.get(f"/?token={READ_TOKEN}", allow_redirects=False)

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE}=")
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"]:
        assert attribute in set_cookie
    assert READ_TOKEN not in set_cookie

    page = guarded.get("/", cookies={COOKIE: response.cookies[COOKIE]})
    assert page.status_code == 200
    assert "app.js" in page.text


def test_the_api_key_in_the_address_also_opens_the_page(guarded):
    response = guarded.get(f"/?token={API_KEY}", allow_redirects=False)

    assert response.status_code == 303


# The WebSocket.


def test_a_listener_without_the_token_is_refused_before_the_upgrade(guarded):
    for url in [guarded.ws_url, guarded.ws_url + "?token=nope"]:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=5)
        assert refused.value.response.status_code == 401


@pytest.mark.parametrize("how", ["query", "cookie", "bearer", "api key"])
def test_a_listener_with_the_token_gets_the_latest_snapshot(guarded, how):
    url, headers = guarded.ws_url, {}
    if how == "query":
        url += f"?token={READ_TOKEN}"
    elif how == "cookie":
        headers["Cookie"] = f"{COOKIE}={browser_cookie(guarded)}"
    elif how == "bearer":
        headers["Authorization"] = f"Bearer {READ_TOKEN}"
    else:
        url += f"?token={API_KEY}"

    with connect(url, additional_headers=headers, open_timeout=5) as ws:
        snapshot = json.loads(ws.recv(timeout=5))

    assert set(snapshot) == {"resumen", "estado", "servers"}


# Secrecy.


def test_the_token_never_reaches_the_log(guarded):
    guarded.get(f"/?token={READ_TOKEN}", allow_redirects=False)
    guarded.get("/api/bot/resumen/", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    with connect(guarded.ws_url + f"?token={READ_TOKEN}", open_timeout=5) as ws:
        ws.recv(timeout=5)
    guarded.get("/?token=guess-that-is-wrong")

    log = guarded.log()
    assert "GET /?token=[redacted]" in log
    assert READ_TOKEN not in log
    assert "guess-that-is-wrong" not in log


def test_without_a_read_token_everything_stays_open(shared_server):
    assert shared_server.get("/").status_code == 200
    assert shared_server.get("/api/bot/rechazos/").status_code == 200
    with connect(shared_server.ws_url, open_timeout=5):
        pass


# The page in a real browser, under the token.


def test_the_page_works_live_under_the_token(guarded, seed_module):
    update = copy.deepcopy(seed_module)
    update["estado"]["status"] = "degraded"
    update["estado"]["latencia_ms"] = 321

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(10_000)
            statuses = {}
            page.on(
                "response",
                lambda response: statuses.setdefault(
                    response.url.split("?")[0], response.status
                ),
            )
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            page.goto(f"{guarded.url}/?token={READ_TOKEN}")
            assert page.url == guarded.url + "/"
            expect(page.locator("#link")).to_have_attribute("data-link", "live")
            assert guarded.post(update).status_code == 201
            expect(page.locator("#bot-status")).to_have_text("degraded")
            expect(page.locator("#latency")).to_have_text("321")
            page.reload()
            expect(page.locator("#bot-status")).to_have_text("degraded")
        finally:
            browser.close()

    for path in ["config", "estado", "rechazos", "history"]:
        assert statuses[f"{guarded.url}/api/bot/{path}/"] == 200, statuses
    assert not errors
