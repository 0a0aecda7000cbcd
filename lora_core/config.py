"""The settings of a training run, in one dataclass with help text. Light to import: no torch, no transformers.

``TrainConfig`` is the one source of the settings: the CLI's ``train`` flags are generated from its fields, and the
Train tab's form, its API parameters and the demo settings are checked against them by the tests. Each field says
where a user sets it (``where`` in its metadata):
- ``run``: what to train (the base model, the dataset, the task name), chosen in the other tabs or controls;
- ``form``: a number, choice or box in the Train tab's settings (and a named parameter of ``/start_training``);
- ``targets``: the target-module controls of the Train tab;
- ``cli``: the command line only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import TrainingError

__all__ = ["TrainConfig", "TrainingError", "settings_where", "uses_checkpointing"]


def _help(text: str, where: str = "form", *, low: float | None = None, high: float | None = None,
          choices: tuple[str, ...] = (), **kwargs: Any) -> Any:  # fmt: skip
    """A field with its help text, where it is set, and the range (``low``..``high``, both allowed) or the
    ``choices`` the server accepts."""
    return field(metadata={"help": text, "where": where, "low": low, "high": high, "choices": choices}, **kwargs)


TASK_MAX_CHARS = 64
DATA_NAME_MAX_CHARS = 255
SCHEDULERS = ("linear", "cosine", "constant")
QUANTIZATIONS = ("auto", "4bit", "8bit", "none")
METHODS = ("sft", "dpo", "orpo")
FORMATS = ("auto", "alpaca", "sharegpt", "messages", "preference")


# On a CPU a training batch's forward and backward run in pieces of at most this many tokens, padding included
# (``trainer.pieces``): the gradients add up to the whole batch's, and what autograd keeps for the backward (about
# 1.7 MB per token on a 135M model) stays small. Smaller products cost little there; new memory costs more.
CPU_PIECE_TOKENS = 1024


def cpu_piece_tokens() -> int:
    """The piece size on a CPU: ``SIMPLE_LORA_PIECE_TOKENS`` when it is a whole number (0: whole batches), else
    ``CPU_PIECE_TOKENS``."""
    value = os.environ.get("SIMPLE_LORA_PIECE_TOKENS", "").strip()
    return int(value) if value.isdigit() else CPU_PIECE_TOKENS


def activation_tokens(batch_size: int, max_length: int, device: str) -> int:
    """The most tokens whose activations are kept at once: a whole batch, or on a CPU one piece of it (a row
    longer than a piece is a piece of its own)."""
    tokens = batch_size * max_length
    pieces = cpu_piece_tokens() if device == "cpu" else 0
    return min(tokens, max(pieces, max_length)) if pieces else tokens


def uses_checkpointing(setting: bool | None, quantization: str, device: str) -> bool:
    """Whether to recompute activations in the backward pass. Unset: on for a quantized base on CUDA (QLoRA's usual
    path, where memory is what limits), off otherwise (it costs about a third more time)."""
    if setting is not None:
        return bool(setting)
    return device == "cuda" and quantization in ("4bit", "8bit")


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults suit a small instruction dataset on a real model."""

    base: str = _help("base model folder (HF layout, safetensors)", "run")
    data: str = _help("dataset file: Alpaca, ShareGPT or OpenAI messages, or mapped columns; JSON, JSONL, CSV, TSV, "
                      "Parquet or Excel", "run")  # fmt: skip
    task: str = _help(f"task name (up to {TASK_MAX_CHARS} characters); the adapter folder is "
                      "<task>_<YYYYMMDD_HHMMSS>", "run")  # fmt: skip
    format: str = _help("dataset format: auto, alpaca, sharegpt, messages or preference", "run", choices=FORMATS,
                        default="auto")  # fmt: skip
    data_name: str = _help("the dataset's name for the run and the adapter's manifest (default: the file's name)",
                           "run", default="")  # fmt: skip
    columns: str = _help("column mapping, e.g. instruction=question,output=answer (empty: the three formats, else "
                         "guessed from the column names)", "run", default="")  # fmt: skip
    sheet: str = _help("the Excel sheet to read (default: the first)", "run", default="")
    datasets: list = _help("several datasets mixed: each {path, name, format, columns, sheet, limit, weight} "
                           "(empty: just data)", "run", default_factory=list)  # fmt: skip
    method: str = _help("sft: learn the answers of instruction rows; dpo or orpo: learn to prefer the chosen answer "
                        "of preference pairs", choices=METHODS, default="sft")  # fmt: skip
    beta: float = _help("dpo: how strongly the adapter may move away from the base model's preferences (higher: "
                        "less); orpo: the weight of the preference term beside the chosen answers' own loss",
                        low=0.001, high=10, default=0.1)  # fmt: skip
    sft_weight: float = _help("dpo: weight of the chosen answers' own loss added to the preference loss (0: pure "
                              "DPO; orpo always has it)", low=0, high=10, default=0.0)  # fmt: skip
    epochs: float = _help("passes over the dataset", low=0, high=1000, default=3.0)
    max_steps: int = _help("stop after this many optimizer steps (0: use epochs)", low=0, high=1_000_000, default=0)
    learning_rate: float = _help("peak learning rate of the LoRA weights", low=1e-8, high=0.5, default=2e-4)
    rank: int = _help("LoRA rank r: capacity of the adapter", low=1, high=1024, default=16)
    alpha: float = _help("LoRA alpha: the update is scaled by alpha / r", low=0.01, high=4096, default=32.0)
    dropout: float = _help("dropout on the LoRA input", low=0, high=0.9, default=0.05)
    batch_size: int = _help("examples per device per step", low=1, high=1024, default=4)
    grad_accum: int = _help("gradient accumulation steps (effective batch = batch_size x grad_accum)", low=1,
                            high=1024, default=1)  # fmt: skip
    max_length: int = _help("tokens per example; longer ones lose their oldest prompt tokens", low=8, high=131072,
                            default=1024)  # fmt: skip
    val_split: float = _help("fraction of examples held out for eval loss (0: none)", low=0, high=0.49, default=0.0)
    targets: str = _help("attention | all-linear | a comma list of module names", "targets", default="all-linear")
    warmup_ratio: float = _help("fraction of steps for linear warm-up", low=0, high=0.9, default=0.03)
    scheduler: str = _help("learning-rate schedule: linear, cosine or constant", choices=SCHEDULERS, default="cosine")
    seed: int = _help("random seed (data order, LoRA init, split)", low=0, high=2**32 - 1, default=42)
    quantization: str = _help("auto (4-bit on CUDA, none on CPU) | 4bit | 8bit | none", choices=QUANTIZATIONS,
                              default="auto")  # fmt: skip
    gradient_checkpointing: bool | None = _help(
        "trade compute for memory (unset: on for a 4- or 8-bit base on CUDA, off otherwise)", default=None
    )
    skip_invalid: bool = _help("train on the valid rows of a file that has invalid ones", default=False)
    samples: int = _help("times during the run the adapter answers the sample rows (0: never)", low=0, high=50,
                         default=5)  # fmt: skip
    sample_rows: str = _help("dataset rows answered during the run, up to 3 (e.g. 3, 7; empty: the first held-out "
                             "row, else the first row)", default="")  # fmt: skip
    eval_rows: int = _help("rows answered by base and adapter after the run, for its evaluation card (0: no "
                           "evaluation)", low=0, high=1000, default=20)  # fmt: skip
    resume: bool = _help("continue the latest unfinished run of this task from its checkpoint", "cli", default=False)
    trust_remote_code: bool = _help(
        "allow the base model's own Python code (only for folders you trust)", "cli", default=False
    )

    def check(self) -> None:
        """Refuse values that cannot train, naming the field and what it accepts: every number finite and in its
        range (a whole number where the field is one), every choice one of its choices."""
        for f in fields(self):
            check_setting(f.name, getattr(self, f.name))
        if self.epochs <= 0 and self.max_steps <= 0:
            raise TrainingError("no_length", epochs=self.epochs, max_steps=self.max_steps)
        if not 0 < len(self.task.strip()) <= TASK_MAX_CHARS:
            raise TrainingError("bad_task_name", max=TASK_MAX_CHARS)
        if len(self.data_name) > DATA_NAME_MAX_CHARS:
            raise TrainingError("bad_data_name", max=DATA_NAME_MAX_CHARS)
        from .columns import parse as parse_columns

        parse_columns(self.columns)
        self.sources()
        from .sampling import parse_rows

        parse_rows(self.sample_rows)

    @property
    def dataset_name(self) -> str:
        """The dataset as the user knows it: its given name, else its file's name (several: joined by +)."""
        return " + ".join(s.label for s in self.sources())

    def sources(self) -> list:
        """The datasets to train on (``mixing.DataSource``): ``datasets`` when given, else ``data`` as it is."""
        from .mixing import DataSource, check_sources

        if self.datasets:
            return check_sources(self.datasets)
        return [DataSource(self.data, self.data_name, self.format, self.columns, self.sheet)]

    @property
    def preference(self) -> bool:
        """Whether the run learns from preference pairs (DPO or ORPO)."""
        return self.method != "sft"

    def checkpointing(self, quantization: str, device: str) -> bool:
        return uses_checkpointing(self.gradient_checkpointing, quantization, device)


