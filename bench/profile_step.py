"""Where a training step's time goes on a CPU, and how far the matrix products alone could take the MFU.

Simple LoRA trains as ``bench/train_cpu.py`` runs it (same rows, same settings, no samples, no evaluation) for
``--skip`` warm-up steps and ``--steps`` more under torch's profiler. The operators of the profiled steps (forward
and backward; the optimizer's step is outside) are grouped as matrix products (``mm``, ``addmm``, ``bmm``),
attention (the ``scaled_dot_product`` kernels) and everything else (norms, rotary embeddings, activations,
copies, the dropout's draws, the loss). The matrix products' FLOPs are counted from their shapes, so their rate
can be set against the fp32 matmul peak measured in the same process (as ``bench/train_cpu.py`` measures it).
Two MFU figures follow, with the useful FLOPs of ``bench/train_cpu.py``: the steps' own (useful FLOPs / the
operators' time / peak) and the ceiling if everything but the matrix products took no time at all.

    .venv/bin/python bench/fixture.py          # once: the fixture's rows (and its model)
    .venv/bin/python bench/profile_step.py --model ~/.cache/simple-lora-tests/models/SmolLM2-135M-Instruct

The profiler adds a few microseconds to each operator it records (tens of thousands a step): the shares are of
the operators' own time, not of the step's wall time, which is printed beside them. Results also go to
``bench/.work/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_cpu  # noqa: E402 (the benchmark's settings, rows and FLOP count)

PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def product_flops(name: str, shapes: list) -> int:
    """FLOPs of one matrix product from its recorded input shapes (2 per multiply-add)."""
    if name == "aten::mm":
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if name == "aten::addmm":
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    b, m, k = shapes[0] if name == "aten::bmm" else shapes[1]
    n = (shapes[1] if name == "aten::bmm" else shapes[2])[2]
    return 2 * b * m * k * n


def part_of(name: str) -> str:
    if name in PRODUCTS:
        return "matrix products"
    if "scaled_dot_product" in name:
        return "attention"
    return "everything else"


def profile_training(model: Path, rows: list[dict], scratch: Path, skip: int, steps: int) -> dict:
    """Train ``skip + steps`` steps with Simple LoRA, the last ``steps`` under the profiler; their operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lora_core import trainer as core_trainer

    seen: dict = {"steps": [], "ops": Counter(), "calls": Counter(), "flops": 0, "product_s": 0.0}
    original = core_trainer.SimpleTrainer.training_step

    def training_step(self, model, inputs, num_items_in_batch=None):
        number = len(seen["steps"]) + 1
        real = int(inputs["attention_mask"].sum())
        trained = int((inputs["labels"] != train_cpu.IGNORE_INDEX).sum())
        started = time.perf_counter()
        if number <= skip:
            loss = original(self, model, inputs, num_items_in_batch)
        else:
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                loss = original(self, model, inputs, num_items_in_batch)
            for event in prof.key_averages(group_by_input_shape=True):
                seen["ops"][event.key] += event.self_cpu_time_total / 1e6
                seen["calls"][event.key] += event.count
                if event.key in PRODUCTS and event.input_shapes:
                    seen["flops"] += event.count * product_flops(event.key, event.input_shapes)
                    seen["product_s"] += event.self_cpu_time_total / 1e6
        seen["steps"].append({"wall_s": time.perf_counter() - started, "real": real, "trained": trained,
                              "profiled": number > skip, "shape": list(inputs["input_ids"].shape)})  # fmt: skip
        return loss

    core_trainer.SimpleTrainer.training_step = training_step
    try:
        config = train_cpu.simple_config(model, train_cpu.write_rows(rows, scratch), samples=0,
                                         max_steps=skip + steps)  # fmt: skip
        measure: dict = {}
        train_cpu.run_simple(config, scratch, measure)
    finally:
        core_trainer.SimpleTrainer.training_step = original
    seen["threads"] = torch.get_num_threads()
    return seen


