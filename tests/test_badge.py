"""The status badges at /badge.svg and /badge/latency.svg."""

import base64
import copy
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT, LiveServer
from playwright.sync_api import sync_playwright

from botmon import badge

SVG = "{http://www.w3.org/2000/svg}"
READ_TOKEN = "read-token-for-badges"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
# At most 32 characters, as a status word may be.
HOSTILE = "<script>alert(1)</script> & 'x\""


class Shown:
    """A badge as served: its parsed SVG and what it says."""

    def __init__(self, response):
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("image/svg+xml")
        self.response = response
        self.root = ET.fromstring(response.content)
        assert self.root.tag == f"{SVG}svg"
        label_box, message_box, overlay = self.root.findall(f"./{SVG}g/{SVG}rect")
        self.width = int(self.root.get("width"))
        self.height = int(self.root.get("height"))
        self.label_width = int(label_box.get("width"))
        self.message_width = int(message_box.get("width"))
        self.colour = message_box.get("fill")
        self.overlay_width = int(overlay.get("width"))
        texts = self.root.findall(f"./{SVG}g/{SVG}text")
        # Each text twice: its shadow, then itself.
        assert [t.text for t in texts[0::2]] == [t.text for t in texts[1::2]]
        self.label, self.message = (t.text for t in texts[1::2])
        self.title = self.root.find(f"{SVG}title").text


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """One botmon for the tests that push a status and read the badge."""
    server = LiveServer(tmp_path_factory.mktemp("botmon-badge")).start()
    yield server
    server.kill()


def get_badge(server, path: str = "/badge.svg", **kwargs) -> Shown:
    return Shown(server.get(path, **kwargs))


def push_status(server, seed: dict, status: str, latency_ms: float = 45) -> None:
    payload = copy.deepcopy(seed)
    payload["estado"]["status"] = status
    payload["estado"]["latencia_ms"] = latency_ms
    response = server.post(payload)
    assert response.status_code == 201, response.text


def test_before_any_push_the_badge_says_no_data(server):
    shown = get_badge(server)

    assert (shown.label, shown.message) == ("discord bot", "no data")
    assert shown.colour == badge.GREY
    assert shown.title == "discord bot: no data"
    assert shown.root.get("aria-label") == "discord bot: no data"
    latency = get_badge(server, "/badge/latency.svg")
    assert (latency.label, latency.message) == ("latency", "no data")


def test_the_badge_has_shields_dimensions_and_headers(server, seed_bytes):
    assert server.post(seed_bytes).status_code == 201

    shown = get_badge(server)
    headers = shown.response.headers

    assert (shown.label, shown.message, shown.colour) == (
        "discord bot",
        "online",
        badge.GREEN,
    )
    assert shown.height == 20
    assert shown.width == shown.label_width + shown.message_width == 114
    assert shown.overlay_width == shown.width
    assert headers["Cache-Control"] == "no-cache, max-age=0"
    assert headers["ETag"].startswith('"') and len(headers["ETag"]) > 10
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert "script-src" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("status", "colour"),
    [
        ("online", badge.GREEN),
        ("idle", badge.YELLOW),
        ("dnd", badge.RED),
        ("offline", badge.GREY),
        ("invisible", badge.GREY),
        ("Online", badge.GREEN),
        ("maintenance", badge.BLUE),
    ],
)
def test_each_status_has_its_colour(pushed, seed, status, colour):
    push_status(pushed, seed, status)

    shown = get_badge(pushed)

    assert (shown.message, shown.colour) == (status, colour)


def test_a_wider_word_makes_a_wider_badge(pushed, seed):
    push_status(pushed, seed, "dnd")
    narrow = get_badge(pushed)
    push_status(pushed, seed, "mantenimiento programado")
    wide = get_badge(pushed)

    assert narrow.label_width == wide.label_width
    assert wide.message_width > narrow.message_width + 80
    assert wide.width == wide.label_width + wide.message_width


def test_a_hostile_status_is_text_not_markup(pushed, seed):
    push_status(pushed, seed, HOSTILE)

    shown = get_badge(pushed)

    assert shown.message == HOSTILE
    assert shown.title == f"discord bot: {HOSTILE}"
    assert b"<script" not in shown.response.content
    assert not shown.root.findall(f".//{SVG}script")


def test_characters_xml_cannot_hold_are_dropped(pushed, seed):
    push_status(pushed, seed, "on\x01line\x1b[31m\tnow\ufffe")

    shown = get_badge(pushed)

    assert shown.message == "online[31m now"


@pytest.mark.parametrize(
    ("latency_ms", "message", "colour"),
    [
        (45, "45 ms", badge.GREEN),
        (4.26, "4.3 ms", badge.GREEN),
        (199.4, "199 ms", badge.GREEN),
        (350, "350 ms", badge.YELLOW),
        (750, "750 ms", badge.ORANGE),
        (1500, "1.5 s", badge.RED),
        (1e300, "1e+297 s", badge.RED),
    ],
)
def test_the_latency_badge(pushed, seed, latency_ms, message, colour):
    push_status(pushed, seed, "online", latency_ms)

    shown = get_badge(pushed, "/badge/latency.svg")

    assert (shown.label, shown.message, shown.colour) == ("latency", message, colour)


def test_a_label_can_name_the_bot_and_is_escaped_and_bounded(pushed, seed):
    push_status(pushed, seed, "online")

    named = get_badge(pushed, params={"label": "MyBot"})
    hostile = get_badge(pushed, params={"label": HOSTILE})
    long = get_badge(pushed, params={"label": "x" * 500})
    blank = get_badge(pushed, "/badge/latency.svg", params={"label": "  "})

    assert named.label == "MyBot"
    assert hostile.label == HOSTILE and b"<script" not in hostile.response.content
    assert long.label == "x" * 63 + "\u2026"
    assert blank.label == "latency"


