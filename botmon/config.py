"""Settings read from the environment, with defaults that make a first run work.

Every bound the service enforces is a named setting here; the README lists them
with the reason behind each default.
"""

import logging
import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

API_KEY_FILE_NAME = "api_key"


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclass(frozen=True)
class Settings:
    """The service's settings; the field name in upper case after `BOTMON_`."""

    database_url: str = ""
    # Bring an existing database's schema to this botmon's at start. Off: the
    # operator runs `python -m botmon.migrate` (after a backup) instead.
    auto_migrate: bool = True
    # PostgreSQL connections per worker process.
    db_pool_size: int = 10
    stale_after_seconds: float = 180.0
    history_retention_days: float = 30.0
    history_max_points: int = 2000
    max_body_bytes: int = 16 * 1024 * 1024
    max_servers: int = 25_000
    max_error_messages: int = 50
    db_lock_timeout_seconds: float = 5.0
    sqlite_synchronous: str = "NORMAL"
    # 0: no bound but the disk's. A bound keeps botmon from filling a disk it
    # shares with the bot; when reached, pushes get 503 and nothing else breaks.
    sqlite_max_pages: int = 0
    ws_ping_interval_seconds: float = 20.0
    ws_send_timeout_seconds: float = 30.0
    ws_compression: bool = False
    # Prometheus (docs/integrations.md): a series per guild is a label value
    # per guild, so it is opt-in and bounded to the largest guilds.
    metrics_per_guild: bool = False
    metrics_max_guilds: int = 1000
    # Serve the status badge without the read token, for a public README.
    badge_public: bool = False
    # When set, reading the numbers (page, GETs, WebSocket) needs this token.
    read_token: str = ""
    # Alerts (docs/alerts.md). Empty URL: no alerts. The URL holds the
    # webhook's secret token, so it is never logged.
    alert_webhook_url: str = ""
    alert_down_grace_seconds: float = 60.0
    alert_refused_after_seconds: float = 120.0
    alert_check_interval_seconds: float = 5.0
    alert_timeout_seconds: float = 10.0
    alert_max_backoff_seconds: float = 300.0
    alert_max_pending: int = 20
    # With several processes, only the holder of this lease sends alerts; a
    # holder that dies is replaced once it expires.
    alert_lease_seconds: float = 30.0
    # The backplane between workers and hosts (README, Settings). Empty URL:
    # one worker only. The URL may hold a password, so it is never logged.
    redis_url: str = ""
    redis_channel: str = "botmon:snapshots"
    redis_timeout_seconds: float = 5.0
    redis_max_backoff_seconds: float = 5.0

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> "Settings":
        """Build settings from `BOTMON_*` variables, refusing malformed values."""
        values = {}
        for field in fields(cls):
            name = "BOTMON_" + field.name.upper()
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[field.name] = _parse(name, raw.strip(), field.type)

        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings that would make the service misbehave."""
        positive = [
            "stale_after_seconds",
            "history_retention_days",
            "history_max_points",
            "max_body_bytes",
            "max_servers",
            "max_error_messages",
            "db_pool_size",
            "metrics_max_guilds",
            "ws_ping_interval_seconds",
            "ws_send_timeout_seconds",
            "alert_refused_after_seconds",
            "alert_check_interval_seconds",
            "alert_timeout_seconds",
            "alert_max_backoff_seconds",
            "alert_max_pending",
            "alert_lease_seconds",
            "redis_timeout_seconds",
            "redis_max_backoff_seconds",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"BOTMON_{name.upper()} must be greater than zero")
        if self.sqlite_max_pages < 0:
            raise ConfigError(
                "BOTMON_SQLITE_MAX_PAGES must not be negative (0: no bound)"
            )
        if self.db_lock_timeout_seconds < 0:
            raise ConfigError("BOTMON_DB_LOCK_TIMEOUT_SECONDS must not be negative")
        if self.sqlite_synchronous.upper() not in {"NORMAL", "FULL", "EXTRA"}:
            raise ConfigError("BOTMON_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA")
        if self.alert_down_grace_seconds < 0:
            raise ConfigError("BOTMON_ALERT_DOWN_GRACE_SECONDS must not be negative")
        if self.alert_lease_seconds <= max(
            self.alert_check_interval_seconds, self.alert_timeout_seconds
        ):
            raise ConfigError(
                "BOTMON_ALERT_LEASE_SECONDS must be greater than both "
                "BOTMON_ALERT_CHECK_INTERVAL_SECONDS and "
                "BOTMON_ALERT_TIMEOUT_SECONDS: the process sending the alerts "
                "checks, and finishes each webhook request, within its lease"
            )
        if self.alert_webhook_url and not _is_web_url(self.alert_webhook_url):
            # The value is a secret: say what is wrong, never echo it.
            raise ConfigError(
                "BOTMON_ALERT_WEBHOOK_URL must be an http:// or https:// address "
                "with a host, such as Discord's "
                "https://discord.com/api/webhooks/<id>/<token>; leave it empty "
                "for no alerts"
            )
        if self.redis_url and not _is_redis_url(self.redis_url):
            # The URL may hold a password: say what is wrong, never echo it.
            raise ConfigError(
                "BOTMON_REDIS_URL must be a redis:// or rediss:// address with a "
                "host, a numeric port and a numeric database, such as "
                "redis://:<password>@127.0.0.1:6379/0, or "
                "unix:///path/to/redis.sock; leave it empty to run one worker"
            )


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        # Reading the port validates it (a ValueError when out of range).
        parts.port  # noqa: B018
    except ValueError:
        return False
    has_space = any(char.isspace() for char in url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and not has_space


def _is_redis_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return False
    if any(char.isspace() for char in url):
        return False
    if parts.scheme == "unix":
        return bool(parts.path) and not parts.netloc.split("@")[-1]
    database = parts.path.lstrip("/")
    return (
        parts.scheme in {"redis", "rediss"}
        and bool(parts.hostname)
        and (database == "" or database.isdigit())
    )


def _parse(name: str, raw: str, kind: type | str) -> object:
    kind_name = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind_name == "bool":
            return _parse_bool(raw)
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind_name}") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def load_api_key(environ: dict[str, str], instance_path: str) -> str:
    """Return the bot's API key: from the environment, else a generated one.

    A generated key is written once to the instance folder with owner-only
    permissions and reused on every later start, so a restart never locks the
    bot out. Only the file's path is logged, never the key.
    """
    from_env = environ.get("BOT_API_KEY", "").strip()
    if from_env:
        return from_env

    key_file = environ.get("BOTMON_API_KEY_FILE", "").strip()
    path = Path(key_file) if key_file else Path(instance_path) / API_KEY_FILE_NAME
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ConfigError(f"the API key file {path} is empty; delete it or fill it")
        log.info("using the API key stored in %s", path)
        return key

    return _generate_key_file(path)


def _generate_key_file(path: Path) -> str:
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)

    # O_EXCL: two workers starting at once must not each write their own key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")

    log.warning(
        "no BOT_API_KEY given: generated one and stored it in %s "
        "(readable by this user only); give it to your bot",
        path,
    )
    return key