def report(seen: dict, peak: float, sizes: dict) -> dict:
    profiled = [s for s in seen["steps"] if s["profiled"]]
    total = sum(seen["ops"].values())
    parts = Counter()
    for name, seconds in seen["ops"].items():
        parts[part_of(name)] += seconds
    real, trained = sum(s["real"] for s in profiled), sum(s["trained"] for s in profiled)
    useful = train_cpu._useful_flops(sizes, real, trained)
    rate = seen["flops"] / seen["product_s"] / 1e9 if seen["product_s"] else 0.0
    others = Counter({k: v for k, v in seen["ops"].items() if part_of(k) == "everything else"})
    return {
        "steps": profiled,
        "wall_s": sum(s["wall_s"] for s in profiled),
        "ops_s": total,
        "parts": {k: {"s": v, "share": v / total} for k, v in parts.most_common()},
        "top_others": [
            {"op": k, "s": v, "share": v / total, "calls": seen["calls"][k]} for k, v in others.most_common(8)
        ],
        "product_gflops": rate,
        "peak_gflops": peak,
        "product_vs_peak": rate / peak,
        "useful_gflop": useful / 1e9,
        "mfu_ops": useful / total / (peak * 1e9),
        "mfu_if_only_products": useful / seen["product_s"] / (peak * 1e9) if seen["product_s"] else 0.0,
        "threads": seen["threads"],
    }


def markdown(out: dict, model: Path) -> str:
    lines = [f"Model: {model.name}; {len(out['steps'])} profiled steps "
             f"({', '.join('x'.join(map(str, s['shape'])) for s in out['steps'])}), {out['threads']} threads; "
             f"their operators {out['ops_s']:.2f} s, the steps' wall time under the profiler {out['wall_s']:.2f} s.",
             "", "| part | seconds | share of the operators' time |", "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {name} | {p['s']:.2f} | {100 * p['share']:.1f}% |" for name, p in out["parts"].items()]
    lines += ["", "The largest of everything else:", "", "| operator | calls | seconds | share |"]
    lines += ["|---|---:|---:|---:|"]
    lines += [f"| `{o['op']}` | {o['calls']} | {o['s']:.3f} | {100 * o['share']:.1f}% |" for o in out["top_others"]]
    lines += [
        "",
        f"Matrix products: {out['product_gflops']:.0f} GFLOP/s, {100 * out['product_vs_peak']:.0f}% of the fp32 "
        f"matmul peak measured in this process ({out['peak_gflops']:.0f} GFLOP/s).",
        f"MFU of these steps (useful FLOPs / operators' time / peak): {100 * out['mfu_ops']:.1f}%; if everything but "
        f"the matrix products took no time: {100 * out['mfu_if_only_products']:.1f}%.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixture", type=Path, default=train_cpu.DEFAULT_FIXTURE, help="bench/fixture.py's output")
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: the fixture's model)")
    parser.add_argument("--rows", type=int, default=64, help="the fixture's first rows to train on")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps, not profiled")
    parser.add_argument("--steps", type=int, default=3, help="steps profiled")
    parser.add_argument("--work", type=Path, default=train_cpu.WORK, help="where the results go")
    parser.add_argument("--peak-repeats", type=int, default=12, help="timed 2048x2048 products, each side")
    args = parser.parse_args()
    model = (args.model or args.fixture / "model").expanduser()
    rows_file = args.fixture / "alpaca.json"
    if not rows_file.is_file() or not (model / "config.json").is_file():
        parser.exit(2, f"no fixture rows at {rows_file} or no model at {model}: run bench/fixture.py first\n")
    if args.rows < 1 or args.skip < 0 or args.steps < 1 or args.peak_repeats < 1:
        parser.exit(2, "--rows, --steps and --peak-repeats must be at least 1, --skip at least 0\n")
    rows = json.loads(rows_file.read_text(encoding="utf-8"))[: args.rows]

    peaks: list[dict] = [{}, {}]
    train_cpu._worker_peak(peaks[0], repeats=args.peak_repeats)
    with tempfile.TemporaryDirectory(prefix="profile-step-") as scratch:
        os.environ["SIMPLE_LORA_HOME"] = scratch
        seen = profile_training(model, rows, Path(scratch), args.skip, args.steps)
    train_cpu._worker_peak(peaks[1], repeats=args.peak_repeats)
    if not any(s["profiled"] for s in seen["steps"]):
        parser.exit(1, f"the training ended after {len(seen['steps'])} steps, before any was profiled: fewer --skip\n")
    out = report(seen, max(p["peak_gflops"] for p in peaks), train_cpu._model_sizes(model))
    text = markdown(out, model)
    print(text)
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.work / f"profile-{stamp}.md").write_text(text + "\n", encoding="utf-8")
    (args.work / f"profile-{stamp}.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"\n(saved to {args.work}/profile-{stamp}.md and .json)")


if __name__ == "__main__":
    main()
