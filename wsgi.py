"""The WSGI entry point gunicorn loads: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import logging
import sys

from botmon import create_app
from botmon.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # A setting the operator must fix: say which, without a traceback, and
    # exit with gunicorn's "worker failed to boot" code so it does not retry.
    logging.getLogger("botmon").error("cannot start: %s", error)
    sys.exit(3)
