"""How much disk botmon's SQLite storage takes as a bot keeps pushing.

Runs in-process against a throwaway instance folder: builds the app with
create_app, generates the demo bot's payloads, and stores them one push at a
time through the real write path. It reports the database and WAL file sizes,
the rows kept, and the bytes SQLite wrote, as it goes and at the end.

Two ways to store a push:

  --via accept  botmon.ingest.accept: strict JSON parsing, schema validation,
                canonical encoding, one transaction, hub publish. The receipt
                time is the real clock, so retention never prunes within a run.
  --via store   the same canonical texts handed to Store.save_snapshot with a
                simulated receipt time (pushes --interval seconds apart,
                ending now), so a run longer than the retention shows pruning
                at work. Skips validation, which dominates accept's cost.

Examples (the figures in docs/storage.md come from these two):

  python bench/storage_growth.py --guilds 10000 --days 1 --via accept
  python bench/storage_growth.py --guilds 25 --days 35 --via store

The run is bounded by its push count and by --max-seconds of wall time.
"""

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botmon import create_app, ingest, strictjson  # noqa: E402
from botmon.database import db  # noqa: E402
from botmon.demo import DemoBot, encode  # noqa: E402

MIB = 1024 * 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guilds", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days")
    parser.add_argument("--via", choices=("accept", "store"), default="accept")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--reports", type=int, default=8, help="progress lines during the run"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=3600.0,
        help="stop early (and say so) after this much wall time",
    )
    parser.add_argument("--dir", help="instance folder to use and keep")
    parser.add_argument("--json", help="also write the final figures here")
    return parser.parse_args(argv)


class IoCounter:
    """Bytes this process handed to write(): SQLite's WAL and checkpoints.

    Linux only. Counts what the file system was asked to write, whether or
    not it reached the disk yet; the bench itself writes only a few lines.
    """

    def __init__(self) -> None:
        self.start = self.read()

    @staticmethod
    def read() -> dict[str, int]:
        try:
            lines = Path("/proc/self/io").read_text().splitlines()
        except OSError:
            return {}
        pairs = (line.split(":") for line in lines)
        return {key.strip(): int(value) for key, value in pairs}

    def since_start(self, key: str) -> int | None:
        now = self.read()
        if key not in now or key not in self.start:
            return None
        return now[key] - self.start[key]


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def measure(database: Path) -> dict:
    """Sizes on disk and, from SQLite itself, where the pages went."""

    def query(sql: str):
        with db.engine.connect() as connection:
            return connection.execute(text(sql)).all()

    figures = {
        "db_bytes": file_size(database),
        "wal_bytes": file_size(database.with_name(database.name + "-wal")),
        "snapshot_rows": query("SELECT count(*) FROM snapshots")[0][0],
        "page_size": query("PRAGMA page_size")[0][0],
        "page_count": query("PRAGMA page_count")[0][0],
        "freelist_pages": query("PRAGMA freelist_count")[0][0],
        "latest_servers_json_bytes": query(
            "SELECT coalesce(sum(length(CAST(servers_json AS BLOB))), 0) "
            "FROM latest_servers"
        )[0][0],
    }
    try:
        per_table = query(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        )
        figures["bytes_by_table"] = {name: size for name, size in per_table}
    except Exception:  # dbstat is an optional SQLite feature
        figures["bytes_by_table"] = {}
    return figures


def canonical_texts(payload: dict) -> tuple[str, str, str, int]:
    """What accept would store, without validating (ids become integers)."""
    servers = [
        {**row, "server_id": int(row["server_id"])} for row in payload["servers"]
    ]
    return (
        strictjson.dumps(payload["resumen"]),
        strictjson.dumps(payload["estado"]),
        strictjson.dumps(servers),
        len(servers),
    )


def progress_line(pushes: int, simulated: timedelta, figures: dict) -> str:
    return (
        f"{pushes:>7} pushes  {simulated.total_seconds() / 86_400:6.2f} days  "
        f"rows {figures['snapshot_rows']:>7}  "
        f"db {figures['db_bytes'] / MIB:8.2f} MiB  "
        f"wal {figures['wal_bytes'] / MIB:6.2f} MiB  "
        f"free {figures['freelist_pages'] * figures['page_size'] / MIB:6.2f} MiB"
    )


