"""CPU training benchmark: Simple LoRA against TRL's SFTTrainer, one epoch each on the same rows.

    .venv/bin/python bench/fixture.py        # once: the model, tokenizer and dataset under bench/.fixture/
    .venv/bin/python bench/train_cpu.py      # --rows 160 --runs 3 by default

    # the same rows on a real model, SmolLM2-135M-Instruct (a model folder: tests/smollm2.py makes one)
    .venv/bin/python bench/train_cpu.py --model ~/.cache/simple-lora-tests/models/SmolLM2-135M-Instruct \
        --rows 64 --runs 2 --configs simple,trl,trl-grouped

Configurations (identical LoRA r=16 / alpha 32 / dropout 0.05 on q,k,v,o_proj, batch 8, max length 512,
lr 2e-4 with cosine decay and 3% warm-up, fp32, no gradient checkpointing, seed 42, completion-only loss):

- ``simple``:      Simple LoRA, ``TrainingJob(TrainConfig(...)).run()``, as the app and the CLI run it.
- ``trl``:         TRL ``SFTTrainer`` on a conversational prompt/completion dataset, its defaults otherwise.
- ``trl-grouped``: the same with ``train_sampling_strategy="group_by_length"``.

Each training runs in its own fresh Python process (so its peak RSS is its own), the configurations alternate
(A, B, C, A, B, C, ...) and the table shows the median of each. The fp32 matmul peak of the machine is measured in
the same run (before and after the trainings; the higher is used). Results also go to ``bench/.work/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

T_PROCESS = time.perf_counter()

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # lora_core, for this script and bench/train_gpu.py
DEFAULT_FIXTURE = HERE / ".fixture"
WORK = HERE / ".work"
CONFIGS = ["simple", "simple-nosamples", "trl", "trl-grouped"]
LABELS = {
    "simple": "Simple LoRA",
    "simple-nosamples": "Simple LoRA, no samples during training",
    "trl": "TRL SFTTrainer (defaults)",
    "trl-grouped": "TRL SFTTrainer + group_by_length",
}
BASELINE = "trl"

# The settings every configuration shares.
SEED = 42
LORA = {"r": 16, "alpha": 32.0, "dropout": 0.05, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
BATCH = 8
MAX_LENGTH = 512
LR = 2e-4
WARMUP = 0.03
SCHEDULER = "cosine"
IGNORE_INDEX = -100

FLOPS_FORMULA = (
    "useful FLOPs = 4·N_body·T + 4·N_head·T_trained + 6·N_lora·T, where T = non-pad tokens, T_trained = tokens "
    "with a label, N_body = weights of the decoder's linear layers, N_head = LM head weights, N_lora = LoRA "
    "weights. Forward is 2 FLOPs per weight per token; the backward of a frozen weight only needs the input "
    "gradient (2 more), not its weight gradient, hence 4·N instead of the 6·N of full fine-tuning; LoRA weights "
    "get both (6). The LM head is only needed where a token is trained. Attention scores and weighted sums (causal: "
    "about 5% more at these lengths), norms and element-wise ops are not counted."
)


# --- worker side (one fresh process per measurement) ------------------------------------------------------------


class _Counter:
    """Wraps a data collator and counts what the model is given: real tokens, computed tokens, trained tokens."""

    def __init__(self, collate, piece_tokens: int = 0) -> None:
        self.collate, self.piece_tokens = collate, piece_tokens
        self.real = self.computed = self.trained = self.batches = 0

    def __call__(self, features):
        batch = self.collate(features)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.batches += 1
        if mask is not None and self.piece_tokens:  # Simple LoRA computes a long batch in pieces, each padded less
            from lora_core.trainer import computed_tokens

            self.computed += computed_tokens(mask.sum(1).tolist(), ids.shape[1], self.piece_tokens)
        else:
            self.computed += ids.numel()
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.trained += int((batch["labels"] != IGNORE_INDEX).sum())
        return batch


def _instrument_trainer(measure: dict) -> None:
    """Time ``transformers.Trainer.train`` (which both trainers run) and count the tokens of its batches."""
    from transformers import Trainer

    original = Trainer.train

    def timed_train(self, *args, **kwargs):
        pieces = getattr(self, "piece_tokens", 0) if self.args.device.type == "cpu" else 0
        counter = _Counter(self.data_collator, pieces)
        self.data_collator = counter
        start = time.perf_counter()
        output = original(self, *args, **kwargs)
        measure["train_s"] = time.perf_counter() - start
        measure["before_train_s"] = start - T_PROCESS  # imports, loading, tokenizing, adding the adapter
        losses = [entry["loss"] for entry in self.state.log_history if "loss" in entry]
        measure.update(
            steps=int(self.state.global_step),
            batches=counter.batches,
            real_tokens=counter.real,
            computed_tokens=counter.computed,
            trained_tokens=counter.trained,
            mean_loss=float(output.training_loss),
            final_loss=float(losses[-1]) if losses else None,
            optimizer=str(self.args.optim).split(".")[-1].lower(),
            sampler=str(self.args.train_sampling_strategy),
            checkpointing=bool(getattr(self.model, "is_activation_checkpointing", False)),
            dtype=str(next(self.model.parameters()).dtype),
            autocast=bool(self.args.bf16 or self.args.fp16),
        )
        return output

    Trainer.train = timed_train


def _user_text(row: dict) -> str:
    # What Simple LoRA makes of an Alpaca row (lora_core/data.py): instruction, a blank line, the input.
    return f"{row['instruction']}\n\n{row['input']}" if row.get("input") else row["instruction"]


def simple_config(base: Path, data: Path, **overrides):
    """Simple LoRA's ``TrainConfig`` for the benchmark's shared settings (fp32 on CPU, no checkpointing)."""
    from lora_core.config import TrainConfig

    settings = dict(
        base=str(base),
        data=str(data),
        task="bench",
        epochs=1.0,
        learning_rate=LR,
        rank=LORA["r"],
        alpha=LORA["alpha"],
        dropout=LORA["dropout"],
        batch_size=BATCH,
        grad_accum=1,
        max_length=MAX_LENGTH,
        targets=",".join(LORA["targets"]),
        quantization="none",
        warmup_ratio=WARMUP,
        scheduler=SCHEDULER,
        seed=SEED,
        gradient_checkpointing=False,
        eval_rows=0,  # the evaluation after the run answers rows; it is not training
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def run_simple(config, scratch: Path, measure: dict) -> None:
    """Train with Simple LoRA as the app and the CLI do; adapters and run records go to ``scratch``."""
    os.environ["SIMPLE_LORA_HOME"] = str(scratch)
    from lora_core.training import TrainingJob

    snap = TrainingJob(config).run()
    if snap["state"] != "completed":
        raise RuntimeError(f"Simple LoRA training ended {snap['state']}: {snap.get('error')}")
    measure["adapter_saved"] = bool(snap.get("adapter_dir"))


def write_rows(rows: list[dict], scratch: Path) -> Path:
    data = scratch / "train.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return data


def trl_dataset(rows: list[dict]):
    """The rows as TRL's conversational prompt/completion dataset (loss on the completion only)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": _user_text(row)}],
                "completion": [{"role": "assistant", "content": row["output"]}],
            }
            for row in rows
        ]
    )


