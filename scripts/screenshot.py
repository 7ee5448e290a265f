"""Render docs/screenshot.png: the status page with a day of demo history.

Run from the repository root with the dev extra installed:
    .venv/bin/python scripts/screenshot.py
It starts its own botmon on a free loopback port, on a temporary instance
folder, and stops it when done.
"""

import json
import logging
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "screenshot.png"
API_KEY = "screenshot-key"
HISTORY_HOURS = 24
HISTORY_STEP_SECONDS = 120
GUILDS = 2400

log = logging.getLogger("screenshot")

WORDS = [
    "Pixel",
    "Dragon",
    "Café",
    "Nordic",
    "Retro",
    "Lo-fi",
    "Speedrun",
    "Anime",
    "Indie",
    "Coder",
    "Night",
    "Chess",
    "Synth",
    "Garden",
    "Raid",
    "Study",
]
KINDS = ["Club", "Guild", "Lounge", "Hub", "Den", "Collective", "Crew", "Society"]
SPECIAL = [
    "RPSOFT",
    "مجتمع المطورين العرب",
    "日本語ゲーマーズ",
    "🎮 Game Night 🎲",
    "<img src=x onerror=alert(1)>",
    "Ελληνικό Στέκι",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_servers(rng: random.Random) -> list[dict]:
    servers = []
    for index in range(GUILDS):
        name = (
            SPECIAL[index]
            if index < len(SPECIAL)
            else (f"{rng.choice(WORDS)} {rng.choice(KINDS)} {rng.randint(1, 999)}")
        )
        servers.append(
            {
                "server_id": 1_100_000_000_000_000_000 + rng.randrange(10**17),
                "server_name": name,
                "miembros": int(rng.paretovariate(1.2) * 40),
                "canales": rng.randint(3, 80),
                "status": rng.choices(
                    ["conectado", "desconectado", "mantenimiento"], [90, 7, 3]
                )[0],
            }
        )
    return servers


def demo_point(moment: float, start: float, rng: random.Random) -> tuple[dict, dict]:
    hours = (moment - start) / 3600
    latency = 42 + 12 * math.sin(hours / 3) + rng.uniform(-6, 6)
    if 15.5 < hours < 16.5:
        latency += 140  # a rough hour on Discord's side
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(moment))
    resumen = {
        "servidores_conectados": GUILDS - 180 + int(60 * math.sin(hours / 5)),
        "eventos_procesados_hoy": int(
            moment % 86400 / 3600 * 5200 + rng.uniform(0, 400)
        ),
        "uptime_porcentaje": 99.82,
        "ultima_sincronizacion": stamp,
    }
    estado = {
        "status": "online",
        "uptime_dias": 15,
        "latencia_ms": round(latency, 1),
        "ultima_conexion": stamp,
    }
    return resumen, estado


def seed_history(environ: dict, rng: random.Random) -> None:
    # Backdated history goes straight through the store: the API stamps every
    # push with botmon's current time.
    sys.path.insert(0, str(ROOT))
    from botmon import create_app, strictjson

    app = create_app(environ)
    store = app.extensions["botmon"].store
    now = time.time()
    start = now - HISTORY_HOURS * 3600
    with app.app_context():
        for moment in range(int(start), int(now) - 60, HISTORY_STEP_SECONDS):
            resumen, estado = demo_point(moment, start, rng)
            store.save_snapshot(
                moment,
                strictjson.dumps(resumen),
                strictjson.dumps(estado),
                "[]",
                resumen["servidores_conectados"],
            )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = random.Random(7)
    port = free_port()
    with tempfile.TemporaryDirectory() as instance:
        environ = {
            **os.environ,
            "BOT_API_KEY": API_KEY,
            "BOTMON_INSTANCE_PATH": instance,
            "BOTMON_BIND": f"127.0.0.1:{port}",
            "BOTMON_ACCESS_LOG": "",
            "BOTMON_LOG_LEVEL": "warning",
        }
        seed_history(environ, rng)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=environ,
            start_new_session=True,
        )
        try:
            capture(f"http://127.0.0.1:{port}", rng)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
    log.info("wrote %s", OUTPUT)


def capture(url: str, rng: random.Random) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(url + "/api/health/", timeout=1).ok:
                break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)

    start = time.time() - HISTORY_HOURS * 3600
    resumen, estado = demo_point(time.time(), start, rng)
    payload = {"resumen": resumen, "estado": estado, "servers": demo_servers(rng)}
    response = requests.post(
        url + "/api/bot/metrics/",
        data=json.dumps(payload),
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    response.raise_for_status()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
            ],
        )
        page = browser.new_page(
            viewport={"width": 1440, "height": 1200}, locale="en-US"
        )
        page.goto(url + "/")
        page.wait_for_selector("#link[data-link=live]")
        page.wait_for_function(
            "document.querySelector('#history-range').textContent.includes('points')"
        )
        page.click("button[data-sort=members]")
        page.click("button[data-sort=members]")
        page.wait_for_timeout(500)
        page.screenshot(path=str(OUTPUT))
        browser.close()


if __name__ == "__main__":
    main()
