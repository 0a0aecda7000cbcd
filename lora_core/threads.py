"""How many threads a CPU training uses on a machine it shares.

PyTorch starts one compute thread per core. Every matrix product is split between them and waits for the last one
to finish, so when another process keeps one of two cores busy the training's second thread only runs in the time
slices the other process leaves, and every step waits for it: a 2-core training beside one busy process took 2.75x
its idle time, beside a 2-thread torch process about 10x. Using only the cores that are free costs far less.

``ThreadPolicy`` measures, between two readings, how much CPU time other processes took on the cores this process
may run on (``/proc/stat`` per core, less this process's own CPU time; in a container with a CPU limit, the
container's own usage from its cgroup instead) and sets the training's threads to the cores left free: all of them
on an idle machine, fewer when something else is busy, all again when it stops. A core counts as taken only when
the other processes kept it busy in two windows running (the lesser of the last two readings): an open page of
the app works in bursts (a quarter of a core on average, most of a core for a moment at each of its ticks), and
taking a thread away for each burst made the demo training 1.44x as long with a page following it, against 1.18x
with its threads kept (``bench/page.py``). "All" is never more than torch's
own default (one per physical core). A reading costs a few tens of microseconds; the training re-checks at most
once a second, between steps (``trainer.py``). Where nothing can be measured, the threads stay as they are.

``SIMPLE_LORA_THREADS=N`` (or ``OMP_NUM_THREADS``) fixes the count instead; so do several training processes on
one machine (torchrun: each takes its share of the cores).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

ENV = "SIMPLE_LORA_THREADS"
RECHECK_S = 1.0  # the shortest time between two decisions: shorter windows measure the scheduler's noise
MIN_WINDOW_S = 0.25  # a forced check over less than this keeps the threads as they are


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity; every CPU where the system does not say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


CGROUP = Path("/sys/fs/cgroup")


def cpu_quota(path: Path = CGROUP / "cpu.max") -> float | None:
    """The cgroup's CPU limit in cores (a container's ``--cpus``), None when there is none."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may use: its affinity, capped by a cgroup CPU limit."""
    cores = len(allowed_cpus())
    quota = cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else max(1, cores)


def cgroup_busy_seconds(stat: Path = CGROUP / "cpu.stat") -> float | None:
    """CPU seconds every process of this cgroup (a container) has used, None where it cannot be read."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        return None
    return None


def machine_busy_reader() -> Callable[[], float | None]:
    """How to read the busy CPU seconds that compete with this process: its container's own usage when a CPU
    limit makes it smaller than its CPUs (the host's other tenants do not take its quota), else the busy time of
    the CPUs it may run on."""
    cpus = allowed_cpus()
    quota = cpu_quota()
    if quota and quota < len(cpus) and cgroup_busy_seconds() is not None:
        return cgroup_busy_seconds
    return lambda: busy_cpu_seconds(cpus)


def busy_cpu_seconds(cpus: list[int], stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds the given CPUs have spent busy (user, nice, system, irq, softirq) since boot, for every process;
    None where ``/proc/stat`` cannot be read (not Linux)."""
    wanted = {f"cpu{n}" for n in cpus}
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
            total += user + nice + system + irq + softirq
    return total / hz


def threads_for(cores: int, others: float) -> int:
    """The threads to use on ``cores`` cores while other processes keep ``others`` cores busy: the free cores,
    rounded half up, at least one."""
    return max(1, min(cores, math.floor(cores - others + 0.5)))


class ThreadPolicy:
    """Chooses the training's threads from the cores other processes leave free, re-checked between steps.

    ``fixed`` (from ``SIMPLE_LORA_THREADS`` or ``OMP_NUM_THREADS`` when not given) turns the measuring off. The
    readings are injectable for tests: ``busy()`` the CPUs' busy seconds, ``own()`` this process's CPU seconds,
    ``clock()`` the time, ``apply(n)`` what sets the threads (``torch.set_num_threads``)."""

    def __init__(
        self,
        fixed: int | None = None,
        cores: int | None = None,
        busy: Callable[[], float | None] | None = None,
        own: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        apply: Callable[[int], None] | None = None,
    ) -> None:
        self.fixed = fixed if fixed is not None else fixed_threads()
        self.cores = cores or min(usable_cores(), _torch_default_threads())
        if self.fixed is None and fixed is None:
            ranks = _local_processes()
            if ranks > 1:  # several training processes on this machine: each its share, not measured
                self.fixed = max(1, self.cores // ranks)
        self._busy = busy or machine_busy_reader()
        self._own, self._clock, self.apply = own, clock, apply or _set_torch_threads
        self.threads = self.fixed or self.cores
        self.others = 0.0  # the last reading: cores other processes kept busy
        self._measured = False  # whether there is a reading yet
        self.changes = 0
        self._last = self._read()

    def _read(self) -> tuple[float, float | None, float]:
        return self._clock(), self._busy(), self._own()

    def start(self) -> int:
        """Set the threads for the start of a training (from what other processes did since the policy began)."""
        return self.check(force=True)

    def check(self, force: bool = False) -> int:
        """Re-measure when at least ``RECHECK_S`` passed (or ``force``), change the threads if the free cores
        changed; the threads in use."""
        if self.fixed:
            if force:
                self._set(self.fixed, force=True)
            return self.threads
        if not force and self._clock() - self._last[0] < RECHECK_S:
            return self.threads
        now = self._read()
        elapsed = now[0] - self._last[0]
        if now[1] is not None and self._last[1] is not None and elapsed >= MIN_WINDOW_S:
            others = (now[1] - self._last[1]) - (now[2] - self._last[2])
            reading = max(0.0, others / elapsed)
            taken = min(reading, self.others) if self._measured else reading  # busy in two windows running
            self.others, self._measured = reading, True
            self._set(threads_for(self.cores, taken), force)
        self._last = now
        return self.threads

    @property
    def measuring(self) -> bool:
        """Whether the threads follow the machine's load (not fixed by the environment or the launcher)."""
        return not self.fixed

    def _set(self, threads: int, force: bool = False) -> None:
        if threads != self.threads or force:
            self.changes += threads != self.threads
            self.threads = threads
            self.apply(threads)


def fixed_threads() -> int | None:
    """The thread count the environment fixes (``SIMPLE_LORA_THREADS``, else ``OMP_NUM_THREADS``), if any; at
    most one per CPU of the machine (more only slows a training down)."""
    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isascii() and value.isdigit() and int(value) > 0:
            return min(int(value), os.cpu_count() or 1)
    return None


def _local_processes() -> int:
    """Training processes a launcher (torchrun, accelerate) started on this machine; 1 when there is no launcher."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else 1


def _torch_default_threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
