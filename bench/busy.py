"""Training on a busy machine: the demo training alone, beside one single-threaded busy process and beside a
2-thread torch process, with Simple LoRA's thread policy (``lora_core/threads.py``) and with the thread count fixed
at torch's own default, one per physical core (what PyTorch does by itself, ``SIMPLE_LORA_THREADS=<that>``).

    .venv/bin/python bench/busy.py [--steps 120] [--runs 2]

Each training runs in a fresh process (the demo model, the bundled sample, the demo's settings, ``--steps``
optimizer steps, no samples or evaluation); the competitor starts before it and is killed after it. The
conditions alternate, the table shows the median training time of each and its ratio to the idle training with
the policy measured in the same run. A fixed-thread training that passes ``--cap`` times the idle time is stopped
and shown as more than that. Results also go to ``bench/.work-busy/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
WORK = HERE / ".work-busy"

COMPETITORS = {
    "idle": None,
    "1 busy process": "while True: pass",
    "2-thread torch": ("import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a"),
}
POLICIES = {"policy": None, "fixed": "cores"}  # SIMPLE_LORA_THREADS: unset (the policy), or every core


def worker(args: argparse.Namespace) -> None:
    from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET
    from lora_core.training import TrainConfig, TrainingJob

    os.environ["SIMPLE_LORA_HOME"] = str(args.scratch)
    settings = {**DEMO_TRAINING, "max_steps": args.steps, "samples": 0, "eval_rows": 0}
    job = TrainingJob(TrainConfig(base=str(args.model), data=str(SAMPLE_DATASET), task="busy", **settings))
    threads = []
    original = job.publish

    def publish(**changes):
        if "threads" in changes:
            threads.append(changes["threads"])
        original(**changes)

    job.publish = publish
    snap = job.run()
    if snap["state"] != "completed":
        raise SystemExit(f"training ended {snap['state']}: {snap.get('error')}")
    Path(args.result).write_text(json.dumps({"train_s": snap["elapsed_s"], "steps": snap["step"],
                                             "threads": threads}))  # fmt: skip


def run_one(args: argparse.Namespace, competitor: str | None, policy: str | None, cap: float | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SIMPLE_LORA_THREADS")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    if policy == "cores":
        import torch

        env["SIMPLE_LORA_THREADS"] = str(torch.get_num_threads())
    rival = subprocess.Popen([sys.executable, "-c", competitor]) if competitor else None
    result = WORK / "result.json"
    result.unlink(missing_ok=True)
    try:
        time.sleep(1.0 if rival else 0)  # the competitor is running when the training starts
        cmd = [sys.executable, __file__, "--worker", "--model", str(args.model), "--steps", str(args.steps),
               "--scratch", str(WORK / "scratch"), "--result", str(result)]  # fmt: skip
        started = time.perf_counter()
        try:
            subprocess.run(cmd, env=env, cwd=REPO, check=True, timeout=cap, capture_output=True)
        except subprocess.TimeoutExpired:
            return {"train_s": None, "capped_s": time.perf_counter() - started, "threads": []}
        return json.loads(result.read_text())
    finally:
        if rival:
            rival.kill()
            rival.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="The demo training alone and beside busy processes.")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cap", type=float, default=6.0, help="stop a training after this many idle times")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from lora_core.demo import build_demo_model

    WORK.mkdir(parents=True, exist_ok=True)
    args.model = build_demo_model(WORK / "model" / "demo")
    import torch

    machine = f"{os.cpu_count()} cores, torch {torch.__version__}"
    print(f"machine: {machine}; demo training, {args.steps} steps; {args.runs} runs", flush=True)
    times: dict[tuple[str, str], list[dict]] = {}
    idle = None
    for round_ in range(1, args.runs + 1):
        for name, code in COMPETITORS.items():
            for label, policy in POLICIES.items():
                cap = args.cap * idle if idle and label == "fixed" else None
                out = run_one(args, code, policy, cap)
                times.setdefault((name, label), []).append(out)
                if name == "idle" and label == "policy" and out["train_s"]:
                    idle = statistics.median(r["train_s"] for r in times[(name, label)])
                shown = f"{out['train_s']:.1f} s" if out["train_s"] else f"> {out['capped_s']:.0f} s (stopped)"
                print(f"round {round_} {name}, {label}: {shown}, threads {out['threads']}", flush=True)

    base = statistics.median(r["train_s"] for r in times[("idle", "policy")])
    lines = [
        f"Machine: {machine}. The demo training, {args.steps} steps, {args.runs} runs per condition, medians; "
        "ratio: to the idle training with the policy.",
        "",
        "| beside | thread policy (s) | ratio | threads fixed at torch's default (s) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    summary = {}
    for name in COMPETITORS:
        cells = []
        for label in POLICIES:
            done = [r["train_s"] for r in times[(name, label)] if r["train_s"]]
            if len(done) * 2 > len(times[(name, label)]):
                value = statistics.median(done)
                cells += [f"{value:.1f}", f"{value / base:.2f}x"]
                summary[f"{name}, {label}"] = value / base
            else:
                capped = max(r.get("capped_s", 0) for r in times[(name, label)])
                cells += [f"> {capped:.0f}", f"> {capped / base:.1f}x"]
                summary[f"{name}, {label}"] = None
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    targets = [("1 busy process, policy", 2.0), ("2-thread torch, policy", 3.0)]
    lines += ["", "Targets:"]
    for key, limit in targets:
        value = summary.get(key)
        verdict = "PASS" if value is not None and value <= limit else "MISS"
        lines.append(f"- {key}: at most {limit:.1f}x idle: {value and f'{value:.2f}x'} -> {verdict}")
    text = "\n".join(lines)
    print("\n" + text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (WORK / f"results-{stamp}.md").write_text(text + "\n", encoding="utf-8")
    (WORK / f"results-{stamp}.json").write_text(json.dumps({k[0] + ", " + k[1]: v for k, v in times.items()}))


if __name__ == "__main__":
    main()
