"""The deployment examples in deploy/ work as written.

The systemd unit is checked by systemd-analyze, and its command line is run
as written (paths moved under a temporary root) to start, serve and stop
botmon; under strace, that run proves the unit's sandbox allows every system
call, socket family and write botmon makes. The Dockerfile is not built here
(no container engine): its instructions are checked, the image's layout (the
wheel installed, the two entry files in WORKDIR, its ENV) is run, and its
HEALTHCHECK command is run against that botmon.
"""

import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests
from conftest import ROOT, SEED_PATH, free_port, read_database
from websockets.sync.client import connect

DEPLOY = ROOT / "deploy"
UNIT_PATH = DEPLOY / "botmon.service"
DOCKERFILE_PATH = DEPLOY / "Dockerfile"
ENV_EXAMPLE_PATH = DEPLOY / "botmon.env.example"
SCALE_OUT_PATH = DEPLOY / "botmon-scale-out.conf"
START_TIMEOUT = 60.0  # strace slows the start several times over
# scripts/ensure-test-tools installs both where they are missing.
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"
STRACE = shutil.which("strace") or "strace"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's settings: section -> key -> every value, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), defaultdict(list))
        else:
            key, _, value = line.partition("=")
            current[key.strip()].append(value.strip())
    return sections


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile and docker --env-file read."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def gunicorn_setting(name: str) -> int:
    match = re.search(
        rf"^{name} = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(), re.M
    )
    return int(match.group(1))


SERVICE = parse_unit(UNIT_PATH.read_text())["Service"]


