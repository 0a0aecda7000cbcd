"""GPU training benchmark: QLoRA against 16-bit LoRA, Simple LoRA against TRL's SFTTrainer, on one CUDA GPU.

    .venv/bin/pip install -r bench/requirements.txt       # TRL, for the benchmark only (the app has bitsandbytes)
    .venv/bin/python bench/fixture.py                     # once: the tokenizer and the Alpaca rows
    .venv/bin/python bench/train_gpu.py                   # --rows 800 --runs 2 --max-minutes 9

The model is randomly initialised with Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads,
intermediate 4864, vocabulary 151,936, tied embeddings: 494M parameters), saved in bf16 to
``bench/.fixture-gpu/model`` with the CPU fixture's tokenizer. Nothing is downloaded.

Configurations (LoRA r=16 / alpha 32 / dropout 0.05 on q,k,v,o_proj, batch 8, max length 512, lr 2e-4 cosine
with 3% warm-up, seed 42, loss on the completion only, one epoch over the same rows):

- ``simple-qlora``: Simple LoRA's default on CUDA: 4-bit NF4 base (double quantization), bf16 compute, gradient
  checkpointing. ``trl-qlora``: TRL with the same quantization and checkpointing.
- ``simple-16bit``: Simple LoRA with ``--quantization none``: a bf16 base, no checkpointing (its default there).
  ``trl-16bit``: TRL on the same bf16 base without checkpointing.

Each training runs in a fresh process; the configurations alternate and the table shows medians: tokens/s over
``Trainer.train()`` and the peak GPU memory allocated during it (``torch.cuda.max_memory_allocated``). The whole
script keeps within ``--max-minutes``: it starts no training that the longest one so far says would not finish in
time, stops one that is still running at the limit, and reports the runs it has.

``--smoke`` runs the same code on a tiny model of the same architecture, on the CPU when there is no GPU, to check
the script itself (the 4-bit configurations need CUDA and are skipped there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import train_cpu as shared  # the CPU benchmark's settings, trainers' wiring and token counting

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work-gpu"
CONFIGS = ["simple-qlora", "trl-qlora", "simple-16bit", "trl-16bit"]
LABELS = {
    "simple-qlora": "Simple LoRA, QLoRA (4-bit NF4 + checkpointing)",
    "trl-qlora": "TRL SFTTrainer, QLoRA (4-bit NF4 + checkpointing)",
    "simple-16bit": "Simple LoRA, 16-bit (bf16)",
    "trl-16bit": "TRL SFTTrainer, 16-bit (bf16)",
}
PEERS = {"simple-qlora": "trl-qlora", "simple-16bit": "trl-16bit"}

# Qwen2.5-0.5B's architecture (its config.json), random weights.
QWEN_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
}
SMOKE = {**QWEN_05B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


def build_model(fixture: Path, out: Path, shape: dict) -> Path:
    """A random-init Qwen2 model of ``shape`` in bf16 with the CPU fixture's tokenizer; reused when present."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from lora_core.demo import random_model

    model_dir = out / "model"
    stamp = out / "shape.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == shape:
        return model_dir
    if out.exists():
        shutil.rmtree(out)
    model_dir.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(fixture / "model")
    model = random_model(Qwen2ForCausalLM, Qwen2Config, tokenizer, shared.SEED, **shape).to(torch.bfloat16)
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    stamp.write_text(json.dumps(shape), encoding="utf-8")
    return model_dir


# --- worker side -------------------------------------------------------------------------------------------