def peft_lora_config():
    from peft import LoraConfig

    return LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=LORA["targets"],
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(scratch: Path, **overrides):
    """TRL's ``SFTConfig`` for the shared settings (fp32 on CPU, no checkpointing); TRL's defaults otherwise."""
    from trl import SFTConfig

    settings = dict(
        output_dir=str(scratch / "trl"),
        num_train_epochs=1,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        learning_rate=LR,
        lr_scheduler_type=SCHEDULER,
        warmup_steps=WARMUP,
        max_length=MAX_LENGTH,
        completion_only_loss=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        seed=SEED,
        data_seed=SEED,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy="random",
    )
    settings.update(overrides)
    return SFTConfig(**settings)


def run_trl(model, tokenizer, args, rows: list[dict], scratch: Path, measure: dict) -> None:
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=trl_dataset(rows),
        processing_class=tokenizer,
        peft_config=peft_lora_config(),
    )
    trainer.train()
    trainer.save_model(str(scratch / "trl" / "adapter"))  # as an app would; outside the timed training
    measure["adapter_saved"] = True


def _worker_simple(model_dir: Path, rows: list[dict], scratch: Path, measure: dict, samples: bool = True) -> None:
    overrides = {} if samples else {"samples": 0}
    run_simple(simple_config(model_dir, write_rows(rows, scratch), **overrides), scratch, measure)


