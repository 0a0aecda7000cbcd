"""What the demo settings buy: the demo training of the bundled sample on a fresh demo model, for several seeds,
with the demo settings or others, and how many of the 48 sample answers the adapter then gives word for word
(greedy, in batches) against the base's.

    .venv/bin/python bench/demo_settings.py [--seeds 42 1 7 3] [--set epochs=60 learning_rate=2e-3] [--rows 48]

Each run is a fresh process (no samples, no evaluation card: the training alone is timed). One line per run and
a line of medians; results also go to ``bench/.work-demo-settings/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
WORK = HERE / ".work-demo-settings"


def worker(seed: int, overrides: dict, asked_rows: int) -> dict:
    import os

    with tempfile.TemporaryDirectory(prefix="demo-settings-") as home:
        os.environ["SIMPLE_LORA_HOME"] = home
        from lora_core.chat import ChatEngine, GenerationSettings
        from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET, build_demo_model, sample_rows
        from lora_core.training import TrainConfig, TrainingJob

        base = Path(home) / "Models" / "LLM" / "demo"
        build_demo_model(base)
        settings = {**DEMO_TRAINING, "samples": 0, "eval_rows": 0, "seed": seed, **overrides}
        started = time.perf_counter()
        snap = TrainingJob(TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task="demo", **settings)).run()
        took = time.perf_counter() - started
        if snap["state"] != "completed":
            raise SystemExit(f"the training ended {snap['state']}: {snap.get('error')}")
        engine = ChatEngine()
        engine.load_base(base)
        engine.activate(snap["adapter_dir"])
        rows = sample_rows()[:asked_rows]
        asked = [[{"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")}]
                 for r in rows]  # fmt: skip
        plain, tuned = engine.answer_both(asked, GenerationSettings(max_new_tokens=64))
    right = [sum(a == r["output"] for a, r in zip(replies, rows, strict=True)) for replies in (tuned, plain)]
    return {"seed": seed, "steps": snap["step"], "train_s": took, "final_loss": snap["loss"][-1][1],
            "adapter_right": right[0], "base_right": right[1], "rows": len(rows)}  # fmt: skip


def value(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7, 3], help="one run per seed")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings over the demo's")
    parser.add_argument("--rows", type=int, default=48, help="the first ROWS of the 48 sample questions asked")
    parser.add_argument("--work", type=Path, default=WORK, help="where the results go")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.exit(2, "--set takes KEY=VALUE pairs, for example epochs=60 learning_rate=2e-3\n")
    overrides = {key: value(text) for key, text in (item.split("=", 1) for item in args.set)}
    if args.worker is not None:
        print(json.dumps(worker(args.worker, overrides, args.rows)))
        return
    if not 1 <= len(args.seeds) <= 10 or not 1 <= args.rows <= 48:
        parser.exit(2, "--seeds takes 1 to 10 seeds, --rows 1 to 48\n")
    runs = []
    for seed in args.seeds:
        command = [sys.executable, __file__, "--worker", str(seed), "--rows", str(args.rows), "--set", *args.set]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"the run of seed {seed} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(f"seed {seed}: {r['steps']} steps in {r['train_s']:.1f} s, final loss {r['final_loss']:.2f}, "
              f"adapter {r['adapter_right']} of {r['rows']} answers word for word, base {r['base_right']}",
              flush=True)  # fmt: skip
    text = (f"\nsettings over the demo's: {overrides or 'none'}; medians of {len(runs)} seeds: "
            f"{statistics.median(r['train_s'] for r in runs):.1f} s of training, "
            f"{statistics.median(r['adapter_right'] for r in runs):g} of {runs[0]['rows']} answers word for word "
            f"(each seed: {', '.join(str(r['adapter_right']) for r in runs)})")  # fmt: skip
    print(text)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / f"demo-settings-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({"overrides": overrides, "runs": runs}, indent=1), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
