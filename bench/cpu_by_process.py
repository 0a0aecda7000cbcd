"""CPU time by kind of process while a command runs: every process's user + system time read from /proc once a
second (the last value seen of each process counts, so a process that lives less than a second may be missed),
grouped as test processes, apps, Chromium, other Python processes and the kernel's threads. Linux only.

    .venv/bin/python bench/cpu_by_process.py -- .venv/bin/python -m pytest

It prints the command's wall time, the CPU seconds of each group and their sum (cores busy = CPU / wall).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

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
                    command = f.read().replace(b"\0", b" ").decode(errors="replace")
                seen[key] = [cpu, command, fields[1]]
            else:
                seen[key][0] = cpu
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue


def group(command: str, parent: str) -> str:
    if "chrom" in command:
        return "Chromium"
    if "app.py" in command:
        return "apps (python app.py)"
    if "sys;exec(eval(sys.stdin" in command or "pytest" in command:
        return "test processes"
    if parent == "2" or not command:
        return "kernel threads (and processes gone before their first read)"
    if "python" in command:
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
        time.sleep(1)
    wall = time.monotonic() - started
    totals: Counter = Counter()
    for key, (cpu, command, parent) in seen.items():
        if str(os.getpid()) == key.split(":")[0]:
            continue  # this sampler
        totals[group(command, parent)] += cpu - (before[key][0] if key in before else 0)
    print(f"\nwall {wall:.1f} s, exit status {proc.returncode}")
    for name, cpu in totals.most_common():
        print(f"{cpu:9.1f} s  {name}")
    print(f"{sum(totals.values()):9.1f} s  in all: {sum(totals.values()) / wall:.2f} cores busy on average")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
