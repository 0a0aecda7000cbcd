"""``python -m lora_core ...``: the command-line contract (README, "Command line").

Results go to stdout (JSON where the contract says so), progress and errors to stderr. A user mistake ends
with one sentence on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import SimpleLoraError

logger = logging.getLogger("lora_core")

FORMAT_CHOICES = ("auto", "alpaca", "sharegpt", "messages", "preference")


def _print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def cmd_demo_model(args: argparse.Namespace) -> int:
    from .demo import build_demo_model

    print(build_demo_model(args.out, force=args.force))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .data import load_records
    from .errors import DatasetError

    try:
        report = load_records(args.file, args.format, columns=args.columns, sheet=args.sheet)
    except DatasetError as exc:
        _print_json({"file": str(args.file), "valid": False, "error": {"code": exc.code, "message": exc.message}})
        print(exc.message, file=sys.stderr)
        return 1
    _print_json(report.to_json())
    _say_guess(report)
    if not report.ok:
        first = report.problems[0].message
        more = len(report.problems) - 1
        print(first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""), file=sys.stderr)
    return 0 if report.ok else 1


def _say_guess(report: object) -> None:
    if getattr(report, "guessed", False):
        print(f"{report.name}: columns mapped by their names: {report.columns} (--columns chooses others)",
              file=sys.stderr)  # fmt: skip


def cmd_encode(args: argparse.Namespace) -> int:
    from .data import load_records
    from .masking import encode_records
    from .models import check_model_dir, default_max_length, load_tokenizer

    base = check_model_dir(args.base)
    report = load_records(args.file, args.format, columns=args.columns, sheet=args.sheet)
    _say_guess(report)
    records = report.usable(skip_invalid=args.skip_invalid)
    if args.limit is not None:
        records = records[: args.limit]
    tokenizer = load_tokenizer(base, trust_remote_code=args.trust_remote_code)
    max_length = args.max_length or default_max_length(tokenizer, _config_of(base))
    if records and all(r.is_pair for r in records):  # preference pairs: the prompt once, each answer trained
        from .pairs import encode_pairs

        pairs, rows, stats = encode_pairs(records, tokenizer, max_length)
        for pair, row in zip(pairs, rows, strict=True):
            _print_json({"row": row, "prompt_ids": pair.prompt_ids, "chosen_ids": pair.chosen_ids,
                         "rejected_ids": pair.rejected_ids})  # fmt: skip
    else:
        examples, rows, stats = encode_records(records, tokenizer, max_length)
        for example, row in zip(examples, rows, strict=True):
            _print_json({"row": row, "input_ids": example.input_ids, "labels": example.labels})
    dropped = sum(stats.dropped.values())
    print(
        f"encoded {stats.kept} of {stats.total} rows (max length {max_length}): "
        f"{stats.truncated} truncated, {dropped} dropped with nothing left to train",
        file=sys.stderr,
    )
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from .targets import targets_for_folder

    selection = targets_for_folder(args.base, args.preset, trust_remote_code=args.trust_remote_code)
    _print_json(selection.to_json())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import signal

    from .data import read_bytes
    from .models import check_model_dir
    from .training import State, TrainConfig, TrainingJob

    per_data = ("columns", "sheet", "datasets")  # options of each --data, in args.sources
    given = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if f not in per_data}
    sources = args.sources
    if len(sources) == 1 and set(sources[0]) <= {"path", "columns", "sheet"}:
        given.update(columns=sources[0].get("columns", ""), sheet=sources[0].get("sheet", ""))
    else:  # several datasets, or a limit or weight: a mix
        given["datasets"] = [{"format": args.format, **s} for s in sources]
    config = TrainConfig(**given)
    config.check()
    check_model_dir(config.base)  # a wrong folder or file is said before a run is recorded
    for source in config.sources():
        read_bytes(Path(source.path), None)
    job = TrainingJob(config)

    def on_interrupt(signum: int, frame: object) -> None:  # first Ctrl-C: stop and save; second: abort
        print("Stopping after this step and saving the adapter (Ctrl-C again to abort)...", file=sys.stderr)
        job.stop(save=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_interrupt)
    import threading

    done = threading.Event()
    printer = threading.Thread(target=_print_progress, args=(job, done), daemon=True)
    printer.start()
    try:
        snap = job.run()
    finally:
        done.set()
        printer.join(5)  # its last look at the job: a run shorter than a poll still says its mapping and end
    if not job.is_main_process:
        return 0 if snap["state"] != State.FAILED else 1
    summary = {
        "status": str(snap["state"]),
        "adapter_dir": snap["adapter_dir"],
        "task": snap["task"],
        "run": snap["run"],
        "steps": snap["step"],
        "final_loss": snap["loss"][-1][1] if snap["loss"] else None,
        "eval_loss_before": snap["eval_loss_before"],
        "eval_loss_after": snap["eval_loss_after"],
        "seconds": round(snap["elapsed_s"], 1),
        "evaluation": snap["evaluation"] or None,  # Evaluation.summary(): eval.json's mean scores and probe
    }
    if snap["state"] == State.FAILED:
        print(snap["error"], file=sys.stderr)
        summary["error"] = snap["error"]
    _print_json(summary)
    return 1 if snap["state"] == State.FAILED else 0


def _print_progress(job: object, stop: object, every: float = 2.0) -> None:
    """Progress on stderr, as the UI sees it: the job's snapshot, polled, and looked at once more when ``stop`` is
    set (the run's end)."""
    last, samples, said, ended = None, 0, False, False
    while not ended:
        ended = stop.wait(every if last else 0.2)
        snap = job.snapshot()
        parts = ((snap.get("detail") or {}).get("dataset") or {}).get("parts") or []
        if parts and not said:  # a mapping guessed from the names, said once the data is read
            said = True
            for part in parts:
                if part.get("columns_guessed"):
                    print(f"{part['name']}: columns mapped by their names: {part['columns']} (--columns chooses "
                          "others)", file=sys.stderr, flush=True)  # fmt: skip
        for sample in snap["samples"][samples:]:  # what the adapter answers now, beside the reference
            print(f"[sample] step {sample['step']} row {sample['row']}: {sample['answer']!r} (reference: "
                  f"{sample['reference']!r})", file=sys.stderr, flush=True)  # fmt: skip
        samples = len(snap["samples"])
        loss = f" loss {snap['loss'][-1][1]:.4f}" if snap["loss"] else ""
        eta = f" eta {snap['eta_s']:.0f}s" if snap["eta_s"] else ""
        line = f"[{snap['state']}] step {snap['step']}/{snap['total_steps']}{loss}{eta}"
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line


def cmd_scan(args: argparse.Namespace) -> int:
    from .adapters import scan

    _print_json([info.to_json() for info in scan(args.root)])
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .chat import ChatEngine, GenerationSettings
    from .errors import ChatError

    if args.compare and not args.adapter:
        raise ChatError("compare_needs_adapter")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}
    ]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    engine = ChatEngine()
    engine.load_base(args.base, trust_remote_code=args.trust_remote_code)
    if args.adapter:
        engine.activate(args.adapter)
    if args.compare:
        _print_json(engine.compare(messages, settings))
    else:
        print(engine.generate(messages, settings))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .hub import download_model

    def progress(done: int, total: int) -> None:
        print(f"downloaded {done / 1024**2:.1f} of {total / 1024**2:.1f} MB", file=sys.stderr, flush=True)

    token = os.environ.get("HF_TOKEN") or None  # used for this download only, never stored
    print(download_model(args.repo_id, args.revision, args.name, token, args.trust_remote_code, progress))
    return 0


