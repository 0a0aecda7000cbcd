"""``training_meta.json``: the manifest of an adapter folder, one dataclass written and read only through here.

``SCHEMA_VERSION`` goes up when a field changes meaning; a manifest without a version (written before it had one)
is version 1 and reads the same. Unknown keys (from a newer version) are kept in ``extra`` and written back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import AdapterError
from .files import write_json

META_NAME = "training_meta.json"
SCHEMA_VERSION = 1


@dataclass
class DatasetInfo:
    """The dataset a run trained on, and what became of its rows."""

    name: str = ""
    sha256: str = ""
    format: str = ""
    rows_total: int = 0
    rows_invalid_skipped: int = 0
    examples_used: int = 0
    examples_dropped: int = 0
    examples_truncated: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    columns: str = ""  # the column mapping used (columns.ColumnMap.spec()), "" for one of the three formats
    parts: list[dict[str, Any]] = field(default_factory=list)  # each dataset of the run (mixing.load_mix)


@dataclass
class Manifest:
    status: str = ""  # completed | stopped
    task: str = ""
    run: str = ""
    base_model: str = ""  # the base model folder it was trained on
    base_model_name: str = ""
    base_fingerprint: str = ""  # adapters.base_fingerprint of that folder
    base_repo_id: str = ""  # the Hub repository the base came from (when it was downloaded), and its commit
    base_commit: str = ""
    architecture: str = ""
    target_modules: list[str] = field(default_factory=list)
    targets_source: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # TrainConfig's settings, as used
    method: str = "sft"  # sft | dpo | orpo (its settings are in hyperparameters: beta, sft_weight)
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    loss_history: list[list[float]] = field(default_factory=list)  # [step, loss]
    eval_history: list[list[float]] = field(default_factory=list)  # [step, eval loss]
    preference_history: dict[str, list[list[float]]] = field(default_factory=dict)  # dpo / orpo: name -> [step, value]
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)  # answers during training (sampling.Sample)
    evaluation: dict[str, Any] = field(default_factory=dict)  # the summary of eval.json (evaluation.Evaluation)
    steps: int = 0
    trainable_params: int | None = None
    device: str | None = None
    quantization: str | None = None
    prompt_format: str | None = None  # prompts.PromptStyle of the training
    has_chat_template: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they were

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["schema_version"] = data.get("schema_version", 1)
        if isinstance(values.get("dataset"), dict):
            ds_known = {f.name for f in fields(DatasetInfo)}
            values["dataset"] = DatasetInfo(**{k: v for k, v in values["dataset"].items() if k in ds_known})
        else:
            values.pop("dataset", None)
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @property
    def final_train_loss(self) -> float | None:
        return finite_or_none(self.loss_history[-1][1]) if self.loss_history else None

    @property
    def final_eval_loss(self) -> float | None:
        return finite_or_none(self.eval_loss_after)


def finite_or_none(value: Any) -> float | None:
    """A loss as a float, or None when it is missing, not a number, NaN or infinite."""
    import math

    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def has_manifest(folder: str | Path) -> bool:
    return (Path(folder) / META_NAME).is_file()


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of an adapter folder; ``AdapterError`` when it is unreadable or not a manifest."""
    folder = Path(folder)
    try:
        data = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return Manifest.from_json(data)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise AdapterError("adapter_bad_meta", name=folder.name) from exc


def write_manifest(folder: str | Path, manifest: Manifest) -> None:
    write_json(Path(folder) / META_NAME, manifest.to_json())


def library_versions() -> dict[str, str]:
    """The versions a manifest records: ours and those of the libraries that shape an adapter."""
    import peft
    import torch
    import transformers

    from . import __version__

    return {"simple_lora": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}  # fmt: skip
