"""Storage faults: a full disk, a read-only file system, locked files, a size bound.

Each fault is real, not mocked: a small tmpfs filled to the last byte, a
read-only bind mount, the immutable attribute on the database's files, and
SQLite's own page limit. Mounting needs root (CAP_SYS_ADMIN); on a machine
where that is refused these tests fail with a message saying so, rather than
pass without having produced the fault.

For every fault a refused push must be answered 503 with a code and a message
telling the operator what to do, store nothing, reach no listener, leave the
GETs answering the last good state, and stop mattering once the fault is fixed.
"""

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import read_database
from test_websocket import PROMPTLY, listen, make_payload, post_ok, seq_of

READ_PATHS = ["/api/bot/resumen/", "/api/bot/estado/", "/api/bot/servers/"]
# Large enough to need fresh pages in the write-ahead log (about 500 KB).
BIG_SERVERS = 5000
# How long a listener is watched for a broadcast that must not come.
QUIET_SECONDS = 1.0


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


@pytest.fixture
def mounts():
    """Mount file systems for one test; every one is unmounted afterwards."""
    mounted: list[Path] = []

    def mount(*args: str, target: Path) -> None:
        try:
            run("mount", *args, str(target))
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", "") or error
            pytest.fail(
                "this test produces the fault with a real mount and needs root "
                f"with CAP_SYS_ADMIN (mount {' '.join(args)} failed: {detail})"
            )
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        # Lazy: a server that is still being killed must not leave it mounted.
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def immutable():
    """Set the immutable attribute on files; it is cleared afterwards."""
    marked: list[Path] = []

    def mark(*paths: Path) -> None:
        try:
            run("chattr", "+i", *map(str, paths))
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", "") or error
            pytest.fail(f"chattr +i is needed for this test and failed: {detail}")
        marked.extend(paths)

    def clear() -> None:
        if marked:
            run("chattr", "-i", *map(str, marked))
            marked.clear()

    mark.clear = clear
    yield mark
    clear()


def stored_state(path: Path) -> list[tuple]:
    """How many snapshots there are and which one the latest guilds belong to."""
    return read_database(
        path,
        "SELECT (SELECT count(*) FROM snapshots), "
        "(SELECT snapshot_id FROM latest_servers)",
    )


def answers(server) -> list[str]:
    return [server.get(path).text for path in READ_PATHS]


def fill_file_system(directory: Path) -> Path:
    """Write a file until the file system has no byte left; return its path."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        # Bounded: the file systems filled here are a few MiB.
        for _ in range(10_000):
            os.write(fd, chunk)
        pytest.fail(f"{directory} did not fill up")
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)
    # The last, partial chunk may still fit a few bytes.
    with pytest.raises(OSError) as full:
        (directory / "last-byte").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


def assert_refused_cleanly(server, listener, database: Path, code: str, hint: str):
    """A big push is refused with 503 and leaves no trace anywhere."""
    before, stored = answers(server), stored_state(database)

    response = server.post(make_payload(2, servers=BIG_SERVERS))

    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert "nothing was stored" in body["message"]
    assert hint in body["message"]
    assert int(response.headers["Retry-After"]) > 0
    with pytest.raises(TimeoutError):
        listener.recv(timeout=QUIET_SECONDS)
    assert answers(server) == before
    assert server.get("/api/health/").status_code == 200
    assert stored_state(database) == stored


def assert_recovers(server, listener, database: Path) -> None:
    """The next push after the fault is stored and broadcast as usual."""
    payload = make_payload(3, servers=BIG_SERVERS)
    response = server.post(payload)

    assert response.status_code == 201, response.text
    assert seq_of(listener.recv(timeout=PROMPTLY)) == 3
    assert json.loads(server.get("/api/bot/servers/").text) == payload["servers"]
    assert stored_state(database)[0] == (2, response.json()["id"])
    assert read_database(database, "PRAGMA integrity_check") == [("ok",)]


def test_a_full_disk_refuses_pushes_with_503_until_space_is_freed(
    mounts, start_server, tmp_path
):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounts("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=disk)
    database = disk / "botmon.sqlite3"
    server = start_server({"BOTMON_DATABASE_URL": f"sqlite:///{database}"})
    post_ok(server, make_payload(1))

    with listen(server) as listener:
        assert seq_of(listener.recv(timeout=PROMPTLY)) == 1
        filler = fill_file_system(disk)

        assert_refused_cleanly(
            server, listener, database, "storage_full", "free disk space"
        )
        # Refused again, not stuck: each push meets the fault afresh.
        assert_refused_cleanly(
            server, listener, database, "storage_full", "free disk space"
        )

        filler.unlink()
        assert_recovers(server, listener, database)


def test_a_read_only_file_system_refuses_pushes_until_it_is_writable(
    mounts, start_server, tmp_path
):
    # The database is written once, then the server restarts on a read-only
    # view of its folder, as after a disk remounted read-only by the kernel.
    writable, view = tmp_path / "data", tmp_path / "view"
    writable.mkdir()
    view.mkdir()
    first = start_server({"BOTMON_DATABASE_URL": f"sqlite:///{writable}/b.sqlite3"})
    post_ok(first, make_payload(1))
    first.kill()
    mounts("--bind", "-o", "ro", str(writable), target=view)
    server = start_server({"BOTMON_DATABASE_URL": f"sqlite:///{view}/b.sqlite3"})
    database = writable / "b.sqlite3"

    with listen(server) as listener:
        assert seq_of(listener.recv(timeout=PROMPTLY)) == 1

        assert_refused_cleanly(
            server, listener, database, "storage_read_only", "writable"
        )

        run("mount", "-o", "remount,bind,rw", str(view))
        assert_recovers(server, listener, database)


def test_files_that_cannot_be_written_refuse_pushes_until_they_can(immutable, server):
    post_ok(server, make_payload(1))
    database = server.database_path
    files = [database, database.with_name(database.name + "-wal")]

    with listen(server) as listener:
        assert seq_of(listener.recv(timeout=PROMPTLY)) == 1
        # Writes to the files botmon holds open now fail (EPERM), and so does
        # opening them for writing: even root cannot write them.
        immutable(*files)

        assert_refused_cleanly(
            server, listener, database, "storage_read_only", "writable"
        )

        immutable.clear()
        assert_recovers(server, listener, database)


def test_the_size_bound_refuses_what_does_not_fit_and_accepts_what_does(
    start_server,
):
    server = start_server({"BOTMON_SQLITE_MAX_PAGES": "64"})
    post_ok(server, make_payload(1))
    database = server.database_path

    with listen(server) as listener:
        assert seq_of(listener.recv(timeout=PROMPTLY)) == 1

        assert_refused_cleanly(
            server, listener, database, "storage_full", "BOTMON_SQLITE_MAX_PAGES"
        )

        # A push that fits is still accepted: the bound refuses, never breaks.
        post_ok(server, make_payload(4, servers=10))
        assert seq_of(listener.recv(timeout=PROMPTLY)) == 4
    assert stored_state(database)[0][0] == 2
    assert read_database(database, "PRAGMA integrity_check") == [("ok",)]


def test_a_negative_size_bound_is_refused_at_start(tmp_path):
    from botmon import create_app
    from botmon.config import ConfigError

    with pytest.raises(ConfigError, match="BOTMON_SQLITE_MAX_PAGES"):
        create_app(
            {
                "BOT_API_KEY": "k",
                "BOTMON_INSTANCE_PATH": str(tmp_path),
                "BOTMON_SQLITE_MAX_PAGES": "-1",
            }
        )
