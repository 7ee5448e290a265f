"""`python -m bench [--quick]`: run the benchmark and print its tables."""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .plan import FULL, QUICK
from .report import goals, table
from .runner import SERVERS, run
from .scenarios import SCENARIOS

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark botmon beside a reference."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts; the whole run ~1 min"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.id for s in SCENARIOS],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=list(SERVERS),
        help="run only against this server (repeatable)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the servers and the client run on any core (see docs/benchmarks.md)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="bench %(asctime)s %(message)s", stream=sys.stderr
    )

    plan = QUICK if args.quick else FULL
    servers = args.server or list(SERVERS)
    try:
        rows, out_path = asyncio.run(
            run(plan, args.results, set(args.only or ()), servers, not args.no_pin)
        )
    except RuntimeError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1

    print(table(rows, plan))
    print()
    print(goals(rows, plan))
    print(f"\nresults: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
