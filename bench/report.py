"""The table the bench prints, and the goals botmon's figures are checked against."""

from collections.abc import Callable
from dataclasses import dataclass

from .plan import Plan
from .scenarios import PAIR, SCENARIOS

LABEL_WIDTH = 46
VALUE_WIDTH = 14
GOAL_RATIO = 1.5

Rows = dict[tuple[str, str], dict]


@dataclass(frozen=True)
class Goal:
    text: str
    check: Callable[[Rows], tuple[bool | None, str]]


def _value(rows: Rows, server: str, scenario: str, key: str):
    return rows.get((server, scenario), {}).get(key)


def _at_most(scenario: str, key: str, limit: float, min_posts: int = 0):
    def check(rows: Rows) -> tuple[bool | None, str]:
        value = _value(rows, "botmon", scenario, key)
        if value is None:
            return None, "not measured"
        posts = _value(rows, "botmon", scenario, "posts") or 0
        if posts < min_posts:
            return False, f"{value:g} over only {posts} POSTs"
        return value <= limit, f"{value:g}"

    return check


def _at_least(scenario: str, key: str, floor: float):
    def check(rows: Rows) -> tuple[bool | None, str]:
        value = _value(rows, "botmon", scenario, key)
        if value is None:
            return None, "not measured"
        return value >= floor, f"{value:g}"

    return check


def _near_reference(scenario: str, complete: bool = False):
    def check(rows: Rows) -> tuple[bool | None, str]:
        mine = _value(rows, "botmon", scenario, "p99_ms")
        theirs = _value(rows, "reference", scenario, "p99_ms")
        if mine is None or not theirs:
            return None, "not measured"
        ratio = mine / theirs
        note = f"{mine:g} ms vs {theirs:g} ms = {ratio:.2f}x"
        passed = ratio <= GOAL_RATIO
        if complete:
            lost = _value(rows, "botmon", scenario, "missed") or 0
            lost += _value(rows, "botmon", scenario, "connect_failed") or 0
            note += f", {lost} missed or not connected"
            passed = passed and lost == 0
        return passed, note

    return check


def _scaled_out(scenario: str):
    """Every listener served by the spread-out workers, near the reference."""

    def check(rows: Rows) -> tuple[bool | None, str]:
        row = rows.get(("botmon-redis", scenario))
        theirs = _value(rows, "reference", scenario, "p99_ms")
        if row is None or row.get("p99_ms") is None or not theirs:
            return None, "not measured"
        ratio = row["p99_ms"] / theirs
        lost = row["missed"] + row["connect_failed"]
        holding = sum(1 for count in row["listeners_by_pid"].values() if count)
        passed = ratio <= GOAL_RATIO and lost == 0 and holding == row["processes"]
        return passed, (
            f"{row['p99_ms']:g} ms vs {theirs:g} ms = {ratio:.2f}x, {lost} missed "
            f"or not connected, listeners per worker {row['listeners_split']}"
        )

    return check


GOALS = (
    Goal(
        "fan-out p99 <= 10 ms at 100 listeners",
        _at_most("fanout-small", "p99_ms", 10, 100),
    ),
    Goal(
        "fan-out p99 <= 50 ms at 1,000 listeners",
        _at_most("fanout-medium", "p99_ms", 50, 100),
    ),
    Goal(
        "fan-out p99 within 1.5x of the reference at 1,000",
        _near_reference("fanout-medium"),
    ),
    Goal(
        "fan-out p99 within 1.5x of the reference at 10,000, none missed",
        _near_reference("fanout-large", complete=True),
    ),
    Goal(
        "at least 2,500 validated, committed POSTs/s",
        _at_least("ingest-quiet", "posts_per_s", 2500),
    ),
    Goal(
        "a 10,000-server POST in at most 150 ms", _at_most("big-post", "median_ms", 150)
    ),
    Goal(
        "at most 30 KiB per idle listener",
        _at_most("idle-memory", "kib_per_listener", 30),
    ),
    Goal(
        "2 workers + Redis: fan-out p99 within 1.5x of the reference at 10,000, "
        "none missed, every worker holding listeners",
        _scaled_out("scaleout"),
    ),
)


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _ratio(mine, theirs) -> str:
    if not isinstance(mine, int | float) or not isinstance(theirs, int | float):
        return "-"
    if isinstance(mine, bool) or not theirs:
        return "-"
    return f"{mine / theirs:.2f}x"