def test_a_silent_bot_is_shown_as_silent(start_server, seed_bytes):
    server = start_server({"BOTMON_STALE_AFTER_SECONDS": "0.2"})
    assert server.post(seed_bytes).status_code == 201

    time.sleep(0.3)
    shown = get_badge(server)
    latency = get_badge(server, "/badge/latency.svg")

    assert (shown.message, shown.colour) == ("silent", badge.RED)
    assert (latency.message, latency.colour) == ("silent", badge.RED)


def test_an_unchanged_badge_answers_304_and_a_changed_one_a_new_etag(pushed, seed):
    push_status(pushed, seed, "online")
    first = pushed.get("/badge.svg")
    etag = first.headers["ETag"]

    again = pushed.get("/badge.svg", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "no-cache, max-age=0"

    push_status(pushed, seed, "idle")
    changed = pushed.get("/badge.svg", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


# The read token.


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    server = LiveServer(
        tmp_path_factory.mktemp("botmon-badge-read"), {"BOTMON_READ_TOKEN": READ_TOKEN}
    ).start()
    yield server
    server.kill()


@pytest.mark.parametrize("path", ["/badge.svg", "/badge/latency.svg"])
def test_with_a_read_token_the_badges_need_it(guarded, path):
    refused = guarded.get(path)
    wrong = guarded.get(path, params={"token": "nope"})
    allowed = get_badge(guarded, path, params={"token": READ_TOKEN})
    bearer = get_badge(guarded, path, headers={"Authorization": f"Bearer {READ_TOKEN}"})

    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert "nope" not in wrong.text
    assert allowed.message == bearer.message == "no data"
    # A protected badge must not be kept by a shared cache.
    assert allowed.response.headers["Cache-Control"] == "no-cache, max-age=0, private"


def test_badge_public_serves_the_badges_but_not_the_metrics(start_server):
    server = start_server(
        {"BOTMON_READ_TOKEN": READ_TOKEN, "BOTMON_BADGE_PUBLIC": "true"}
    )

    shown = get_badge(server)
    get_badge(server, "/badge/latency.svg")

    assert shown.response.headers["Cache-Control"] == "no-cache, max-age=0"
    assert server.get("/metrics").status_code == 401
    assert server.get("/api/bot/estado/").status_code == 401


# The badge on its own, and in a browser.


def test_text_width_follows_verdanas_widths():
    assert badge.text_width("") == 0
    assert badge.text_width("iiii") < badge.text_width("mmmm")
    # A wide character takes a whole em; a combining mark takes nothing.
    assert badge.text_width("\u6f22") == pytest.approx(11)
    assert badge.text_width("e\u0301") == badge.text_width("e")


def test_the_badge_renders_in_chromium_at_its_size(server, seed_bytes, tmp_path):
    assert server.post(seed_bytes).status_code == 201
    svg = server.get("/badge.svg").text
    latency_svg = server.get("/badge/latency.svg").text

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.url + "/badge.svg")
            box = page.evaluate(
                "() => { const r = document.documentElement.getBoundingClientRect();"
                " return [r.width, r.height]; }"
            )
            # Each text's natural width in the font the browser picked, beside
            # the box badge.py measured for it.
            natural = page.evaluate(
                "() => [...document.querySelectorAll('text:not([aria-hidden])')]"
                ".map(t => { const c = t.cloneNode(true);"
                " c.removeAttribute('textLength'); t.parentNode.appendChild(c);"
                " const n = c.getComputedTextLength(); c.remove();"
                " return [n, +t.getAttribute('textLength')]; })"
            )
            # The message box, drawn: its middle pixel has the state's colour.
            page.goto("about:blank")
            page.set_content(
                f'<img id="b" src="data:image/svg+xml;base64,{_b64(svg)}">'
            )
            page.wait_for_function("document.getElementById('b').complete")
            pixel = page.evaluate(
                "() => { const i = document.getElementById('b');"
                " const c = document.createElement('canvas');"
                " c.width = i.naturalWidth; c.height = i.naturalHeight;"
                " const x = c.getContext('2d'); x.drawImage(i, 0, 0);"
                " return [i.naturalWidth, i.naturalHeight,"
                " ...x.getImageData(i.naturalWidth - 3, 2, 1, 1).data]; }"
            )
            page.set_content(
                f'<img id="b" src="data:image/svg+xml;base64,{_b64(latency_svg)}">'
            )
            page.wait_for_function("document.getElementById('b').complete")
            latency_size = page.evaluate(
                "() => [document.getElementById('b').naturalWidth,"
                " document.getElementById('b').naturalHeight]"
            )
            page.screenshot(path=tmp_path / "badge.png")
        finally:
            browser.close()

    assert box == [114, 20]
    assert errors == []
    for width, length in natural:
        assert abs(width - length) <= 0.08 * length, natural
    width, height, red, green, blue, alpha = pixel
    assert (width, height) == (114, 20)
    # #4c1 under the faint gradient shields.io draws.
    assert alpha == 255 and green > 180 and red < 100 and blue < 60, pixel
    assert latency_size[1] == 20


def test_the_documented_example_is_what_botmon_serves(server, seed_bytes):
    assert server.post(seed_bytes).status_code == 201

    example = Path(ROOT / "docs" / "badge.svg").read_text()

    assert example.strip() == server.get("/badge.svg").text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