def _worker_trl(model_dir: Path, rows: list[dict], scratch: Path, measure: dict, grouped: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = sft_config(scratch, train_sampling_strategy="group_by_length" if grouped else "random")
    run_trl(model, tokenizer, args, rows, scratch, measure)


def _worker_peak(measure: dict, size: int = 2048, repeats: int = 12) -> None:
    import torch

    torch.manual_seed(0)
    a, b = torch.randn(size, size), torch.randn(size, size)
    c = torch.empty(size, size)
    for _ in range(3):
        torch.mm(a, b, out=c)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - start)
    flops = 2 * size**3
    measure.update(
        peak_gflops=flops / min(times) / 1e9,
        median_gflops=flops / statistics.median(times) / 1e9,
        size=size,
        repeats=repeats,
        threads=torch.get_num_threads(),
    )


def worker(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    measure: dict = {"config": args.worker, "pid": os.getpid()}
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if args.worker == "peak":
            _worker_peak(measure)
        else:
            simple = args.worker.startswith("simple")
            if simple:
                # first, as the app and the CLI import it before anything else (on a CPU build of torch it hides
                # bitsandbytes, which the instrumenting's import of transformers' Trainer would otherwise load)
                from lora_core.memory import paused
            # torch and transformers' Trainer, imported here for the instrumenting, are imported by Simple LoRA
            # itself with the cycle collector paused (lora_core/memory.py): here too
            with paused() if simple else contextlib.nullcontext():
                import torch

                _instrument_trainer(measure)
            measure["threads"] = torch.get_num_threads()
            rows = json.loads((args.fixture / "alpaca.json").read_text(encoding="utf-8"))[: args.rows]
            measure["rows"] = len(rows)
            if args.worker in ("simple", "simple-nosamples"):
                _worker_simple(args.model, rows, scratch, measure, samples=args.worker == "simple")
            else:
                _worker_trl(args.model, rows, scratch, measure, grouped=args.worker == "trl-grouped")
            if "train_s" not in measure:
                raise RuntimeError("the training never ran Trainer.train")
            if measure["checkpointing"] or measure["autocast"] or measure["dtype"] != "torch.float32":
                raise RuntimeError(f"not fp32 without checkpointing: {measure}")
        measure["process_s"] = time.perf_counter() - T_PROCESS
        if "train_s" in measure:  # saving the adapter (and what else the trainer does after its training)
            measure["after_train_s"] = measure["process_s"] - measure["before_train_s"] - measure["train_s"]
        measure["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    Path(args.result).write_text(json.dumps(measure, indent=1), encoding="utf-8")


# --- parent side ---------------------------------------------------------------------------------------------


def _cpu_busy_s() -> tuple[float, float]:
    """Busy and stolen CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _busy_processes(window: float = 2.0, threshold: float = 0.2) -> list[str]:
    """Other processes that used more than ``threshold`` of a core over ``window`` seconds."""
    hz = os.sysconf("SC_CLK_TCK")

    def sample() -> dict[int, tuple[float, str]]:
        out = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                stat = (proc / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                parts = stat[stat.rindex(")") + 2 :].split()
                out[int(proc.name)] = ((int(parts[11]) + int(parts[12])) / hz, name)
            except (OSError, ValueError, IndexError):
                continue
        return out

    before = sample()
    time.sleep(window)
    after = sample()
    busy = []
    for pid, (cpu, name) in after.items():
        if pid in before and (cpu - before[pid][0]) / window > threshold:
            busy.append(f"{pid} {name} ({(cpu - before[pid][0]) / window:.0%} of a core)")
    return busy


def _wait_until_idle(max_wait: float) -> list[str]:
    deadline = time.monotonic() + max_wait
    while True:
        busy = _busy_processes()
        if not busy or time.monotonic() > deadline:
            return busy
        print(f"waiting: other processes are busy: {'; '.join(busy)}", flush=True)
        time.sleep(20)


def spawn_worker(
    script: Path, work: Path, config: str, tag: str, options: list[str], env: dict, timeout: float | None = None
) -> dict | None:  # fmt: skip
    """Run ``script --worker config`` in a fresh process (its output in ``work/logs/<tag>.log``) and return the JSON
    it writes; None when it was stopped at ``timeout`` seconds. A worker that fails ends the benchmark, showing the
    end of its log."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result, log, scratch = work / f"{tag}.json", logs / f"{tag}.log", work / f"scratch-{tag}"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(script),
        "--worker",
        config,
        *options,
        "--result",
        str(result),
        "--scratch",
        str(scratch),
    ]
    with log.open("w", encoding="utf-8") as out:
        try:
            rc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:  # the child is killed; its scratch folder is ours to remove
            shutil.rmtree(scratch, ignore_errors=True)
            return None
    if rc != 0 or not result.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{config} failed (exit {rc}); the end of {log}:\n{tail}")
    return json.loads(result.read_text(encoding="utf-8"))


def _run_worker(config: str, args: argparse.Namespace, tag: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    options = ["--rows", str(args.rows), "--fixture", str(args.fixture), "--model", str(args.model)]
    busy0, steal0 = _cpu_busy_s()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    measure = spawn_worker(Path(__file__).resolve(), WORK, config, tag, options, env)
    wall = time.perf_counter() - start
    busy1, steal1 = _cpu_busy_s()
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    measure["other_load_cores"] = max(0.0, (busy1 - busy0) - own) / wall  # CPU used by anything else meanwhile
    measure["steal_cores"] = (steal1 - steal0) / wall
    return measure


def _model_sizes(model_dir: Path) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * cfg.get(
        "head_dim", h // cfg["num_attention_heads"]
    )
    q_out = cfg["num_attention_heads"] * cfg.get("head_dim", h // cfg["num_attention_heads"])
    shapes = {"q_proj": (h, q_out), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q_out, h)}
    body = layers * (sum(i * o for i, o in shapes.values()) + 3 * h * inter)
    lora = layers * sum(LORA["r"] * (shapes[t][0] + shapes[t][1]) for t in LORA["targets"])
    return {"body": body, "head": vocab * h, "lora": lora, "embed": vocab * h, "vocab": vocab,
            "tied": bool(cfg.get("tie_word_embeddings"))}  # fmt: skip


def _useful_flops(sizes: dict, real: int, trained: int) -> float:
    return 4 * sizes["body"] * real + 4 * sizes["head"] * trained + 6 * sizes["lora"] * real


def _summarise(runs: list[dict], sizes: dict, peak: float) -> dict:
    out = {}
    for config in CONFIGS:
        mine = [r for r in runs if r["config"] == config]
        if not mine:
            continue
        for r in mine:
            r["tokens_per_s"] = r["real_tokens"] / r["train_s"]
            r["padding"] = 1 - r["real_tokens"] / r["computed_tokens"]
            r["mfu"] = _useful_flops(sizes, r["real_tokens"], r["trained_tokens"]) / r["train_s"] / (peak * 1e9)

        def med(key: str, runs=mine) -> float:
            return statistics.median(r[key] for r in runs)

        out[config] = {
            key: med(key)
            for key in ("train_s", "process_s", "tokens_per_s", "padding", "peak_rss_mb", "final_loss", "mean_loss",
                        "mfu", "real_tokens", "computed_tokens", "trained_tokens", "steps")
        }  # fmt: skip
        out[config]["runs"] = len(mine)
    base = out.get(BASELINE, {}).get("tokens_per_s")
    for summary in out.values():
        summary["ratio"] = summary["tokens_per_s"] / base if base else None
    return out


def _table(summary: dict) -> str:
    lines = [
        "| configuration | wall s | non-pad tok/s | padding % | peak RSS MB | final loss | mean loss | MFU "
        "| end-to-end s | vs TRL defaults |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, s in summary.items():
        ratio = f"{s['ratio']:.2f}x" if s["ratio"] else "-"
        lines.append(
            f"| {LABELS[config]} | {s['train_s']:.1f} | {s['tokens_per_s']:.0f} | {s['padding'] * 100:.1f} "
            f"| {s['peak_rss_mb']:.0f} | {s['final_loss']:.3f} | {s['mean_loss']:.3f} | {s['mfu'] * 100:.1f}% "
            f"| {s['process_s']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def _raw_table(runs: list[dict]) -> str:
    lines = [
        "| # | configuration | wall s | non-pad tok/s | padding % | peak RSS MB | final loss | other load | steal |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {LABELS[r['config']]} | {r['train_s']:.1f} | {r['tokens_per_s']:.0f} | {r['padding'] * 100:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {r['final_loss']:.3f} | {r['other_load_cores']:.2f} | "
            f"{r['steal_cores']:.2f} |"
        )
    return "\n".join(lines)


# The targets: on the fixture model (random weights, 8k vocabulary) and on a real model (--model).
TARGETS = {
    "fixture": {"vs_trl": 2.5, "vs_grouped": 1.0, "mfu": 0.5, "process": None},
    "real": {"vs_trl": 3.0, "vs_grouped": 1.6, "mfu": 0.6, "process": 3.0},
}


def _targets(summary: dict, peak: float, kind: str = "fixture") -> list[str]:
    s, trl, grouped = summary.get("simple"), summary.get("trl"), summary.get("trl-grouped")
    goal = TARGETS[kind]
    out = []
    if s and trl:
        ratio = s["tokens_per_s"] / trl["tokens_per_s"]
        out.append(f"Simple LoRA >= {goal['vs_trl']}x TRL defaults' non-pad tokens/s: {ratio:.2f}x -> "
                   f"{'PASS' if ratio >= goal['vs_trl'] else 'MISS'}")  # fmt: skip
    if s and grouped:
        ratio = s["tokens_per_s"] / grouped["tokens_per_s"]
        out.append(f"Simple LoRA >= {goal['vs_grouped']}x TRL + group_by_length's tokens/s: {ratio:.2f}x -> "
                   f"{'PASS' if ratio >= goal['vs_grouped'] else 'MISS'}")  # fmt: skip
    if s and trl and goal["process"]:
        ratio = trl["process_s"] / s["process_s"]
        out.append(f"Whole process (start to saved adapter) >= {goal['process']}x as fast as TRL's: {ratio:.2f}x -> "
                   f"{'PASS' if ratio >= goal['process'] else 'MISS'}")  # fmt: skip
    plain = summary.get("simple-nosamples")
    if s and plain:
        cost = s["train_s"] / plain["train_s"] - 1
        out.append(f"Samples during training (5 a run, the default) cost <= 5% of the training time: {cost:+.1%} -> "
                   f"{'PASS' if cost <= 0.05 else 'MISS'}")  # fmt: skip
    if s:
        out.append(f"Simple LoRA useful FLOPs >= {goal['mfu']:.0%} of the measured matmul peak ({peak:.0f} GFLOP/s): "
                   f"{s['mfu']:.1%} -> {'PASS' if s['mfu'] >= goal['mfu'] else 'MISS'}")  # fmt: skip
    if s and trl:
        others = [summary[c]["peak_rss_mb"] for c in ("trl", "trl-grouped") if c in summary]
        ok = s["peak_rss_mb"] <= min(others)
        out.append(f"Simple LoRA peak RSS no higher than TRL's: {s['peak_rss_mb']:.0f} MB vs "
                   f"{' / '.join(f'{x:.0f}' for x in others)} MB -> {'PASS' if ok else 'MISS'}")  # fmt: skip
    return out


def _machine() -> str:
    model = "unknown CPU"
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown CPU":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{os.cpu_count()} cores, {model}, {' '.join(simd) or 'no AVX2'}"


def parent(args: argparse.Namespace) -> None:
    if not (args.fixture / "alpaca.json").is_file() or not (args.fixture / "model" / "config.json").is_file():
        raise SystemExit(f"No fixture in {args.fixture}: run `.venv/bin/python bench/fixture.py` first.")
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"No model in {args.model}: a folder with config.json, weights and a tokenizer.")
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"Unknown configuration(s): {', '.join(unknown)}; choose from {', '.join(CONFIGS)}.")
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    busy = [] if args.no_wait else _wait_until_idle(args.max_wait)
    if busy:
        print(f"warning: measuring while other processes are busy: {'; '.join(busy)}", flush=True)
    import platform

    versions = subprocess.run(
        [sys.executable, "-c", "import torch, transformers, peft, trl; print(torch.__version__, "
         "transformers.__version__, peft.__version__, trl.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    sizes = _model_sizes(args.model)
    kind = "fixture" if args.model == (args.fixture / "model").resolve() else "real"
    print(f"machine: {_machine()}; python {platform.python_version()}; torch {versions[0]}, transformers "
          f"{versions[1]}, peft {versions[2]}, trl {versions[3]}", flush=True)  # fmt: skip
    print(f"rows {args.rows}, runs {args.runs}, configurations {', '.join(configs)}", flush=True)

    peaks = [_run_worker("peak", args, "peak-before")]
    print(f"fp32 matmul peak (2048x2048): {peaks[0]['peak_gflops']:.0f} GFLOP/s", flush=True)
    runs = []
    for round_ in range(1, args.runs + 1):
        for config in configs:
            measure = _run_worker(config, args, f"{round_}-{config}")
            runs.append(measure)
            print(f"round {round_} {config}: train {measure['train_s']:.1f} s, "
                  f"{measure['real_tokens'] / measure['train_s']:.0f} non-pad tok/s, "
                  f"padding {1 - measure['real_tokens'] / measure['computed_tokens']:.1%}, "
                  f"RSS {measure['peak_rss_mb']:.0f} MB, final loss {measure['final_loss']:.3f}, "
                  f"other load {measure['other_load_cores']:.2f} cores", flush=True)  # fmt: skip
    peaks.append(_run_worker("peak", args, "peak-after"))
    peak = max(p["peak_gflops"] for p in peaks)
    summary = _summarise(runs, sizes, peak)
    total = time.perf_counter() - started

    report = [
        f"Machine: {_machine()}. torch {versions[0]} ({peaks[0]['threads']} threads), transformers {versions[1]}, "
        f"peft {versions[2]}, trl {versions[3]}.",
        f"Data: the first {args.rows} rows of {args.fixture.name}/alpaca.json, one epoch, "
        f"{runs[0]['steps']} steps of batch {BATCH}; {args.runs} runs per configuration, alternated; medians.",
        f"fp32 matmul peak (torch.mm 2048x2048, best of {peaks[0]['repeats']}): "
        + ", ".join(f"{p['peak_gflops']:.0f}" for p in peaks)
        + f" GFLOP/s (before, after); {peak:.0f} used.",
        f"Model: {args.model.name} ({kind}): {sizes['body'] / 1e6:.1f}M decoder linear weights, "
        f"{sizes['head'] / 1e6:.1f}M LM head{' (tied to the embeddings)' if sizes['tied'] else ''}, vocabulary "
        f"{sizes['vocab']}, {sizes['lora'] / 1e6:.2f}M LoRA weights.",
        "",
        _table(summary),
        "",
        "wall s: Trainer.train() only (data loading, forward, backward, optimizer, logging; not model loading, "
        "tokenization or saving). end-to-end s: the whole process, Python start and imports to the adapter saved. "
        "non-pad tok/s: real tokens / wall s. padding %: pad tokens / tokens computed. peak RSS: the training "
        "process's maximum resident set. final loss: the last step's; mean loss: the epoch's mean. "
        "MFU: useful FLOPs / wall s / peak.",
        "",
        FLOPS_FORMULA,
        "",
        "Targets:",
        *[f"- {line}" for line in _targets(summary, peak, kind)],
        "",
        "Every run:",
        "",
        _raw_table(runs),
        "",
        "other load: CPU cores used by other processes during the run; steal: cores taken by the hypervisor.",
        "",
        f"Total benchmark time: {total:.0f} s.",
    ]
    text = "\n".join(report)
    print("\n" + text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (WORK / f"results-{stamp}.md").write_text(text + "\n", encoding="utf-8")
    (WORK / f"results-{stamp}.json").write_text(
        json.dumps({"summary": summary, "runs": runs, "peaks": peaks, "sizes": sizes, "rows": args.rows,
                    "model": str(args.model), "kind": kind,
                    "total_s": total, "machine": _machine(), "versions": versions}, indent=1),
        encoding="utf-8",
    )  # fmt: skip
    print(f"\n(saved to {WORK.relative_to(REPO)}/results-{stamp}.md and .json)")


def parse_with_worker_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with the hidden ones a parent passes to its worker processes; the fixture path resolved."""
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.fixture = args.fixture.resolve()
    if hasattr(args, "model"):
        args.model = (args.model or args.fixture / "model").expanduser().resolve()
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description="Simple LoRA vs TRL SFTTrainer, one epoch on CPU.")
    parser.add_argument("--rows", type=int, default=160, help="train on the first N rows of the fixture")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each runs every configuration once")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list from {', '.join(CONFIGS)}")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, help="folder written by fixture.py")
    parser.add_argument("--model", type=Path, help="train this model folder instead of the fixture's (its rows stay)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for other busy processes to finish")
    parser.add_argument("--max-wait", type=float, default=1800, help="longest wait for an idle machine, seconds")
    parser.add_argument("--worker", choices=[*CONFIGS, "peak"], help=argparse.SUPPRESS)
    args = parse_with_worker_args(parser)
    (worker if args.worker else parent)(args)


if __name__ == "__main__":
    main()
