"""The demo training as the app runs it, timed in fresh processes, against another checkout of the project.

``TrainingJob(...).run()`` on the demo model with the demo settings on the bundled sample (240 steps of a small
model: the share of each step that is not the model's own work shows here more than anywhere). Each run reports
the whole job, ``Trainer.train``, the training steps (forward and backward), the rest of the training loop (the
optimizer, the Trainer's per-step work, callbacks, the run record) and Python's full collections (their count and
seconds, from ``gc.callbacks``). With ``--against``, the same from another checkout (for example a git worktree
of an earlier commit), the two alternating (A, B, A, B, ...), medians and the ratio:

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/demo_job.py --against /tmp/before --runs 3

Both run with this checkout's virtual environment (the same libraries), each imports ``lora_core`` from its own
folder. Results also go to ``bench/.work/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work"
KEYS = ("job_s", "train_s", "steps_s", "loop_s", "gc_full", "gc_full_s")


def worker(repo: Path, result: Path, steps: int) -> None:
    import gc

    sys.path.insert(0, str(repo))
    full = {"count": 0, "s": 0.0, "start": 0.0}

    def watch(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            full["start"] = time.perf_counter()
        else:
            full["count"] += 1
            full["s"] += time.perf_counter() - full["start"]

    with tempfile.TemporaryDirectory(prefix="demo-job-") as home:
        os.environ["SIMPLE_LORA_HOME"] = home
        import transformers

        from lora_core import trainer as core_trainer
        from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET, build_demo_model
        from lora_core.training import TrainConfig, TrainingJob

        if not str(Path(core_trainer.__file__).resolve()).startswith(str(repo.resolve())):
            raise SystemExit(f"lora_core was imported from {core_trainer.__file__}, not from {repo}")
        base = Path(home) / "Models" / "LLM" / "demo"
        build_demo_model(base)
        measure: dict = {"steps_s": 0.0, "steps": 0}
        step, train = core_trainer.SimpleTrainer.training_step, transformers.Trainer.train

        def timed_step(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return step(self, *args, **kwargs)
            finally:
                measure["steps_s"] += time.perf_counter() - started
                measure["steps"] += 1

        def timed_train(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return train(self, *args, **kwargs)
            finally:
                measure["train_s"] = time.perf_counter() - started

        core_trainer.SimpleTrainer.training_step, transformers.Trainer.train = timed_step, timed_train
        settings = {**DEMO_TRAINING, **({"max_steps": steps} if steps else {})}
        config = TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task="demo", **settings)
        gc.callbacks.append(watch)
        started = time.perf_counter()
        snap = TrainingJob(config).run()
        measure["job_s"] = time.perf_counter() - started
        gc.callbacks.remove(watch)
    if snap["state"] != "completed":
        raise SystemExit(f"the demo training ended {snap['state']}: {snap.get('error')}")
    measure.update(loop_s=measure["train_s"] - measure["steps_s"], gc_full=full["count"], gc_full_s=full["s"],
                   final_loss=snap["loss"][-1][1])  # fmt: skip
    result.write_text(json.dumps(measure), encoding="utf-8")


def run_one(repo: Path, steps: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        result = Path(out.name)
    try:
        command = [sys.executable, __file__, "--worker", str(repo), "--result", str(result), "--steps", str(steps)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"the run from {repo} failed:\n{done.stderr[-3000:]}")
        return json.loads(result.read_text(encoding="utf-8"))
    finally:
        result.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, default=None, help="another checkout of the project to compare with")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (default: the whole run)")
    parser.add_argument("--work", type=Path, default=WORK, help="where the results go")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.result, args.steps)
        return
    if not 1 <= args.runs <= 20 or args.steps < 0:
        parser.exit(2, "--runs must be between 1 and 20, --steps at least 0\n")
    if args.against is not None and not (args.against / "lora_core" / "training.py").is_file():
        parser.exit(2, f"{args.against} is not a checkout of this project (no lora_core/training.py)\n")
    repos = {"this checkout": REPO, **({f"{args.against}": args.against} if args.against else {})}
    runs: dict[str, list[dict]] = {name: [] for name in repos}
    started = time.perf_counter()
    for i in range(args.runs):
        for name, repo in repos.items():
            runs[name].append(run_one(repo, args.steps))
            print(f"run {i + 1} {name}: job {runs[name][-1]['job_s']:.2f} s", flush=True)
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in KEYS} for name, rs in runs.items()}
    lines = ["", "| checkout | job s | Trainer.train s | steps s | rest of the loop s | full collections | their s |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, m in medians.items():
        lines.append(f"| {name} | {m['job_s']:.2f} | {m['train_s']:.2f} | {m['steps_s']:.2f} | {m['loop_s']:.2f} | "
                     f"{m['gc_full']:.0f} | {m['gc_full_s']:.2f} |")  # fmt: skip
    steps = {name: {r["steps"] for r in rs} for name, rs in runs.items()}
    if len(set().union(*steps.values())) > 1:  # two checkouts whose demo settings differ (60 epochs before 2026-12-01)
        raise SystemExit(f"the runs trained different numbers of steps {steps}: pass --steps to compare them")
    if args.against:
        ratio = medians[str(args.against)]["job_s"] / medians["this checkout"]["job_s"]
        lines.append(f"\nThis checkout's job is {ratio:.2f}x as fast as {args.against}'s (medians of {args.runs}).")
    lines.append(f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(lines)
    print(text)
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.work / f"demo-job-{stamp}.md").write_text(text + "\n", encoding="utf-8")
    (args.work / f"demo-job-{stamp}.json").write_text(json.dumps(runs, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
