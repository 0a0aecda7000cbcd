"""CPU time by kind of process while a command runs: the user + system time of the command and of every process
it starts (directly or not), read from /proc twice a second, grouped as test processes, apps, Chromium, other
Python processes and the rest. The last value read of each process counts, so its last half second may be missed,
and a process that lives less than that altogether: the sums are a lower bound. Linux only.

    .venv/bin/python bench/cpu_by_process.py -- .venv/bin/python -m pytest

It prints the command's wall time, the CPU seconds and number of processes of each group, their sum (cores busy =
CPU / wall), and how busy the whole machine was meanwhile (``/proc/stat``: the command's processes and anything
else). A process is a test process by its own program (pytest, or a pytest-xdist worker), not by its arguments:
an app or a training a test starts names pytest's temporary folders in its arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

EVERY = 0.5  # seconds between reads (a read of /proc takes a few milliseconds)
TICK = os.sysconf("SC_CLK_TCK")
EXECNET = "import sys;exec(eval(sys.stdin"  # how a pytest-xdist worker is started (``python -u -c ...``)


def snapshot(seen: dict[str, list], root: int) -> None:
    """The CPU seconds of the command (pid ``root``) and of every process it started, directly or not, by pid and
    start time (a pid may be reused). A process is taken in when first read while its parent is one of them; one
    orphaned before that (its parent gone) is missed."""
    live: dict[str, tuple[str, float, str]] = {}  # pid: (key, CPU seconds, parent pid)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2 :].split()
            live[pid] = (f"{pid}:{fields[19]}", (int(fields[11]) + int(fields[12])) / TICK, fields[1])
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    known = {str(root)} | {pid for pid, (key, _, _) in live.items() if key in seen}

    def member(pid: str, depth: int = 0) -> bool:
        return pid in known or pid in live and depth < 64 and member(live[pid][2], depth + 1)

    for pid, (key, cpu, _) in live.items():
        if key in seen:
            seen[key][0] = cpu
        elif member(pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")[:-1]
            except OSError:
                continue
            seen[key] = [cpu, argv]


def machine_busy() -> tuple[float, float]:
    """The machine's busy and total CPU time so far (``/proc/stat``, in ticks: idle and I/O wait are not busy)."""
    with open("/proc/stat", encoding="utf-8") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def python_target(argv: list[str]) -> tuple[str, str]:
    """What a Python command line runs: ("-m", module), ("-c", code), ("script", path) or ("", "")."""
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        if arg in ("-m", "-c"):
            return arg, rest[0] if rest else ""
        if arg in ("-X", "-W"):  # options with a value of their own
            rest = rest[1:]
        elif not arg.startswith("-"):
            return "script", arg
    return "", ""


def group(argv: list[str]) -> str:
    """The group of a process, from its arguments (``/proc/PID/cmdline``). A test process is
    one by its own program (pytest, or a pytest-xdist worker started by execnet), not by its arguments: an app or
    a training that a test starts names pytest's temporary folders in its own."""
    name = os.path.basename(argv[0]) if argv else ""
    if "chrom" in name or name == "exe" and any(a.startswith("--type=") for a in argv):  # Chromium's helpers
        return "Chromium"
    kind, target = python_target(argv) if name.startswith("python") else ("", "")
    runs = target.split(".")[0] if kind == "-m" else os.path.basename(target) if kind == "script" else name
    if runs in ("pytest", "py.test", "xdist") or kind == "-c" and target.startswith(EXECNET):
        return "test processes"
    if kind == "script" and runs == "app.py":
        return "apps (python app.py)"
    if name.startswith("python"):
        return "other Python processes (CLI, torchrun, benchmarks)"
    return "other"


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or not os.path.isdir("/proc"):
        sys.exit(__doc__)
    seen: dict[str, list] = {}
    busy, total = machine_busy()
    started = time.monotonic()
    proc = subprocess.Popen(args)
    while proc.poll() is None:
        snapshot(seen, proc.pid)
        time.sleep(EVERY)
    wall = time.monotonic() - started
    busy_after, total_after = machine_busy()
    busy, total = busy_after - busy, total_after - total
    totals: Counter = Counter()
    count: Counter = Counter()
    for cpu, argv in seen.values():
        name = group(argv)
        totals[name] += cpu
        count[name] += 1
    cores = os.cpu_count() or 1
    print(f"\nwall {wall:.1f} s, exit status {proc.returncode}")
    for name, cpu in totals.most_common():
        print(f"{cpu:9.1f} s  {count[name]:4d} processes  {name}")
    print(f"{sum(totals.values()):9.1f} s  in all: {sum(totals.values()) / wall:.2f} cores busy on average")
    print(f"the machine, everything on it: {cores * busy / max(total, 1):.2f} of its {cores} cores busy on average")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