def test_the_unit_runs_gunicorn_as_botmon_expects():
    (state_directory,) = SERVICE["StateDirectory"]
    environment = dict(
        item.split("=", 1)
        for value in SERVICE["Environment"]
        for item in shlex.split(value)
    )
    state_path = f"/var/lib/{state_directory}"

    assert SERVICE["User"] == ["botmon"]
    assert environment["BOTMON_INSTANCE_PATH"] == state_path
    assert state_path in SERVICE["ReadWritePaths"][0].split()
    assert SERVICE["EnvironmentFile"] == ["/etc/botmon/botmon.env"]
    assert SERVICE["KillSignal"] == ["SIGTERM"]
    assert SERVICE["Restart"] == ["on-failure"]
    assert int(SERVICE["TimeoutStopSec"][0]) > gunicorn_setting("graceful_timeout")
    # One file per listener, as gunicorn.conf.py raises the soft limit to.
    assert int(SERVICE["LimitNOFILE"][0]) >= 16_000 + 256

    command = shlex.split(SERVICE["ExecStart"][0])
    assert command[0] == "/opt/botmon/venv/bin/gunicorn"
    assert command[1:] == ["-c", "/opt/botmon/app/gunicorn.conf.py", "wsgi:app"]
    assert SERVICE["WorkingDirectory"] == ["/opt/botmon/app"]


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    """No unknown directive and no bad value.

    verify also wants ExecStart's program to exist; /opt/botmon is not
    installed here, so that one path points at this checkout's gunicorn.
    """
    gunicorn = Path(sys.prefix) / "bin" / "gunicorn"
    text = UNIT_PATH.read_text().replace("/opt/botmon/venv/bin/gunicorn", str(gunicorn))
    unit = tmp_path / "botmon.service"
    unit.write_text(text)

    result = verify(unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    # The check would see a mistake: systemd only warns about these.
    unit.write_text(
        text.replace("KillMode=mixed", "KillMode=mixd\nProtectSytem=strict")
    )
    result = verify(unit)
    assert "Failed to parse kill mode" in result.stderr
    assert "Unknown key 'ProtectSytem'" in result.stderr


def test_the_scale_out_drop_in_passes_verify_and_migrates_before_the_start(
    tmp_path, postgres
):
    """systemd reads it with the unit, and its ExecStartPre migrates PostgreSQL."""
    python = Path(sys.prefix) / "bin" / "python"
    gunicorn = Path(sys.prefix) / "bin" / "gunicorn"
    unit = tmp_path / "botmon.service"
    unit.write_text(
        UNIT_PATH.read_text().replace("/opt/botmon/venv/bin/gunicorn", str(gunicorn))
    )
    drop_in_text = SCALE_OUT_PATH.read_text()
    (tmp_path / "botmon.service.d").mkdir()
    (tmp_path / "botmon.service.d" / "scale-out.conf").write_text(
        drop_in_text.replace("/opt/botmon/venv/bin/python", str(python))
    )

    result = verify(unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    drop_in = parse_unit(drop_in_text)["Service"]
    (pre_start,) = drop_in["ExecStartPre"]
    database_url = postgres.create_database()
    env = {
        **os.environ,
        **dict(item.split("=", 1) for item in drop_in["Environment"]),
        "BOTMON_DATABASE_URL": database_url,
        "BOTMON_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    command = shlex.split(pre_start.replace("/opt/botmon/venv/bin/python", str(python)))
    migrated = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "the database schema at revision" in migrated.stderr
    tables = read_database(
        database_url,
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = 'alembic_version'",
    )
    assert tables == [(1,)]


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_unit_sandbox_rates_ok():
    """systemd-analyze security: exposure 2.0 or lower of 10 ("OK")."""
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=20", UNIT_PATH],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


class UnitRun:
    """The unit's ExecStart run as written, under a temporary root.

    /opt/botmon/venv is this checkout's virtualenv, /opt/botmon/app this
    checkout, /var/lib/botmon a fresh folder (systemd creates the state
    directory), /etc/botmon/botmon.env the shipped example. The environment is
    only what the unit gives: Environment=, then the EnvironmentFile, plus a
    free loopback port in BOTMON_BIND (the example leaves it at 8000).
    """

    def __init__(self, root: Path, prefix: list[str] | None = None):
        opt = root / "opt" / "botmon"
        opt.mkdir(parents=True)
        (opt / "venv").symlink_to(sys.prefix)
        (opt / "app").symlink_to(ROOT)
        self.state = root / "var" / "lib" / "botmon"
        self.state.mkdir(parents=True, mode=0o700)
        self.moves = {
            "/opt/botmon": str(opt),
            "/var/lib/botmon": str(self.state),
            "/etc/botmon/botmon.env": str(ENV_EXAMPLE_PATH),
        }

        self.port = free_port()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        for value in SERVICE["Environment"]:
            env.update(item.split("=", 1) for item in shlex.split(self.moved(value)))
        env.update(parse_env_file(Path(self.moved(SERVICE["EnvironmentFile"][0]))))
        env["BOTMON_BIND"] = f"127.0.0.1:{self.port}"

        self.log_path = root / "botmon.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*(prefix or []), *shlex.split(self.moved(SERVICE["ExecStart"][0]))],
                cwd=self.moved(SERVICE["WorkingDirectory"][0]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def moved(self, value: str) -> str:
        for path, moved in self.moves.items():
            value = value.replace(path, moved)
        return value

    def wait_until_healthy(self) -> requests.Response:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                response = requests.get(self.url + "/api/health/", timeout=5)
                if response.ok:
                    return response
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"botmon did not answer in {START_TIMEOUT} s:\n{self.log()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@pytest.fixture
def unit_runs(tmp_path_factory):
    runs: list[UnitRun] = []

    def start(prefix: list[str] | None = None) -> UnitRun:
        run = UnitRun(tmp_path_factory.mktemp("unit"), prefix)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def push_with_generated_key(run: UnitRun) -> None:
    # The example leaves BOT_API_KEY empty: botmon generates one in its state.
    key_file = run.state / "api_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    response = requests.post(
        run.url + "/api/bot/metrics/",
        data=SEED_PATH.read_bytes(),
        headers={
            "Authorization": f"Bearer {key_file.read_text().strip()}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text


def test_the_unit_command_starts_serves_and_stops_on_sigterm(unit_runs):
    run = unit_runs()

    assert run.wait_until_healthy().json()["status"] == "ok"
    push_with_generated_key(run)
    assert (run.state / "botmon.sqlite3").exists()

    started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(int(SERVICE["TimeoutStopSec"][0])) == 0
    assert time.monotonic() - started < gunicorn_setting("graceful_timeout")


def syscall_group(name: str) -> set[str]:
    """The system calls a systemd filter group allows, nested groups expanded."""
    listing = subprocess.run(
        [SYSTEMD_ANALYZE, "syscall-filter", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    calls: set[str] = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if item.startswith("@"):
            calls |= syscall_group(item)
        elif item and not item.startswith("#"):
            calls.add(item)
    return calls


def test_the_unit_sandbox_allows_everything_botmon_does(unit_runs, tmp_path):
    """Every system call, socket family and written path of a botmon that
    starts, takes pushes, serves a listener and stops is one the unit allows.
    """
    trace = tmp_path / "trace"
    run = unit_runs([STRACE, "-f", "-qq", "-o", str(trace)])
    run.wait_until_healthy()
    with connect(run.url.replace("http", "ws") + "/ws/bot/metrics/") as listener:
        push_with_generated_key(run)
        assert json.loads(listener.recv(timeout=30))["estado"]["status"] == "online"
        push_with_generated_key(run)
        listener.recv(timeout=30)
    master = int(
        Path(f"/proc/{run.process.pid}/task/{run.process.pid}/children").read_text()
    )
    os.kill(master, signal.SIGTERM)
    assert run.process.wait(int(SERVICE["TimeoutStopSec"][0])) == 0

    lines = trace.read_text().splitlines()
    calls = {m.group(1) for line in lines if (m := re.match(r"\d+ +(\w+)\(", line))}
    (allowed,) = SERVICE["SystemCallFilter"]
    assert {"accept4", "epoll_wait", "fdatasync"} <= calls, "the trace missed botmon"
    assert calls - syscall_group(allowed) == set()

    families = set(re.findall(r"socket\((AF_\w+)", trace.read_text()))
    assert families <= set(SERVICE["RestrictAddressFamilies"][0].split())

    written = written_paths(lines)
    assert run.state / "botmon.sqlite3-wal" in map(Path, written)
    # ProtectSystem=strict: only the state directory and the private /tmp
    # (gunicorn's worker heartbeat file) are writable.
    outside = {
        path
        for path in written
        if not path.startswith(str(run.state)) and os.path.dirname(path) != "/tmp"
    }
    assert outside <= {"/dev/null"}


WRITE_CALL = re.compile(
    r'^\d+ +(open|openat|creat|mkdir|unlink|rename)\((?:\w+, )?"([^"]+)"(.*)'
)


def written_paths(trace_lines: list[str]) -> set[str]:
    """The paths a strace log shows opened for writing, created or removed."""
    paths = set()
    for line in trace_lines:
        match = WRITE_CALL.match(line)
        if match is None or "= -1 " in line:
            continue
        call, path, rest = match.groups()
        if call.startswith("open") and not re.search(r"O_(WRONLY|RDWR|CREAT)", rest):
            continue
        # Python caches bytecode where it can, and carries on where it cannot.
        if "__pycache__" not in path:
            paths.add(path)
    return paths


# The Dockerfile.


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE_PATH.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def image_env() -> dict[str, str]:
    env = {}
    for keyword, arguments in final_stage():
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def healthcheck_command() -> list[str]:
    (arguments,) = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    form = arguments[arguments.index("CMD ") + 4 :]
    return json.loads(form)


def only(keyword: str) -> str:
    (arguments,) = [args for kw, args in final_stage() if kw == keyword]
    return arguments


def test_the_dockerfile_has_what_the_image_needs():
    stage = final_stage()
    keywords = [keyword for keyword, _ in stage]

    assert only("FROM") == "python:3.11-slim"
    user = only("USER")
    assert user not in {"root", "0"} and not user.startswith(("root:", "0:"))
    # Nothing runs as root after the switch.
    assert "RUN" not in keywords[keywords.index("USER") :]
    assert json.loads(only("VOLUME")) == [image_env()["BOTMON_INSTANCE_PATH"]]
    assert image_env()["BOTMON_BIND"] == f"0.0.0.0:{only('EXPOSE')}"
    assert only("STOPSIGNAL") == "SIGTERM"
    assert healthcheck_command()[:2] == ["python", "-c"]
    assert json.loads(only("CMD")) == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def build_context(destination: Path) -> Path:
    """What `docker build .` sends, as .dockerignore (an allowlist) selects it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore should list what goes in"
    included = [pattern[1:] for pattern in patterns if pattern.startswith("!")]
    for name in included:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, destination / name)
    return destination


def test_the_build_context_leaves_out_secrets_and_the_virtualenv(tmp_path):
    context = build_context(tmp_path)
    names = {path.name for path in context.iterdir()}

    assert {"instance", ".venv", ".git", "tests"}.isdisjoint(names)
    # The final stage copies these from the context; the build stage, all.
    copied = [args for keyword, args in final_stage() if keyword == "COPY"]
    for arguments in copied:
        if not arguments.startswith("--from"):
            assert set(arguments.split()[:-1]) <= names


@pytest.fixture
def image_layout(tmp_path):
    """The image's files: the wheel the build stage makes, installed, and the
    final stage's WORKDIR with the files it copies."""
    context = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr

    site = tmp_path / "site"
    (wheel,) = wheels.glob("botmon-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    for arguments in [args for kw, args in final_stage() if kw == "COPY"]:
        if not arguments.startswith("--from"):
            for name in arguments.split()[:-1]:
                shutil.copy2(context / name, workdir / name)
    return site, workdir


@pytest.fixture
def image_server(image_layout, tmp_path):
    """botmon started by the image's CMD, with its ENV, from the image's files."""
    site, workdir = image_layout
    port = free_port()
    env = {
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": str(site),
        **image_env(),
        # 0.0.0.0 is for inside the container only.
        "BOTMON_BIND": f"127.0.0.1:{port}",
        "BOTMON_INSTANCE_PATH": str(tmp_path / "volume"),
    }
    where = subprocess.run(
        [sys.executable, "-c", "import botmon; print(botmon.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site)), "botmon imported from outside the wheel"

    log = open(tmp_path / "botmon.log", "wb")
    process = subprocess.Popen(
        json.loads(only("CMD")),
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "botmon.log").read_text()
        try:
            requests.get(url + "/api/health/", timeout=5)
            break
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    yield process, env, url
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The HEALTHCHECK command, with this Python as the image's `python`."""
    command = healthcheck_command()
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30
    )


def test_the_image_serves_from_its_wheel_and_its_healthcheck_follows_it(image_server):
    process, env, url = image_server

    assert healthcheck(env).returncode == 0
    page = requests.get(url + "/", timeout=10)
    assert page.ok and "botmon" in page.text
    assert requests.get(url + "/static/page.css", timeout=10).ok

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert healthcheck(env).returncode != 0


def test_the_healthcheck_fails_on_503():
    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"BOTMON_BIND": f"0.0.0.0:{server.server_address[1]}"}
        result = healthcheck(env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert b"503" in result.stderr


def test_the_env_example_names_only_documented_settings():
    readme = (ROOT / "README.md").read_text()
    names = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE_PATH.read_text(), re.M)
    assert "BOT_API_KEY" in names
    for name in names:
        assert f"`{name}`" in readme, f"{name} is not in the README's settings"
    for key, value in parse_env_file(ENV_EXAMPLE_PATH).items():
        # Neither systemd nor docker would strip quotes the same way.
        assert not value.startswith(("'", '"')), key
