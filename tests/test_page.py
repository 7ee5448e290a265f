"""The status page at `/`, driven in a real Chromium against a live botmon."""

import copy
import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
RTL_NAME = "\u202eمرحبا بالعالم\u200b\u200f 42"
BIG_IDS = ["1234567890123456789", "9223372036854775807"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class PageWatch:
    """Everything a page did that a test must be able to fail on."""

    def __init__(self):
        self.foreign_requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []


@pytest.fixture
def open_page(browser):
    """Open botmon's page; fail on any non-loopback request, dialog or JS error."""
    contexts = []
    watch = PageWatch()

    def open_(server, timezone: str = "UTC"):
        context = browser.new_context(
            locale="en-US",
            timezone_id=timezone,
            viewport={"width": 1280, "height": 900},
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)

        def check_request(request):
            if urlsplit(request.url).hostname != "127.0.0.1":
                watch.foreign_requests.append(request.url)

        def refuse_foreign(route):
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                route.abort()

        page.on("request", check_request)
        page.on("websocket", lambda ws: check_request(ws))

        def record_dialog(dialog):
            watch.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", record_dialog)
        page.on("pageerror", lambda error: watch.errors.append(str(error)))
        context.route("**/*", refuse_foreign)
        page.goto(server.url + "/")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert watch.foreign_requests == []
    assert watch.dialogs == []
    assert watch.errors == []


def with_servers(seed: dict, servers: list[dict]) -> dict:
    payload = copy.deepcopy(seed)
    payload["servers"] = servers
    return payload


def guild(server_id, name, members=10, channels=3, status="conectado") -> dict:
    return {
        "server_id": server_id,
        "server_name": name,
        "miembros": members,
        "canales": channels,
        "status": status,
    }


def test_it_renders_the_seed_payload(server, seed_bytes, open_page):
    assert server.post(seed_bytes).status_code == 201

    page = open_page(server, timezone="America/New_York")

    expect(page.locator("#bot-status")).to_have_text("online")
    expect(page.locator("#bot-state")).to_have_attribute("data-tone", "ok")
    expect(page.locator("#latency")).to_have_text("45")
    expect(page.locator("#uptime-percent")).to_have_text("99.8")
    expect(page.locator("#uptime-days")).to_have_text("15 days up")
    expect(page.locator("#events-today")).to_have_text("1,230")
    expect(page.locator("#servers-connected")).to_have_text("5")
    # 18:00Z on 13 November is 1 PM in New York: shown in the viewer's zone.
    expect(page.locator("#last-sync")).to_contain_text("Nov 13, 2025, 1:00:00 PM")
    expect(page.locator("#last-connection")).to_contain_text("12:58:00 PM")
    expect(page.locator("#last-sync-ago")).to_contain_text("ago")
    row = page.locator("#servers-body tr:not(.spacer)")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("RPSOFT")
    expect(row).to_contain_text("987654321")
    expect(row.locator(".pill")).to_have_attribute("data-tone", "ok")
    expect(page.locator("#link")).to_have_attribute("data-link", "live")
    expect(page.locator("#silence-banner")).to_be_hidden()
    expect(page.locator("#history-range")).to_contain_text("1 point since")


def test_it_waits_visibly_for_the_first_metrics(server, open_page):
    page = open_page(server)

    expect(page.locator("#empty-banner")).to_be_visible()
    expect(page.locator("#table-count")).to_have_text("0 servers")


def test_it_applies_a_new_push_without_a_reload(server, seed, open_page):
    assert server.post(seed).status_code == 201
    page = open_page(server)
    expect(page.locator("#latency")).to_have_text("45")
    page.evaluate("window.__samePage = true")

    update = copy.deepcopy(seed)
    update["estado"].update(status="idle", latencia_ms=123.5)
    update["resumen"]["eventos_procesados_hoy"] = 4321
    assert server.post(update).status_code == 201

    expect(page.locator("#latency")).to_have_text("123.5")
    expect(page.locator("#bot-status")).to_have_text("idle")
    expect(page.locator("#bot-state")).to_have_attribute("data-tone", "warn")
    expect(page.locator("#events-today")).to_have_text("4,321")
    expect(page.locator("#history-range")).to_contain_text("2 points since")
    assert page.evaluate("window.__samePage") is True


@pytest.mark.parametrize(
    "word, colour",
    [("dnd", "bad"), ("offline", "off"), ("streaming", "neutral")],
)
def test_status_words_get_their_colour(server, seed, open_page, word, colour):
    payload = copy.deepcopy(seed)
    payload["estado"]["status"] = word
    assert server.post(payload).status_code == 201

    page = open_page(server)

    expect(page.locator("#bot-status")).to_have_text(word)
    expect(page.locator("#bot-state")).to_have_attribute("data-tone", colour)


def test_silence_banner_appears_and_clears_by_itself(start_server, seed, open_page):
    server = start_server(env={"BOTMON_STALE_AFTER_SECONDS": "2"})
    assert server.post(seed).status_code == 201
    page = open_page(server)
    banner = page.locator("#silence-banner")

    expect(banner).to_be_visible(timeout=8_000)
    expect(banner).to_contain_text("No metrics from the bot for")
    expect(banner).to_contain_text("silent after 2 s")
    assert server.get("/api/bot/estado/").json()["obsoleto"] is True

    assert server.post(seed).status_code == 201
    expect(banner).to_be_hidden(timeout=5_000)


def test_refused_pushes_are_reported_apart_from_silence(server, seed, open_page):
    assert server.post(seed).status_code == 201
    page = open_page(server)
    expect(page.locator("#refusal-banner")).to_be_hidden()

    broken = copy.deepcopy(seed)
    broken["estado"]["uptime_dias"] = -1
    assert server.post(broken).status_code == 400

    # Refusals are not broadcast; the page asks for them every few seconds.
    banner = page.locator("#refusal-banner")
    expect(banner).to_be_visible(timeout=10_000)
    expect(banner).to_contain_text("400")
    expect(banner).to_contain_text("alive")
    expect(page.locator("#silence-banner")).to_be_hidden()

    # Anyone who can reach botmon can send a push without the key: such a
    # refusal is reported without claiming that the bot sent it.
    assert server.post(seed, key="wrong-key").status_code == 401
    expect(banner).to_contain_text("401", timeout=10_000)
    expect(banner).to_contain_text("wrong or missing API key")
    expect(banner).not_to_contain_text("alive")


def test_large_counts_fit_their_cards(server, seed, open_page):
    big = copy.deepcopy(seed)
    big["resumen"]["eventos_procesados_hoy"] = 12_898_123
    assert server.post(big).status_code == 201
    page = open_page(server)
    page.set_viewport_size({"width": 1280, "height": 900})

    events = page.locator("#events-today")
    expect(events).to_have_text("12,898,123")
    # Nothing is cut off with an ellipsis: the text fits its card's line.
    card_line = events.locator("xpath=..")
    assert card_line.evaluate("node => node.scrollWidth <= node.clientWidth")


def test_it_reconnects_after_a_server_restart(server, seed, open_page):
    assert server.post(seed).status_code == 201
    page = open_page(server)
    link = page.locator("#link")
    expect(link).to_have_attribute("data-link", "live")

    server.stop()
    expect(link).not_to_have_attribute("data-link", "live")
    expect(page.locator("#link-text")).to_contain_text("retrying")
    server.start()
    expect(link).to_have_attribute("data-link", "live", timeout=20_000)

    update = copy.deepcopy(seed)
    update["estado"]["latencia_ms"] = 77
    assert server.post(update).status_code == 201
    expect(page.locator("#latency")).to_have_text("77")


def test_hostile_names_show_as_text(server, seed, open_page):
    servers = [
        guild(1, HOSTILE_NAME, status="<b>bold</b>"),
        guild(2, RTL_NAME, members=5),
    ]
    assert server.post(with_servers(seed, servers)).status_code == 201

    page = open_page(server)

    names = page.locator("#servers-body td.name bdi")
    expect(names).to_have_count(2)
    texts = names.evaluate_all("cells => cells.map(cell => cell.textContent)")
    assert sorted(texts) == sorted([HOSTILE_NAME, RTL_NAME])
    assert page.locator("img").count() == 0
    assert page.locator("#servers-body b").count() == 0
    expect(page.locator("#servers-body .pill").first).to_have_text("<b>bold</b>")
    # The right-to-left name is isolated: the numbers of its row stay in place.
    rtl_row = page.locator("#servers-body tr", has_text="42")
    expect(rtl_row.locator("td.num").first).to_have_text("5")


def test_snowflakes_keep_every_digit(server, seed, open_page):
    servers = [
        guild(int(BIG_IDS[0]), "Big"),
        guild(int(BIG_IDS[1]), "Biggest"),
        guild(9007199254740993, "Past 2^53"),
        guild(9007199254740992, "At 2^53"),
    ]
    assert server.post(with_servers(seed, servers)).status_code == 201

    page = open_page(server)
    ids = page.locator("#servers-body td.id")
    expect(ids).to_have_count(4)

    page.click("button[data-sort=id]")
    expect(ids.first).to_have_text("9007199254740992")
    assert ids.all_text_contents() == [
        "9007199254740992",
        "9007199254740993",
        *BIG_IDS,
    ]


def test_ten_thousand_servers_stay_responsive(server, seed, open_page):
    servers = [
        guild(10_000_000_000_000 + index, f"Guild {index:05d}", members=index)
        for index in range(10_000)
    ]
    servers[4242]["server_name"] = "The Needle Hub"
    assert server.post(with_servers(seed, servers)).status_code == 201

    page = open_page(server)
    count = page.locator("#table-count")
    expect(count).to_have_text("10,000 servers")
    # Only the rows in view are in the document.
    assert page.locator("#servers-body tr:not(.spacer)").count() < 200

    started = time.monotonic()
    assert page.evaluate("1 + 1") == 2
    assert time.monotonic() - started < 1.0

    page.fill("#server-search", "needle")
    expect(count).to_have_text("1 of 10,000 servers", timeout=2_000)
    expect(page.locator("#servers-body td.name")).to_have_text(["The Needle Hub"])

    page.fill("#server-search", "")
    expect(count).to_have_text("10,000 servers", timeout=2_000)
    members = page.locator("#servers-body td.num >> nth=0")
    page.click("button[data-sort=members]")
    expect(members).to_have_text("0", timeout=2_000)
    page.click("button[data-sort=members]")
    expect(members).to_have_text("9,999", timeout=2_000)

    page.locator("#table-scroll").evaluate("el => { el.scrollTop = 200000; }")
    expect(page.locator("#servers-body td.name").first).not_to_have_text(
        "Guild 09999", timeout=2_000
    )


def test_csp_forbids_inline_script(server, seed, open_page):
    assert server.post(seed).status_code == 201
    response = server.get("/")

    policy = response.headers["Content-Security-Policy"]
    directives = dict(
        part.strip().split(" ", 1) for part in policy.split(";") if part.strip()
    )
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert f"ws://127.0.0.1:{server.port}" in directives["connect-src"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    script = server.get("/static/js/app.js")
    assert script.headers["X-Content-Type-Options"] == "nosniff"

    page = open_page(server)
    expect(page.locator("#bot-status")).to_have_text("online")
    violated = page.evaluate(
        """() => new Promise(resolve => {
            document.addEventListener('securitypolicyviolation',
                event => resolve(event.effectiveDirective), {once: true});
            const script = document.createElement('script');
            script.textContent = 'window.__inlineRan = true';
            document.body.append(script);
        })"""
    )
    assert violated.startswith("script-src")
    assert page.evaluate("window.__inlineRan === undefined")


def test_everything_comes_from_botmon_itself(server, seed, open_page):
    assert server.post(seed).status_code == 201
    page = open_page(server)
    loaded = []
    page.on("requestfinished", lambda request: loaded.append(request.url))

    page.reload()
    expect(page.locator("#bot-status")).to_have_text("online")
    expect(page.locator("#chart-latency canvas")).to_have_count(1)

    assert any(url.endswith("/static/vendor/uplot/uPlot.iife.min.js") for url in loaded)
    assert all(urlsplit(url).hostname == "127.0.0.1" for url in loaded)


def test_a_short_history_spans_the_last_half_hour_not_years(server, seed, open_page):
    assert server.post(seed).status_code == 201
    page = open_page(server)

    # With a single point the time axis shows the last half hour, not years.
    chart = page.locator("#chart-latency")
    expect(chart).to_have_attribute("data-span-seconds", re.compile(r"[1-9]\d*"))
    span = int(chart.get_attribute("data-span-seconds"))
    assert 1800 <= span <= 2 * 3600
