"""The thread policy of a CPU training on a shared machine (lora_core/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lora_core import threads
from lora_core.threads import ThreadPolicy, threads_for


@pytest.fixture(autouse=True)
def threads_unset(monkeypatch):
    """No count from the environment (the test processes of a parallel run set OMP_NUM_THREADS=1); the tests that
    are about the environment set it themselves."""
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


class FakeMachine:
    """Readings the policy sees: time, the CPUs' busy seconds, this process's CPU seconds."""

    def __init__(self) -> None:
        self.now = self.busy = self.own = 0.0
        self.applied: list[int] = []

    def run(self, seconds: float, ours: float, others: float) -> None:
        """``seconds`` pass; this process keeps ``ours`` cores busy, other processes ``others``."""
        self.now += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds

    def policy(self, cores: int = 2, fixed: int | None = None) -> ThreadPolicy:
        return ThreadPolicy(fixed=fixed, cores=cores, busy=lambda: self.busy, own=lambda: self.own,
                            clock=lambda: self.now, apply=self.applied.append)  # fmt: skip


@pytest.mark.parametrize(
    ("cores", "others", "expected"),
    [(2, 0.0, 2), (2, 0.3, 2), (2, 0.67, 1), (2, 1.0, 1), (2, 2.0, 1), (2, 5.0, 1), (8, 2.0, 6), (8, 0.49, 8),
     (8, 0.5, 8), (8, 0.51, 7), (1, 0.0, 1)],
)  # fmt: skip
def test_threads_are_the_free_cores_rounded_at_least_one(cores, others, expected):
    assert threads_for(cores, others) == expected


def test_the_threads_follow_what_other_processes_use_and_come_back_when_they_stop():
    machine = FakeMachine()
    policy = machine.policy(cores=2, fixed=None)
    machine.run(2.0, ours=1.0, others=0.05)  # loading the model; a quiet machine
    assert policy.start() == 2 and machine.applied == [2]
    machine.run(0.5, ours=2.0, others=0.0)
    assert policy.check() == 2  # under a second since the last look: not measured yet, the window grows
    machine.run(1.0, ours=1.0, others=1.0)  # a busy process appears: one window could be a burst
    assert policy.check() == 2 and machine.applied == [2] and policy.others == pytest.approx(1.0 / 1.5)
    machine.run(1.0, ours=1.0, others=1.0)  # it keeps its core: taken
    assert policy.check() == 1 and machine.applied == [2, 1] and policy.others == pytest.approx(1.0)
    machine.run(1.0, ours=1.0, others=1.0)
    assert policy.check() == 1 and machine.applied == [2, 1]
    machine.run(1.0, ours=1.0, others=0.0)  # it ended: both cores again at once
    assert policy.check() == 2 and machine.applied == [2, 1, 2] and policy.changes == 2


def test_bursts_of_another_process_leave_the_threads_alone():
    """An open page of the app works in bursts at its ticks: most of a core for a moment, a quarter on average."""
    machine = FakeMachine()
    policy = machine.policy(cores=2)
    machine.run(2.0, ours=1.0, others=0.0)
    assert policy.start() == 2
    for burst in (0.8, 0.1, 0.9, 0.0, 0.7, 0.2, 0.8, 0.1):  # a tick's work lands in every other window
        machine.run(1.0, ours=2.0 - burst, others=burst)
        assert policy.check() == 2
    assert machine.applied == [2] and policy.changes == 0


def test_a_start_right_after_creation_keeps_every_core_until_it_can_measure():
    machine = FakeMachine()
    policy = machine.policy(cores=4)
    machine.run(0.01, ours=1.0, others=3.0)  # 10 ms: too short to say anything
    assert policy.start() == 4
    machine.run(1.0, ours=1.0, others=3.0)
    assert policy.check() == 1


def test_a_fixed_count_is_never_changed(monkeypatch):
    machine = FakeMachine()
    policy = machine.policy(cores=2, fixed=2)
    assert policy.start() == 2
    machine.run(5.0, ours=1.0, others=2.0)
    assert policy.check() == 2 and machine.applied == [2]
    monkeypatch.setenv("SIMPLE_LORA_THREADS", "1")
    assert threads.fixed_threads() == 1
    monkeypatch.setenv("SIMPLE_LORA_THREADS", "100000")  # never more threads than the machine has CPUs
    assert threads.fixed_threads() == threads.os.cpu_count()
    for bad in ("0", "-1", "two", ""):
        monkeypatch.setenv("SIMPLE_LORA_THREADS", bad)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.fixed_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    for odd in ("1e9", "²", "٣", " 2 x"):  # not a plain ASCII number: not fixed, and no crash
        monkeypatch.setenv("SIMPLE_LORA_THREADS", odd)
        assert threads.fixed_threads() is None


def test_processes_of_one_launcher_share_the_cores_without_measuring(monkeypatch):
    monkeypatch.delenv("SIMPLE_LORA_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    machine = FakeMachine()
    policy = ThreadPolicy(cores=8, busy=lambda: machine.busy, own=lambda: machine.own, clock=lambda: machine.now,
                          apply=machine.applied.append)  # fmt: skip
    assert policy.fixed == 4 and not policy.measuring and policy.start() == 4
    machine.run(5.0, ours=4.0, others=4.0)  # the other rank: not another program
    assert policy.check() == 4 and machine.applied == [4]


def test_without_proc_stat_the_policy_keeps_its_threads():
    machine = FakeMachine()
    policy = ThreadPolicy(fixed=None, cores=2, busy=lambda: None, own=lambda: 0.0, clock=lambda: machine.now,
                          apply=machine.applied.append)  # fmt: skip
    machine.now = 3.0
    assert policy.start() == 2 and policy.check() == 2


def test_proc_stat_and_cgroup_limits_are_read(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  900 0 900 9000 0 0 0 0 0 0\n"
        "cpu0 100 10 50 4000 7 5 5 0 0 0\n"
        "cpu1 200 0 100 4000 0 0 0 0 0 0\n"
        "cpu10 600 0 600 1000 0 0 0 0 0 0\n"
        "intr 12345\n"
    )  # fmt: skip
    hz = threads.os.sysconf("SC_CLK_TCK")
    assert threads.busy_cpu_seconds([0], stat) == pytest.approx(170 / hz)  # idle and iowait are not busy
    assert threads.busy_cpu_seconds([0, 1], stat) == pytest.approx(470 / hz)  # cpu10 is not cpu1
    assert threads.busy_cpu_seconds([0], tmp_path / "missing") is None
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")
    assert threads.cpu_quota(limit) == 1.5
    limit.write_text("max 100000\n")
    assert threads.cpu_quota(limit) is None
    limit.write_text("garbage")
    assert threads.cpu_quota(limit) is None
    assert threads.cpu_quota(tmp_path / "none") is None
    usage = tmp_path / "cpu.stat"
    usage.write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert threads.cgroup_busy_seconds(usage) == 2.5
    usage.write_text("nr_periods 0\n")
    assert threads.cgroup_busy_seconds(usage) is None and threads.cgroup_busy_seconds(tmp_path / "x") is None
    assert 1 <= threads.usable_cores() <= (threads.os.cpu_count() or 1)


def cpu_seconds(pids: list[str]) -> float:
    """The CPU seconds (user and system) the processes ``pids`` used so far, from each one's /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def others_pids() -> list[str]:
    return [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and p.name != str(os.getpid())]