def run(args: argparse.Namespace) -> dict:
    instance = Path(args.dir or tempfile.mkdtemp(prefix="botmon-storage-"))
    instance.mkdir(parents=True, exist_ok=True)
    database = instance / "botmon.sqlite3"
    app = create_app({"BOTMON_INSTANCE_PATH": str(instance), "BOT_API_KEY": "bench"})
    botmon = app.extensions["botmon"]

    pushes = int(args.days * 86_400 / args.interval)
    report_every = max(1, pushes // max(1, args.reports))
    bot = DemoBot(guild_count=args.guilds, seed=args.seed)
    end = datetime.now(UTC)
    first = end - timedelta(seconds=args.interval * (pushes - 1))
    print(
        f"{pushes} pushes of {args.guilds} guilds, one per {args.interval:g} s "
        f"({args.days:g} days), via {args.via}, into {database}",
        flush=True,
    )

    io = IoCounter()
    write_seconds: list[float] = []
    started = time.monotonic()
    done = 0
    body_bytes = 0
    with app.app_context():
        for number in range(pushes):
            if time.monotonic() - started > args.max_seconds:
                print(f"stopped early: --max-seconds {args.max_seconds:g} passed")
                break
            moment = first + timedelta(seconds=args.interval * number)
            payload = bot.next_payload(moment)

            if args.via == "accept":
                body = encode(payload)
                body_bytes = len(body)
                begin = time.perf_counter()
                ingest.accept(botmon, body)
            else:
                texts = canonical_texts(payload)
                begin = time.perf_counter()
                botmon.store.save_snapshot(moment.timestamp(), *texts)
            write_seconds.append(time.perf_counter() - begin)
            done += 1

            if done % report_every == 0:
                line = progress_line(done, moment - first, measure(database))
                print(line, flush=True)

        figures = measure(database)

    elapsed = time.monotonic() - started
    written = io.since_start("wchar")
    result = {
        "guilds": args.guilds,
        "interval_seconds": args.interval,
        "via": args.via,
        "pushes": done,
        "simulated_days": done * args.interval / 86_400,
        "request_body_bytes": body_bytes,
        "elapsed_seconds": round(elapsed, 1),
        "store_ms_median": round(statistics.median(write_seconds) * 1000, 2),
        "store_ms_p95": round(statistics.quantiles(write_seconds, n=20)[-1] * 1000, 2)
        if len(write_seconds) >= 20
        else None,
        "bytes_written": written,
        "bytes_written_per_push": round(written / done) if written and done else None,
        **figures,
    }
    if not args.dir:
        shutil.rmtree(instance)
    return result


def report(result: dict) -> None:
    rows = result["snapshot_rows"] or 1
    tables = result["bytes_by_table"]
    history = tables.get("snapshots", 0) + sum(
        size for name, size in tables.items() if name.startswith("ix_snapshots")
    )
    print()
    print(f"pushes stored          {result['pushes']}")
    print(f"snapshot rows kept     {result['snapshot_rows']}")
    print(f"database file          {result['db_bytes'] / MIB:.2f} MiB")
    print(f"WAL file               {result['wal_bytes'] / MIB:.2f} MiB")
    print(
        f"free pages in database "
        f"{result['freelist_pages'] * result['page_size'] / MIB:.2f} MiB"
    )
    if tables:
        per_row = history / rows
        print(f"history (table+index)  {history / MIB:.2f} MiB, {per_row:.0f} B/row")
        print(f"latest_servers table   {tables.get('latest_servers', 0) / MIB:.2f} MiB")
    print(f"latest guild list JSON {result['latest_servers_json_bytes'] / MIB:.2f} MiB")
    if result["bytes_written"] is not None:
        print(
            f"written (write calls)  {result['bytes_written'] / MIB:.0f} MiB, "
            f"{result['bytes_written_per_push'] / MIB:.2f} MiB per push"
        )
    print(
        f"{result['via']:<6} time per push  median {result['store_ms_median']} ms, "
        f"p95 {result['store_ms_p95']} ms"
    )
    print(f"wall time              {result['elapsed_seconds']} s")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    result = run(args)
    report(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
