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

from dataclasses import dataclass, field, fields
from typing import Any

from .errors import TrainingError

__all__ = ["TrainConfig", "TrainingError", "settings_where", "uses_checkpointing"]


def _help(text: str, where: str = "form", **kwargs: Any) -> Any:
    return field(metadata={"help": text, "where": where}, **kwargs)


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
    data: str = _help("dataset file: Alpaca, ShareGPT or OpenAI messages; JSON or JSONL", "run")
    task: str = _help("task name; the adapter folder is <task>_<YYYYMMDD_HHMMSS>", "run")
    format: str = _help("dataset format: auto, alpaca, sharegpt or messages", "run", default="auto")
    epochs: float = _help("passes over the dataset", default=3.0)
    max_steps: int = _help("stop after this many optimizer steps (0: use epochs)", default=0)
    learning_rate: float = _help("peak learning rate of the LoRA weights", default=2e-4)
    rank: int = _help("LoRA rank r: capacity of the adapter", default=16)
    alpha: float = _help("LoRA alpha: the update is scaled by alpha / r", default=32.0)
    dropout: float = _help("dropout on the LoRA input", default=0.05)
    batch_size: int = _help("examples per device per step", default=4)
    grad_accum: int = _help("gradient accumulation steps (effective batch = batch_size x grad_accum)", default=1)
    max_length: int = _help("tokens per example; longer ones lose their oldest prompt tokens", default=1024)
    val_split: float = _help("fraction of examples held out for eval loss (0: none)", default=0.0)
    targets: str = _help("attention | all-linear | a comma list of module names", "targets", default="all-linear")
    quantization: str = _help("auto (4-bit on CUDA, none on CPU) | 4bit | 8bit | none", default="auto")
    warmup_ratio: float = _help("fraction of steps for linear warm-up", default=0.03)
    scheduler: str = _help("learning-rate schedule: linear, cosine or constant", default="cosine")
    seed: int = _help("random seed (data order, LoRA init, split)", default=42)
    gradient_checkpointing: bool | None = _help(
        "trade compute for memory (unset: on for a 4- or 8-bit base on CUDA, off otherwise)", default=None
    )
    skip_invalid: bool = _help("train on the valid rows of a file that has invalid ones", default=False)
    resume: bool = _help("continue the latest unfinished run of this task from its checkpoint", "cli", default=False)
    trust_remote_code: bool = _help(
        "allow the base model's own Python code (only for folders you trust)", "cli", default=False
    )

    def check(self) -> None:
        """Refuse values that cannot train, naming the field."""
        rules = [
            ("epochs", self.epochs > 0 or self.max_steps > 0),
            ("max_steps", self.max_steps >= 0),
            ("learning_rate", 0 < self.learning_rate < 1),
            ("rank", self.rank >= 1),
            ("alpha", self.alpha > 0),
            ("dropout", 0 <= self.dropout < 1),
            ("batch_size", self.batch_size >= 1),
            ("grad_accum", self.grad_accum >= 1),
            ("max_length", self.max_length >= 8),
            ("val_split", 0 <= self.val_split < 0.5),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1),
            ("scheduler", self.scheduler in ("linear", "cosine", "constant")),
            ("quantization", self.quantization in ("auto", "4bit", "8bit", "none")),
        ]
        for name, ok in rules:
            if not ok:
                raise TrainingError("bad_setting", setting=name, value=repr(getattr(self, name)))

    def checkpointing(self, quantization: str, device: str) -> bool:
        return uses_checkpointing(self.gradient_checkpointing, quantization, device)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def settings_where(where: str) -> tuple[str, ...]:
    """The names of the ``TrainConfig`` fields set in one place (``run``, ``form``, ``targets``, ``cli``), in the
    dataclass's order."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata["where"] == where)