def cmd_fetch_dataset(args: argparse.Namespace) -> int:
    from .hub_datasets import fetch_dataset

    def progress(done: int, total: int) -> None:
        print(f"downloaded {done / 1024**2:.1f} of {total / 1024**2:.1f} MB", file=sys.stderr, flush=True)

    token = os.environ.get("HF_TOKEN") or None  # used for this download only, never stored
    fetched = fetch_dataset(args.repo_id, args.config or "", args.split, args.revision, token, progress)
    print(f"{fetched.name}: {fetched.rows} rows of {', '.join(fetched.files)} at {fetched.commit[:12]}",
          file=sys.stderr)  # fmt: skip
    print(fetched.path)
    return 0


def cmd_import_gguf(args: argparse.Namespace) -> int:
    from .gguf_import import import_gguf

    print(import_gguf(args.file, name=args.name))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .export import merge_adapter

    print(merge_adapter(args.adapter, args.out, base=args.base))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    result = evaluate(args.adapter, args.data, base=args.base, fmt=args.format, limit=args.limit,
                      max_new_tokens=args.max_new_tokens, probe=not args.no_probe, columns=args.columns,
                      sheet=args.sheet)  # fmt: skip
    _print_json({"adapter": result.adapter, "dataset": result.dataset, "rows_kind": result.rows_kind,
                 "rows": len(result.rows), "base": result.base, "adapter_scores": result.tuned,
                 "probe_changed": result.probe_changed, "probe_total": len(result.probe),
                 "probe_right": list(result.probe_right), "saved": str(Path(args.adapter) / "eval.json")})  # fmt: skip
    return 0