def _cpu(row: dict | None) -> str:
    if not row:
        return "-"
    text = f"{row['server_cpu_s']:.1f}/{row['client_cpu_s']:.1f} in {row['wall_s']:.1f}"
    return text + (" *" if row["client_bound"] else "  ")


def table(rows: Rows, plan: Plan) -> str:
    """Every scenario's figures beside the reference's, as plain text."""
    lines = _pair_table(rows, plan)
    scaled = _scaleout_table(rows, plan)
    if lines and scaled:
        lines.append("")
    lines += scaled
    lines.append("")
    lines.append(
        "* the client was busy for at least 85% of the wall time: it, not the "
        "server, set the pace"
    )
    return "\n".join(lines)


def _pair_table(rows: Rows, plan: Plan) -> list[str]:
    header = (
        f"{'scenario / figure':<{LABEL_WIDTH}}{'botmon':>{VALUE_WIDTH}}"
        f"{'reference':>{VALUE_WIDTH + 4}}{'ratio':>{VALUE_WIDTH - 4}}"
    )
    lines = []
    for scenario in SCENARIOS:
        mine = rows.get(("botmon", scenario.id))
        theirs = rows.get(("reference", scenario.id))
        if scenario.servers != PAIR or (mine is None and theirs is None):
            continue
        lines.append(scenario.title(plan))
        for figure in scenario.figures:
            a = (mine or {}).get(figure.key)
            b = (theirs or {}).get(figure.key)
            lines.append(
                f"  {figure.label:<{LABEL_WIDTH - 2}}{_format(a):>{VALUE_WIDTH}}"
                f"{_format(b):>{VALUE_WIDTH + 4}}{_ratio(a, b):>{VALUE_WIDTH - 4}}"
            )
        lines.append(
            f"  {'cpu s server/client in wall s':<{LABEL_WIDTH - 2}}"
            f"{_cpu(mine):>{VALUE_WIDTH}}{_cpu(theirs):>{VALUE_WIDTH + 4}}"
        )
    if not lines:
        return []
    return [header, "-" * len(header), *lines]


# The scale-out scenarios' columns, and the two ratios worth reading there:
# what the second worker and Redis cost, and where that leaves botmon.
SCALED_COLUMNS = (
    ("botmon", "1 worker"),
    ("botmon-redis", "2 w + Redis"),
    ("reference", "reference"),
)
SCALED_RATIOS = (
    ("botmon-redis", "botmon", "2w/1w"),
    ("botmon-redis", "reference", "2w/ref"),
)


def _scaleout_table(rows: Rows, plan: Plan) -> list[str]:
    width = VALUE_WIDTH + 4
    header = (
        f"{'scenario / figure':<{LABEL_WIDTH}}"
        + "".join(f"{label:>{width}}" for _, label in SCALED_COLUMNS)
        + "".join(f"{label:>{VALUE_WIDTH - 4}}" for *_, label in SCALED_RATIOS)
    )
    lines = []
    for scenario in SCENARIOS:
        found = {name: rows.get((name, scenario.id)) for name in scenario.servers}
        if scenario.servers == PAIR or not any(found.values()):
            continue
        lines.append(scenario.title(plan))
        for figure in scenario.figures:
            values = {name: (row or {}).get(figure.key) for name, row in found.items()}
            lines.append(
                f"  {figure.label:<{LABEL_WIDTH - 2}}"
                + "".join(
                    f"{_format(values.get(n)):>{width}}" for n, _ in SCALED_COLUMNS
                )
                + "".join(
                    f"{_ratio(values.get(a), values.get(b)):>{VALUE_WIDTH - 4}}"
                    for a, b, _ in SCALED_RATIOS
                )
            )
        lines.append(
            f"  {'cpu s server/client in wall s':<{LABEL_WIDTH - 2}}"
            + "".join(f"{_cpu(found.get(n)):>{width}}" for n, _ in SCALED_COLUMNS)
        )
    if not lines:
        return []
    return [header, "-" * len(header), *lines]


def goals(rows: Rows, plan: Plan) -> str:
    """botmon's goals as pass/fail, judged on a full run only."""
    if plan.mode != "full":
        return "goals: judged on a full run only (make bench)"
    lines = ["goals:"]
    for goal in GOALS:
        passed, note = goal.check(rows)
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[passed]
        lines.append(f"  {verdict}  {goal.text}: {note}")
    return "\n".join(lines)