def measured(policy: ThreadPolicy, pids: Callable[[], list[str]], holds: Callable[[float, float], bool]) -> list:
    """The policy's reading of the other processes' cores over 1.2 s and what ``pids`` used in that time, until
    ``holds(reading, used)`` (at most three windows): every window's pair."""
    readings = []
    for _ in range(3):
        watched = pids()
        policy.check(force=True)
        before, started = cpu_seconds(watched), time.monotonic()
        time.sleep(1.2)
        policy.check(force=True)
        readings.append((policy.others, (cpu_seconds(watched) - before) / (time.monotonic() - started)))
        if holds(*readings[-1]):
            break
    return readings


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads Linux's /proc/stat and /proc/<pid>/stat")
def test_on_this_machine_a_busy_process_counts_and_our_own_work_does_not():
    """Against each process's own count in /proc: a busy thread of ours is not another's load, a busy process is.
    The machine may run other work meanwhile (a parallel test process): it counts as other processes' too, and
    where it starts or ends within a window, the window is measured again (three tries)."""
    spin = threading.Event()

    def ours():
        while not spin.is_set():
            pass

    mine = threading.Thread(target=ours)
    policy = ThreadPolicy(fixed=None, cores=os.cpu_count() or 1, apply=lambda n: None)
    mine.start()
    try:
        readings = measured(policy, others_pids, lambda seen, used: seen <= used + 0.3)
    finally:
        spin.set()
        mine.join()
    assert readings[-1][0] <= readings[-1][1] + 0.3, readings  # our busy thread is not counted
    rival = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started
        readings = measured(policy, lambda: [str(rival.pid)], lambda seen, used: used > 0.3 and seen >= used - 0.2)
    finally:
        rival.kill()
        rival.wait()
    assert readings[-1][1] > 0.3 and readings[-1][0] >= readings[-1][1] - 0.2, readings  # the busy one is counted


