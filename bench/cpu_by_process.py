"""CPU time by kind of process while a command runs: every process's user + system time read from /proc twice a
second (the last value seen of each process counts: its last half second may be missed, and a process that lives
less than that altogether), grouped as test processes, apps, Chromium, other Python processes and the kernel's
threads. Linux only.

    .venv/bin/python bench/cpu_by_process.py -- .venv/bin/python -m pytest

It prints the command's wall time, the CPU seconds and number of processes of each group and their sum (cores
busy = CPU / wall). A process is a test process by its own program (pytest, or a pytest-xdist worker), not by its
arguments: an app or a training a test starts names pytest's temporary folders in its arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

EVERY = 0.5  # seconds between reads (a read of /proc takes a few milliseconds)
TICK = os.sysconf("SC_CLK_TCK")


def snapshot(seen: dict[str, list]) -> None:
    """Each live process's CPU seconds, by pid and start time (a pid may be reused)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            key = f"{pid}:{fields[19]}"
            if key not in seen:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")[:-1]
                seen[key] = [cpu, argv, fields[1]]
            else:
                seen[key][0] = cpu
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue


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


def group(argv: list[str], parent: str) -> str:
    """The group of a process, from its arguments (``/proc/PID/cmdline``) and its parent's pid. A test process is
    one by its own program (pytest, or a pytest-xdist worker started by execnet), not by its arguments: an app or
    a training that a test starts names pytest's temporary folders in its own."""
    name = os.path.basename(argv[0]) if argv else ""
    if "chrom" in name or name == "exe" and any(a.startswith("--type=") for a in argv):  # Chromium's helpers
        return "Chromium"
    kind, target = python_target(argv) if name.startswith("python") else ("", "")
    if (
        name in ("pytest", "py.test")
        or kind == "-m"
        and target.split(".")[0] in ("pytest", "xdist")
        or kind == "script"
        and os.path.basename(target) in ("pytest", "py.test")
        or kind == "-c"
        and target.startswith("import sys;exec(eval(sys.stdin")
    ):
        return "test processes"
    if kind == "script" and os.path.basename(target) == "app.py":
        return "apps (python app.py)"
    if parent == "2" or not argv:
        return "kernel threads (and processes gone before their first read)"
    if name.startswith("python"):
        return "other Python processes (CLI, torchrun, benchmarks)"
    return "other"


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or not os.path.isdir("/proc"):
        sys.exit(__doc__)
    before: dict[str, list] = {}
    snapshot(before)
    seen: dict[str, list] = {}
    started = time.monotonic()
    proc = subprocess.Popen(args)
    while proc.poll() is None:
        snapshot(seen)
        time.sleep(EVERY)
    wall = time.monotonic() - started
    totals: Counter = Counter()
    started_here: Counter = Counter()  # processes that started while the command ran
    for key, (cpu, argv, parent) in seen.items():
        if str(os.getpid()) == key.split(":")[0]:
            continue  # this sampler
        name = group(argv, parent)
        totals[name] += cpu - (before[key][0] if key in before else 0)
        started_here[name] += key not in before
    print(f"\nwall {wall:.1f} s, exit status {proc.returncode}")
    for name, cpu in totals.most_common():
        if round(cpu, 1) == 0 and not started_here[name]:
            continue
        print(f"{cpu:9.1f} s  {started_here[name]:4d} started  {name}")
    print(f"{sum(totals.values()):9.1f} s  in all: {sum(totals.values()) / wall:.2f} cores busy on average")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
