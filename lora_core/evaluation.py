"""Did the adapter learn? Rows of a dataset answered greedily by the base model and by the adapter, each scored
against its reference (``scoring``), with the eval loss of both on the same rows; kept in the adapter folder as
``eval.json``.

Which rows: with the adapter's own training data and a validation split, the held-out rows of that split (found
again from the manifest's settings: the same encoding, seed and share); with its own data and no split, the first
rows, which it was trained on, and the report says so (``rows_kind: "trained"``); with another dataset, its first
rows (``rows_kind: "other"``). At most ``limit`` rows, for time.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import adapters
from .errors import TrainingError
from .files import write_json
from .scoring import scores

logger = logging.getLogger(__name__)

EVAL_FILE = "eval.json"
DEFAULT_ROWS = 50
MAX_ROWS = 1000
SCORES = ("exact_match", "rouge_l", "token_f1")


@dataclass
class RowResult:
    row: int
    prompt: str
    reference: str
    base: str
    adapter: str
    base_scores: dict[str, float]
    adapter_scores: dict[str, float]


@dataclass
class Evaluation:
    adapter: str
    dataset: str
    dataset_sha256: str
    rows_kind: str  # "held_out" | "trained" | "other"
    max_new_tokens: int
    base: dict[str, float] = field(default_factory=dict)  # mean scores, and "eval_loss"
    tuned: dict[str, float] = field(default_factory=dict)
    rows: list[RowResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rows_to_score(adapter: Path, data: Path, fmt: str, tokenizer: Any, limit: int) -> tuple[list[Any], str, Any]:
    """The records to answer, what kind of rows they are, and the dataset report."""
    from .data import load_records
    from .masking import encode_records, split_dataset, to_dataset

    manifest = adapters.read_manifest(adapter) if adapters.has_manifest(adapter) else None
    hyper = manifest.hyperparameters if manifest else {}
    report = load_records(data, hyper.get("format", fmt) if manifest else fmt)
    records = report.usable(skip_invalid=True)
    own = manifest is not None and manifest.dataset.sha256 == report.sha256
    if not own:
        return records[:limit], "other", report
    val_split = float(hyper.get("val_split") or 0)
    if val_split <= 0:
        return records[:limit], "trained", report
    examples, rows, _ = encode_records(records, tokenizer, int(hyper.get("max_length") or 1024))
    _, held_out = split_dataset(to_dataset(examples, rows), val_split, int(hyper.get("seed") or 0))
    if held_out is None:
        return records[:limit], "trained", report
    wanted = set(held_out["row"])
    return [r for r in records if r.row in wanted][:limit], "held_out", report


def _mean_loss(model: Any, examples: list[Any]) -> float | None:
    """The mean token loss of the trained tokens of ``examples``."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for example in examples:
            ids = torch.tensor([example.input_ids], device=device)
            labels = torch.tensor([example.labels], device=device)
            trained = int((labels[0, 1:] != -100).sum())
            if trained == 0:
                continue
            loss = model(input_ids=ids, labels=labels).loss
            total, count = total + float(loss) * trained, count + trained
    value = total / count if count else None
    return value if value is not None and math.isfinite(value) else None


def evaluate(adapter: str | Path, data: str | Path, base: str | Path | None = None, fmt: str = "auto",
             limit: int = DEFAULT_ROWS, max_new_tokens: int = 128, save: bool = True) -> Evaluation:  # fmt: skip
    """Score the adapter against its base on rows of ``data`` (see the module's docstring); the result is written
    to the adapter's ``eval.json`` unless ``save`` is False."""
    from .chat import ChatEngine, GenerationSettings
    from .masking import encode_records

    adapter = Path(adapter)
    adapters.verify_adapter(adapter)
    if not 1 <= int(limit) <= MAX_ROWS:
        raise TrainingError("setting_range", setting="limit", value=str(limit), low="1", high=str(MAX_ROWS))
    base_dir = Path(base) if base else adapters.base_for_adapter(adapter)
    if base_dir is None:
        raise adapters.AdapterError("adapter_base_unknown", name=adapter.name)
    engine = ChatEngine()
    engine.load_base(base_dir)
    loaded = engine.activate(adapter)
    records, kind, report = _rows_to_score(adapter, Path(data), fmt, engine.tokenizer, int(limit))
    if not records:
        raise TrainingError("nothing_to_evaluate", file=report.name)
    answered = engine.replay(records, GenerationSettings(max_new_tokens=int(max_new_tokens)))
    results = [RowResult(a["row"], a["prompt"], a["reference"], a["base"], a["adapter"],
                         scores(a["base"], a["reference"]), scores(a["adapter"], a["reference"]))
               for a in answered]  # fmt: skip
    examples, _, _ = encode_records(records, engine.tokenizer, 4096, loaded.style)
    with engine._adapter_mode(None):
        base_loss = _mean_loss(engine.model, examples)
    with engine._adapter_mode(loaded.name):
        tuned_loss = _mean_loss(engine.model, examples)
    evaluation = Evaluation(
        adapter=adapter.name, dataset=report.name, dataset_sha256=report.sha256, rows_kind=kind,
        max_new_tokens=int(max_new_tokens), rows=results,
        base={**_means(results, "base_scores"), "eval_loss": base_loss},
        tuned={**_means(results, "adapter_scores"), "eval_loss": tuned_loss},
    )  # fmt: skip
    engine.unload()
    if save:
        write_json(adapter / EVAL_FILE, evaluation.to_json(), indent=1)
        logger.info("evaluated %s on %d rows of %s", adapter.name, len(results), report.name)
    return evaluation


def _means(results: list[RowResult], which: str) -> dict[str, float]:
    return {name: statistics.fmean(getattr(r, which)[name] for r in results) for name in SCORES}
