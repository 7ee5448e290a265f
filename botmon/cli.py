"""Command-line tools: `flask --app botmon <command>` and the `botmon` script."""

from flask import Flask


def register(app: Flask) -> None:
    """Attach botmon's commands to the app's CLI."""


def main() -> None:
    """The `botmon` console script."""
    from flask.cli import FlaskGroup

    from . import create_app

    FlaskGroup(create_app=create_app).main()
