"""What the kernel knows about a process: CPU time, memory, children, cores."""

import os
import resource
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CORE = 0
CLIENT_CORE = 1
# Enough for 10,000 listeners plus the posters, where the hard limit allows.
WANTED_OPEN_FILES = 20_000
# The state column of /proc/net/tcp for an established connection.
TCP_ESTABLISHED = "01"


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    found = [pid]
    for parent in found:
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                found.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def established_by_process(port: int, pids: list[int]) -> dict[int, int]:
    """How many established TCP connections to local `port` each process holds.

    A connection belongs to the process whose file descriptors hold its socket;
    the listening socket, which gunicorn's processes share, is not established
    and so is not counted.
    """
    wanted = _established_inodes(port)
    held = {}
    for pid in pids:
        held[pid] = sum(1 for inode in _socket_inodes(pid) if inode in wanted)
    return held


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == TCP_ESTABLISHED:
            inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> list[str]:
    inodes = []
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[len("socket:[") : -1])
    return inodes


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the fields after it do not.
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of the processes, summed."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def cores_available() -> set[int]:
    return os.sched_getaffinity(0)


def can_pin() -> bool:
    """Whether the server and the client can each have a core of their own."""
    return {SERVER_CORE, CLIENT_CORE} <= cores_available()


def pin_to(core: int) -> None:
    """Run the calling process (and what it starts later) on one core."""
    os.sched_setaffinity(0, {core})


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit towards the hard one; return the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
