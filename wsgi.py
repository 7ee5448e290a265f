"""The WSGI entry point gunicorn loads: `gunicorn -c gunicorn.conf.py wsgi:app`."""

from botmon import create_app

app = create_app()
