"""Command-line tools: `flask --app botmon <command>` and the `botmon` script."""

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .config import API_KEY_FILE_NAME
from .database import DatabaseBusy
from .service import Botmon

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
LOG_FORMAT = "[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"


def register(app: Flask) -> None:
    """Attach botmon's commands to the app's CLI."""
    app.cli.add_command(demo_bot)
    app.cli.add_command(prune_history)
    app.cli.add_command(key_path)


def key_file_path(instance_path: str) -> Path:
    """Where botmon keeps a generated API key (BOTMON_API_KEY_FILE overrides)."""
    configured = os.environ.get("BOTMON_API_KEY_FILE", "").strip()
    return Path(configured) if configured else Path(instance_path) / API_KEY_FILE_NAME


def _botmon() -> Botmon:
    return current_app.extensions["botmon"]


def _configure_logging() -> None:
    # Flask's CLI sets up no logging; the commands report through it.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)


@click.command("demo-bot")
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="The botmon to push to.",
)
@click.option(
    "--key",
    default=None,
    help="The bot's API key. Default: BOT_API_KEY, else the key file botmon "
    "generated in its instance folder (see `key-path`).",
)
@click.option(
    "--guilds",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="How many guilds the pretend bot is in.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=5.0,
    show_default=True,
    help="Seconds between pushes.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after this many pushes. Default: push until stopped.",
)
@click.option(
    "--silent-after",
    type=click.IntRange(min=1),
    default=None,
    help="Stop pushing after this many pushes but keep running, to see botmon "
    "mark the bot obsoleto.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed for the guilds and the drift, to repeat a run exactly.",
)
@with_appcontext
def demo_bot(url, key, guilds, interval, count, silent_after, seed) -> None:
    """Push realistic, evolving metrics like a real bot would, until Ctrl-C."""
    from .demo import DemoBot, Pusher, push_loop

    _configure_logging()
    if key is None:
        key = _botmon().api_key
        source = (
            "BOT_API_KEY"
            if os.environ.get("BOT_API_KEY", "").strip()
            else str(key_file_path(current_app.instance_path))
        )
        log.info("using the API key from %s", source)

    bot = DemoBot(guild_count=guilds, seed=seed)
    pusher = Pusher(url, key)
    log.info(
        "demo bot in %d guilds pushing to %s every %g s%s",
        guilds,
        pusher.endpoint,
        interval,
        f", {count} pushes" if count else " until Ctrl-C",
    )

    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            stats = push_loop(
                bot,
                pusher,
                interval=interval,
                count=count,
                silent_after=silent_after,
                stop=stop,
            )
    except KeyboardInterrupt:
        log.info("stopped")
        return
    finally:
        pusher.close()

    if stats.attempted and not stats.accepted:
        raise click.ClickException("botmon accepted none of the pushes; see the log")


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """Ctrl-C or SIGTERM ends the loop after the current push; twice, at once."""

    def handle(signum, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {
        sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("prune-history")
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    default=None,
    help="Delete snapshots older than this many days. "
    "Default: BOTMON_HISTORY_RETENTION_DAYS.",
)
@with_appcontext
def prune_history(days) -> None:
    """Delete old history now; the newest snapshot is always kept."""
    from .blueprints.api import format_time

    botmon = _botmon()
    if days is None:
        days = botmon.settings.history_retention_days
    before = time.time() - days * 86_400
    try:
        deleted = botmon.store.prune_history(before)
        remaining = botmon.store.snapshot_count()
    except DatabaseBusy as error:
        raise click.ClickException(f"{error}; try again in a few seconds") from None

    click.echo(
        f"deleted {deleted} snapshot(s) received before {format_time(before)} "
        f"(older than {days:g} days); {remaining} remain"
    )


@click.command("key-path")
@with_appcontext
def key_path() -> None:
    """Print the path of the file holding the bot's API key."""
    path = key_file_path(current_app.instance_path)
    if os.environ.get("BOT_API_KEY", "").strip():
        click.echo(
            f"BOT_API_KEY is set, so botmon uses it rather than {path}", err=True
        )
    click.echo(str(path))


def main() -> None:
    """The `botmon` console script."""
    from flask.cli import FlaskGroup

    from . import create_app

    FlaskGroup(create_app=create_app).main()