def _config_of(base: os.PathLike) -> object:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(base), local_files_only=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_core", description="Simple LoRA command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_model_commands(sub)
    return parser


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """demo-model, validate, encode, targets."""
    p = sub.add_parser("demo-model", help="build the embedded demo base model; prints its path")
    p.add_argument("--out", help="output folder (default: Models/LLM/simple-lora-demo)")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    p.set_defaults(func=cmd_demo_model)

    p = sub.add_parser("validate", help="validate a dataset; JSON report; exit 0 valid, 1 invalid")
    p.add_argument("file", help="JSON, JSONL, CSV, TSV, Parquet or Excel (.xlsx) file")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    _add_column_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("encode", help="tokenize a dataset; JSONL of input_ids and labels")
    p.add_argument("file")
    p.add_argument("--base", required=True, help="base model folder (its tokenizer is used)")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    p.add_argument("--max-length", type=_positive_int, default=None)
    p.add_argument("--limit", type=_positive_int, default=None, help="encode only the first N valid rows")
    _add_column_options(p)
    p.add_argument("--skip-invalid", action="store_true", help="skip invalid rows instead of refusing the file")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("targets", help="detected LoRA target modules of a base model; JSON")
    p.add_argument("--base", required=True)
    p.add_argument("--preset", default="attention", choices=("attention", "all-linear"))
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_targets)


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    """train, scan, generate, merge."""
    p = sub.add_parser("train", help="train a LoRA adapter; progress on stderr, JSON summary last on stdout")
    p.add_argument("--base", required=True, help="base model folder")
    p.add_argument("--data", required=True, action=_DataFile, dest="data",
                   help="dataset file; give --data again to mix several, each followed by its own --columns, "
                   "--sheet, --limit and --weight")  # fmt: skip
    p.add_argument("--task", required=True, help="task name (the adapter folder is <task>_<timestamp>)")
    p.add_argument("--columns", action=_DataOption, help=COLUMNS_HELP + " (of the --data before it)")
    p.add_argument("--sheet", action=_DataOption, help="the Excel sheet (of the --data before it; default: the first)")
    p.add_argument("--limit", action=_DataOption, type=_positive_int,
                   help="use the first N valid rows (of the --data before it)")  # fmt: skip
    p.add_argument("--weight", action=_DataOption, type=float,
                   help="use each row of the --data before it this many times: 2 twice, 0.5 a half")  # fmt: skip
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("scan", help="list the adapters under Models/LoRA; JSON")
    p.add_argument("--root", help="folder to scan (default: Models/LoRA)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("generate", help="answer one prompt with a base model, optionally with an adapter")
    p.add_argument("--base", required=True)
    p.add_argument("--adapter")
    p.add_argument("--prompt", required=True)
    p.add_argument("--system")
    p.add_argument("--max-new-tokens", type=_positive_int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--compare", action="store_true", help="JSON {base, adapter}: the same prompt answered by both")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("merge", help="merge an adapter into a 16-bit copy of its base; prints the new folder")
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True, help="new model folder (must not exist or be empty)")
    p.add_argument("--base", help="base model folder (default: the one recorded in the adapter)")
    p.set_defaults(func=cmd_merge)

    from .evaluation import DEFAULT_ROWS

    p = sub.add_parser("evaluate", help="score an adapter against its base on rows of a dataset; JSON summary, "
                       "all rows in the adapter's eval.json")  # fmt: skip
    p.add_argument("--adapter", required=True)
    p.add_argument("--data", required=True, help="dataset file (its held-out rows when it is the training data)")
    p.add_argument("--base", help="base model folder (default: the one recorded in the adapter)")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    p.add_argument("--limit", type=_positive_int, default=DEFAULT_ROWS,
                   help=f"rows to answer at most (default: {DEFAULT_ROWS})")  # fmt: skip
    p.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=None,
        help="new tokens per answer (default: the longest reference's length and a margin)",
    )
    p.add_argument("--no-probe", action="store_true", help="leave out the forgetting probe's general prompts")
    _add_column_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("download", help="fetch a base model from the Hub into Models/LLM (token: env HF_TOKEN)")
    p.add_argument("repo_id", help="owner/name")
    p.add_argument("--revision", help="a branch, tag or commit (default: main)")
    p.add_argument("--name", help="the model folder's name (default: the repository's name)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("fetch-dataset", help="fetch a dataset's split from the Hub into the stored uploads; prints "
                       "its file (token: env HF_TOKEN)")  # fmt: skip
    p.add_argument("repo_id", help="owner/name")
    p.add_argument("--config", help="the dataset's configuration (default: its default or first)")
    p.add_argument("--split", default="train", help="the split (default: train)")
    p.add_argument("--revision", help="a branch, tag or commit (default: main)")
    p.set_defaults(func=cmd_fetch_dataset)

    p = sub.add_parser("import-gguf", help="turn a GGUF file into a base model folder in Models/LLM; prints it")
    p.add_argument("file", help="the .gguf file")
    p.add_argument("--name", help="the model folder's name (default: the file's name)")
    p.set_defaults(func=cmd_import_gguf)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (those the run's own arguments do not set), with its help and default."""
    from dataclasses import fields

    from .config import TrainConfig

    defaults = TrainConfig(base="", data="", task="")
    for f in fields(TrainConfig):
        if f.name in ("base", "data", "task", "columns", "sheet", "datasets"):
            continue
        flag, default, helps = f"--{f.name.replace('_', '-')}", getattr(defaults, f.name), f.metadata["help"]
        if f.name == "format":
            p.add_argument(flag, default=default, choices=FORMAT_CHOICES, help=helps)
        elif f.name == "method":
            p.add_argument(flag, default=default, choices=f.metadata["choices"], help=f"{helps} (default: {default})")
        elif default is None:  # unset means "decide for the device"
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helps)
        elif isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=helps)
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"{helps} (default: {default})")


COLUMNS_HELP = "column mapping, e.g. instruction=question,output=answer or conversation=dialog (default: by the names)"


def _add_column_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", default=None, help=COLUMNS_HELP)
    p.add_argument("--sheet", default="", help="the Excel sheet to read (default: the first)")


class _DataFile(argparse.Action):
    """``--data FILE``, again for each dataset of a mix; ``args.sources`` lists them with their own options."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        sources = [*(getattr(namespace, "sources", None) or []), {"path": str(value)}]
        namespace.sources = sources
        namespace.data = sources[0]["path"]


class _DataOption(argparse.Action):
    """``--columns``, ``--sheet``, ``--limit``, ``--weight``: an option of the ``--data`` given before it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        sources = getattr(namespace, "sources", None)
        if not sources:
            parser.error(f"{option_string} applies to the --data before it; give --data first")
        if self.dest in sources[-1]:
            parser.error(f"{option_string} is given twice for --data {sources[-1]['path']}")
        sources[-1][self.dest] = value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return args.func(args)
    except SimpleLoraError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