def _instrument_gpu(measure: dict) -> None:
    """Peak GPU memory allocated during ``Trainer.train`` (the model's weights included), and what was there
    before it started."""
    import torch
    from transformers import Trainer

    timed = Trainer.train  # already wrapped by shared._instrument_trainer (time, tokens, loss)

    def train(self, *args, **kwargs):
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            measure["gpu_before_mb"] = torch.cuda.memory_allocated() / 2**20
        output = timed(self, *args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
            measure["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            measure["gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        measure["quantized"] = bool(getattr(self.model, "is_loaded_in_4bit", False)) or "4bit" in str(
            getattr(getattr(self.model, "config", None), "quantization_config", "")
        )
        return output

    Trainer.train = train


def _bnb_4bit():
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )  # what Simple LoRA loads on CUDA (lora_core.models.load_base_model)


def worker(args: argparse.Namespace) -> None:
    import logging

    if args.worker.startswith("simple"):
        # first, as the app and the CLI import it first (on a CPU build of torch it hides bitsandbytes, which the
        # instrumenting's import of transformers' Trainer would otherwise load; bench/train_cpu.py does the same)
        import lora_core  # noqa: F401
    import torch

    logging.basicConfig(level=logging.WARNING)
    measure: dict = {"config": args.worker, "pid": os.getpid()}
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    qlora = args.worker.endswith("qlora")
    measure.update(device=torch.cuda.get_device_name(0) if cuda else "cpu", checkpointing_asked=qlora)
    try:
        shared._instrument_trainer(measure)
        _instrument_gpu(measure)
        rows = json.loads((args.fixture / "alpaca.json").read_text(encoding="utf-8"))[: args.rows]
        measure["rows"] = len(rows)
        model_dir = args.model
        if args.worker.startswith("simple"):
            # Checkpointing left unset: Simple LoRA's own default (on for 4-bit on CUDA, off otherwise).
            data = shared.write_rows(rows, scratch)
            quantization = "4bit" if qlora else "none"
            config = shared.simple_config(model_dir, data, quantization=quantization, gradient_checkpointing=None)
            shared.run_simple(config, scratch, measure)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            set_seed(shared.SEED)
            kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
            if cuda:
                kwargs["device_map"] = {"": 0}
            if qlora:
                kwargs["quantization_config"] = _bnb_4bit()
            model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
            sft = shared.sft_config(
                scratch,
                bf16=cuda,
                use_cpu=not cuda,
                gradient_checkpointing=qlora,
                gradient_checkpointing_kwargs={"use_reentrant": False} if qlora else None,
            )
            shared.run_trl(model, tokenizer, sft, rows, scratch, measure)
        if "train_s" not in measure:
            raise RuntimeError("the training never ran Trainer.train")
        if measure["checkpointing"] != qlora:
            raise RuntimeError(f"gradient checkpointing is {measure['checkpointing']}, expected {qlora}")
        if cuda and measure["quantized"] != qlora:
            raise RuntimeError(f"4-bit base is {measure['quantized']}, expected {qlora}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    Path(args.result).write_text(json.dumps(measure, indent=1), encoding="utf-8")


# --- parent side -------------------------------------------------------------------------------------------


def _run(config: str, args: argparse.Namespace, tag: str, timeout: float) -> dict | None:
    """One training in a fresh process; None when it was stopped at ``timeout`` seconds."""
    options = ["--rows", str(args.rows), "--fixture", str(args.fixture), "--model", str(args.model)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    measure = shared.spawn_worker(Path(__file__).resolve(), WORK, config, tag, options, env, timeout)
    if measure is None:
        return None
    measure["process_s"] = time.perf_counter() - start
    measure["tokens_per_s"] = measure["real_tokens"] / measure["train_s"]
    measure["padding"] = 1 - measure["real_tokens"] / measure["computed_tokens"]
    return measure


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for config in CONFIGS:
        mine = [r for r in runs if r["config"] == config]
        if not mine:
            continue
        keys = ("train_s", "process_s", "tokens_per_s", "padding", "final_loss", "mean_loss", "gpu_peak_mb")
        out[config] = {k: statistics.median(r[k] for r in mine) for k in keys if all(k in r for r in mine)}
        out[config].update(runs=len(mine), checkpointing=mine[0]["checkpointing"], steps=mine[0]["steps"])
    for config, summary in out.items():
        peer = out.get(PEERS.get(config, ""))
        summary["vs_trl"] = summary["tokens_per_s"] / peer["tokens_per_s"] if peer else None
        if peer and "gpu_peak_mb" in summary and "gpu_peak_mb" in peer:
            summary["memory_vs_trl"] = summary["gpu_peak_mb"] / peer["gpu_peak_mb"]
    return out


def table(summary: dict, labels: dict) -> str:
    lines = [
        "| configuration | wall s | non-pad tok/s | padding % | peak GPU MB | final loss | mean loss | end-to-end s "
        "| tok/s vs TRL | memory vs TRL |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, s in summary.items():
        memory = f"{s['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in s else "-"
        ratio = f"{s['vs_trl']:.2f}x" if s.get("vs_trl") else "-"
        mem_ratio = f"{s['memory_vs_trl']:.2f}x" if s.get("memory_vs_trl") else "-"
        lines.append(
            f"| {labels[config]} | {s['train_s']:.1f} | {s['tokens_per_s']:.0f} | {s['padding'] * 100:.1f} "
            f"| {memory} | {s['final_loss']:.3f} | {s['mean_loss']:.3f} | {s['process_s']:.1f} | {ratio} "
            f"| {mem_ratio} |"
        )
    return "\n".join(lines)


def parent(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    # what can be refused without torch first (its import takes seconds)
    if not (args.fixture / "alpaca.json").is_file():
        raise SystemExit(f"No fixture in {args.fixture}: run `.venv/bin/python bench/fixture.py` first.")
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"Unknown configuration(s): {', '.join(unknown)}; choose from {', '.join(CONFIGS)}.")
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit("No CUDA GPU here: this benchmark needs one (--smoke checks the script on a CPU).")
    if not cuda:
        configs = [c for c in configs if not c.endswith("qlora")]  # bitsandbytes 4-bit needs CUDA
    shape = SMOKE if args.smoke else QWEN_05B
    args.model = build_model(args.fixture, WORK / ("model-smoke" if args.smoke else "model"), shape)
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device: {device}; model {'smoke' if args.smoke else 'Qwen2.5-0.5B shape'} ({args.model}); rows "
          f"{args.rows}; runs {args.runs}; configurations {', '.join(configs)}", flush=True)  # fmt: skip
    runs: list[dict] = []
    skipped = []
    longest = 0.0
    for round_ in range(1, args.runs + 1):
        for config in configs:
            left = args.max_minutes * 60 - (time.perf_counter() - started)
            if longest > left or left < 10:
                skipped.append(f"round {round_} {config}")
                continue
            measure = _run(config, args, f"{round_}-{config}", timeout=left)
            if measure is None:
                skipped.append(f"round {round_} {config} (stopped at the limit)")
                continue
            longest = max(longest, measure["process_s"])
            runs.append(measure)
            memory = f", peak GPU {measure['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in measure else ""
            print(f"round {round_} {config}: train {measure['train_s']:.1f} s, {measure['tokens_per_s']:.0f} "
                  f"non-pad tok/s, padding {measure['padding']:.1%}{memory}, final loss "
                  f"{measure['final_loss']:.3f}", flush=True)  # fmt: skip
    if not runs:
        raise SystemExit("No training finished within --max-minutes.")
    summary = summarise(runs)
    total = time.perf_counter() - started
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in (
        "torch",
        "transformers",
        "peft",
        "trl",
        "bitsandbytes",
    ):  # without importing them (bitsandbytes warns)
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    model_kind = "Qwen2.5-0.5B shape" if not args.smoke else "smoke shape" if cuda else "smoke shape, fp32 on CPU"
    labels = (
        LABELS if cuda else {k: v.replace("16-bit (bf16)", "unquantized (fp32 on CPU)") for k, v in LABELS.items()}
    )
    text = "\n".join(
        [
            f"Device: {device}. " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
            f"Model: random-init Qwen2, {model_kind}; data: the first "
            f"{args.rows} rows of {args.fixture.name}/alpaca.json, one epoch, {runs[0]['steps']} steps of batch "
            f"{shared.BATCH}; up to {args.runs} runs per configuration, alternated; medians.",
            "",
            table(summary, labels),
            "",
            "wall s: Trainer.train() only. non-pad tok/s: real tokens / wall s. peak GPU MB: the most GPU memory "
            "allocated during Trainer.train() (weights, activations, optimizer state). end-to-end s: the whole "
            "process. vs TRL: against TRL on the same base (QLoRA or 16-bit) in the same run.",
            *([f"Not run (--max-minutes {args.max_minutes}): {', '.join(skipped)}."] if skipped else []),
            *(["--smoke: a check that the script works, not a measurement; its numbers mean nothing."] * args.smoke),
            "",
            f"Total benchmark time: {total:.0f} s.",
        ]
    )
    print("\n" + text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (WORK / f"results-{stamp}.md").write_text(text + "\n", encoding="utf-8")
    (WORK / f"results-{stamp}.json").write_text(
        json.dumps({"summary": summary, "runs": runs, "device": device, "versions": versions, "rows": args.rows,
                    "smoke": args.smoke, "skipped": skipped, "total_s": total}, indent=1),
        encoding="utf-8",
    )  # fmt: skip
    print(f"\n(saved to {WORK}/results-{stamp}.md and .json)")


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser(description="QLoRA vs 16-bit LoRA, Simple LoRA vs TRL, on one CUDA GPU.")
    parser.add_argument("--rows", type=int, default=800, help="train on the first N rows of the fixture")
    parser.add_argument("--runs", type=int, default=2, help="rounds; each runs every configuration once")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list from {', '.join(CONFIGS)}")
    parser.add_argument("--fixture", type=Path, default=shared.DEFAULT_FIXTURE, help="folder written by fixture.py")
    parser.add_argument("--work", type=Path, default=WORK, help="model, logs and results (default bench/.work-gpu)")
    parser.add_argument("--max-minutes", type=float, default=9.0, help="start no training that would end later")
    parser.add_argument("--smoke", action="store_true", help="a tiny model, on the CPU if there is no GPU")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = shared.parse_with_worker_args(parser)
    WORK = args.work.resolve()
    (worker if args.worker else parent)(args)


if __name__ == "__main__":
    main()