def settings_where(where: str) -> tuple[str, ...]:
    """The names of the ``TrainConfig`` fields set in one place (``run``, ``form``, ``targets``, ``cli``), in the
    dataclass's order."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata["where"] == where)


def setting_range(name: str) -> tuple[float | None, float | None]:
    """The range a numeric setting accepts (both ends included)."""
    meta = _FIELDS[name].metadata
    return meta["low"], meta["high"]


def check_setting(name: str, value: Any) -> None:
    """Refuse one setting's value that is not of its kind, not finite, out of its range or not one of its choices."""
    meta = _FIELDS[name].metadata
    low, high, choices = meta["low"], meta["high"], meta["choices"]
    if choices and value not in choices:
        raise TrainingError("setting_choice", setting=name, value=str(value)[:40], choices=list(choices))
    if low is None:
        return
    whole = _FIELDS[name].type in ("int", int)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or (whole and value != int(value)):
        raise TrainingError("setting_not_number", setting=name, value=str(value)[:40])
    if not low <= value <= high:
        raise TrainingError("setting_range", setting=name, value=_num(value), low=_num(low), high=_num(high))


def _num(x: float) -> str:
    """A number as a person writes it: 1000000, 0.5, 1e-08, 1e+300."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


_FIELDS = {f.name: f for f in fields(TrainConfig)}
