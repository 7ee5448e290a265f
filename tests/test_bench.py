"""The benchmark's quick variant runs end to end against every server.

Timings are not checked here: they depend on the machine and on what else it
is doing. What must hold on any machine is that the run completes, that every
listener hears every snapshot in the fan-out scenarios, that the scale-out
scenario really spreads its listeners over botmon's two workers, and that the
results file has every scenario for each of its servers.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
QUICK_RUN_TIMEOUT = 300
RUNS = [(server, s.id) for s in SCENARIOS for server in s.servers]
FAN_OUT_RUNS = [
    (server, s.id)
    for s in SCENARIOS
    if any(f.key == "missed" for f in s.figures)
    for server in s.servers
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("bench-results")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT,
    )
    files = sorted(results.glob("*.jsonl"))
    lines = files[-1].read_text().splitlines() if files else []
    return completed, [json.loads(line) for line in lines]


@pytest.fixture
def results(quick_run) -> dict[tuple[str, str], dict]:
    _completed, records = quick_run
    return {
        (record["server"], record["scenario"]): record
        for record in records
        if record["kind"] == "result"
    }


def test_quick_run_completes_and_prints_the_table(quick_run):
    completed, _records = quick_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "scenario / figure" in completed.stdout


def test_results_hold_every_scenario_for_each_of_its_servers(results):
    assert set(results) == set(RUNS)


def test_results_start_with_the_machine_they_ran_on(quick_run):
    _completed, records = quick_run
    header = records[0]
    assert header["kind"] == "run" and header["mode"] == "quick"
    assert header["nproc"] >= 1 and header["python"]


@pytest.mark.parametrize(("server", "scenario"), FAN_OUT_RUNS)
def test_every_listener_hears_every_snapshot(results, server, scenario):
    record = results[(server, scenario)]
    assert record["listeners"] > 0
    assert record["connect_failed"] == 0
    assert record["post_errors"] == 0
    assert record["missed"] == 0


@pytest.mark.parametrize("server", ["botmon", "reference"])
def test_every_post_is_accepted(results, server):
    for scenario in ("ingest-quiet", "ingest-listened", "big-post"):
        record = results[(server, scenario)]
        assert record["posts"] > 0 and record["post_errors"] == 0, scenario


def test_scale_out_spreads_listeners_over_both_workers(results):
    record = results[("botmon-redis", "scaleout")]
    held = record["listeners_by_pid"]
    assert record["processes"] == 2
    assert len(held) == 2 and all(count > 0 for count in held.values()), held
    assert sum(held.values()) == record["listeners"]


@pytest.mark.parametrize("server", ["botmon", "reference"])
def test_one_process_holds_every_listener_without_scale_out(results, server):
    record = results[(server, "scaleout")]
    assert list(record["listeners_by_pid"].values()) == [record["listeners"]]


def test_scale_out_counts_redis_and_both_workers_as_the_server(results):
    record = results[("botmon-redis", "scaleout")]
    measured = set(record["cpu_ms_per_post_by_process"])
    assert measured == {"master", "worker 1", "worker 2", "redis-server"}
