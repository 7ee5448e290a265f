"""The schema: migrations that match the models, adoption, the lock, refusals."""

import subprocess
import sys
import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import ROOT, SEED_PATH, LiveServer
from sqlalchemy import create_engine, inspect, text

from botmon.config import Settings
from botmon.database import db, engine_options, sqlalchemy_url, tune_engine
from botmon.schema import BASELINE_TABLES, alembic_config, ensure_schema

pytestmark = pytest.mark.both_backends

# The newest revision: the one a fresh database ends at.
HEAD = "0002"


@pytest.fixture
def database_url(backend, database_env, tmp_path) -> str:
    """A fresh, empty database of the test's backend."""
    return database_env(backend).get(
        "BOTMON_DATABASE_URL", f"sqlite:///{tmp_path}/botmon.sqlite3"
    )


@pytest.fixture
def engine(database_url):
    """An engine set up as botmon sets up its own."""
    url = sqlalchemy_url(database_url)
    engine = create_engine(url, **engine_options(url, Settings(), pool_size=2))
    tune_engine(engine, Settings())
    yield engine
    engine.dispose()


def differences(engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), db.metadata)


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def revision(engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).all()


def make_pre_migration_database(engine, without: set[str] = frozenset()) -> None:
    """What botmon made before migrations: create_all, and one stored push."""
    made = BASELINE_TABLES - without
    db.metadata.create_all(
        engine, tables=[t for t in db.metadata.sorted_tables if t.name in made]
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO snapshots VALUES (7, 1700000000.5, "
                '\'{"servidores_conectados": 3}\', \'{"status": "online"}\', 0)'
            )
        )
        connection.execute(text("INSERT INTO latest_servers VALUES (1, 7, '[]')"))


def start(database_url, tmp_path, name, **env) -> LiveServer:
    env = {"BOTMON_DATABASE_URL": database_url, **env}
    return LiveServer(tmp_path / name, env)


def run_migrate(database_url, tmp_path, *arguments) -> subprocess.CompletedProcess:
    env = {"BOTMON_DATABASE_URL": database_url, "BOTMON_INSTANCE_PATH": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "botmon.migrate", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# The migrations are the schema.


def test_the_migrations_build_exactly_the_models_tables(engine):
    ensure_schema(engine, auto_migrate=False)

    assert differences(engine) == []
    assert tables(engine) == BASELINE_TABLES | {"leases", "alembic_version"}
    assert revision(engine) == [(HEAD,)]


def test_downgrade_to_nothing_and_upgrade_again(engine):
    ensure_schema(engine, auto_migrate=False)

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert tables(engine) == {"alembic_version"}

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    assert differences(engine) == []


# Databases made before migrations, and the start's decisions.


@pytest.mark.parametrize("missing", [set(), {"alert_state", "refused_pushes"}])
def test_a_database_made_before_migrations_is_adopted(
    engine, database_url, tmp_path, missing
):
    make_pre_migration_database(engine, without=missing)

    server = start(database_url, tmp_path, "instance").start()

    try:
        assert server.get("/api/bot/resumen/").json() == {"servidores_conectados": 3}
        assert "migrated the database schema from tables made before" in server.log()
    finally:
        server.kill()
    assert differences(engine) == []
    assert revision(engine) == [(HEAD,)]


def test_a_database_one_revision_behind_is_upgraded_at_start(
    engine, database_url, tmp_path
):
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
    assert "leases" not in tables(engine)

    server = start(database_url, tmp_path, "instance").start()

    try:
        assert server.post(SEED_PATH.read_bytes()).status_code == 201
        assert "Running upgrade 0001 -> 0002" in server.log()
    finally:
        server.kill()
    assert revision(engine) == [(HEAD,)]
    assert differences(engine) == []


def test_an_old_database_is_not_touched_when_auto_migrate_is_off(
    engine, database_url, tmp_path
):
    make_pre_migration_database(engine)
    server = start(database_url, tmp_path, "instance", BOTMON_AUTO_MIGRATE="false")

    with pytest.raises(RuntimeError, match="exited at start"):
        server.start()

    assert "BOTMON_AUTO_MIGRATE is off" in server.log()
    assert "run `python -m botmon.migrate`" in server.log()
    assert "Traceback" not in server.log()
    assert "alembic_version" not in tables(engine)


def test_an_empty_database_is_created_even_when_auto_migrate_is_off(
    engine, database_url, tmp_path
):
    server = start(database_url, tmp_path, "instance", BOTMON_AUTO_MIGRATE="0")

    server.start().kill()

    assert revision(engine) == [(HEAD,)]


def test_a_database_migrated_by_a_newer_botmon_is_refused(
    engine, database_url, tmp_path
):
    ensure_schema(engine, auto_migrate=False)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    server = start(database_url, tmp_path, "instance")

    with pytest.raises(RuntimeError, match="exited at start"):
        server.start()

    assert "revision 0099, which this botmon does not know" in server.log()
    assert "a newer botmon migrated it" in server.log()
    assert run_migrate(database_url, tmp_path, "--check").returncode == 2


def test_two_botmons_starting_at_once_on_an_empty_database_both_come_up(
    engine, database_url, tmp_path
):
    servers = [start(database_url, tmp_path, f"instance-{n}") for n in range(2)]
    errors = []

    def start_one(server):
        try:
            server.start()
        except Exception as error:  # reported below, with the server's log
            errors.append(error)

    threads = [threading.Thread(target=start_one, args=(s,)) for s in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        assert errors == []
        for server in servers:
            assert server.get("/api/health/").status_code == 200
        creators = [s for s in servers if "created the database schema" in s.log()]
        assert len(creators) == 1
    finally:
        for server in servers:
            server.kill()
    assert revision(engine) == [(HEAD,)]
    assert differences(engine) == []


# The migrate command.


def test_the_migrate_command_upgrades_and_check_tells_when_it_is_needed(
    engine, database_url, tmp_path
):
    make_pre_migration_database(engine)

    before = run_migrate(database_url, tmp_path, "--check")
    migrated = run_migrate(database_url, tmp_path)
    after = run_migrate(database_url, tmp_path, "--check")

    assert before.returncode == 1
    assert "is behind" in before.stderr
    assert "alembic_version" in tables(engine) and differences(engine) == []
    assert migrated.returncode == 0
    assert migrated.stdout == ""
    assert "migrated the database schema" in migrated.stderr
    assert after.returncode == 0
    assert f"is at revision {HEAD}" in after.stderr