def one_thread_policy(monkeypatch, seen: list[int]) -> None:
    """Every training's policy takes one thread, recording what it sets."""
    from lora_core import trainer

    def shrink(n: int) -> None:
        seen.append(n)
        torch.set_num_threads(n)

    original = trainer.ThreadCallback.__init__

    def init(self, job, policy=None):
        original(self, job, ThreadPolicy(fixed=1, apply=shrink))

    monkeypatch.setattr(trainer.ThreadCallback, "__init__", init)


def demo_config(home, **overrides):
    from lora_core.demo import SAMPLE_DATASET
    from lora_core.training import TrainConfig

    return TrainConfig(base=str(home / "Models" / "LLM" / "demo"), data=str(SAMPLE_DATASET), max_steps=2,
                       batch_size=4, max_length=64, samples=0, eval_rows=0, **overrides)  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="the policy is for CPU trainings")
def test_a_failed_step_also_gives_the_process_its_count_back(in_demo_home, monkeypatch):
    from lora_core import trainer
    from lora_core.training import State, TrainingJob

    before, seen = torch.get_num_threads(), []
    one_thread_policy(monkeypatch, seen)

    def broken(self, *args, **kwargs):
        raise RuntimeError("a step failed")

    monkeypatch.setattr(trainer.ProgressCallback, "on_step_end", broken)
    snap = TrainingJob(demo_config(in_demo_home, task="broken")).run()
    assert snap["state"] == State.FAILED and seen[0] == 1
    assert torch.get_num_threads() == before and seen[-1] == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="the policy is for CPU trainings")
def test_a_training_publishes_its_threads_and_gives_the_process_its_count_back(in_demo_home, monkeypatch):
    from lora_core.training import State, TrainingJob

    before, seen = torch.get_num_threads(), []
    one_thread_policy(monkeypatch, seen)
    snap = TrainingJob(demo_config(in_demo_home, task="threads")).run()
    assert snap["state"] == State.COMPLETED
    assert snap["threads"] == 1 and seen[0] == 1
    assert "cores" not in snap["detail"]  # a fixed count: the Train tab does not blame other programs
    assert torch.get_num_threads() == before and seen[-1] == before  # given back after the training


@pytest.mark.skipif(torch.cuda.is_available(), reason="the policy is for CPU trainings")
def test_a_measuring_policy_records_the_cores_it_chooses_from(in_demo_home, monkeypatch):
    from lora_core.training import State, TrainingJob

    monkeypatch.delenv("SIMPLE_LORA_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    snap = TrainingJob(demo_config(in_demo_home, task="measured")).run()
    assert snap["state"] == State.COMPLETED
    assert 1 <= snap["threads"] <= snap["detail"]["cores"] <= torch.get_num_threads()


def test_the_train_tab_says_when_other_programs_take_cores_in_both_languages():
    from webui import train_view

    snap = {"task": "t", "state": "running", "step": 3, "total_steps": 10, "epoch": 0.3, "loss": [], "eval_loss": [],
            "eta_s": 12.0, "tokens_per_s": 100.0, "threads": 1, "detail": {"cores": 2}}  # fmt: skip
    assert "1 of 2 CPU cores: other programs keep the rest busy" in train_view.progress_text(snap, "en")
    assert "使用 2 个 CPU 核心中的 1 个" in train_view.progress_text(snap, "zh")
    for quiet in ({"threads": 2}, {"threads": 0}, {"detail": {}}):  # all cores, a GPU, an older record
        assert "CPU cores" not in train_view.progress_text({**snap, **quiet}, "en")
