"""Did the adapter learn, and what did it forget? Rows of a dataset answered greedily by the base model and by the
adapter, each scored against its reference (``scoring``), with the eval loss of both on the same rows; and the
forgetting probe, general prompts (``samples/forgetting_probe.json``, Chinese and English: arithmetic, facts, a
translation) answered by both, with how far the adapter's answer moved from the base's and whether each answer has
a word the right answer has (``expect``: "Paris" for the capital of France). Kept in the adapter folder as
``eval.json``, summarised in its manifest (``Manifest.evaluation``).

Which rows: with the adapter's own training data and a validation split, the held-out rows of that split (found
again from the manifest's settings: the same encoding, seed and share); with its own data and no split, the first
rows, which it was trained on, and the report says so (``rows_kind: "trained"``); with another dataset, its first
rows (``rows_kind: "other"``). At most ``limit`` rows, for time; answers at most a little longer than the longest
reference (``max_new_tokens`` unset), so a greedy answer that never ends costs little.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import adapters, paths
from .errors import AdapterError, TrainingError
from .files import write_json
from .sampling import answer_budget, split_last_reply
from .scoring import rouge_l, scores

logger = logging.getLogger(__name__)

EVAL_FILE = "eval.json"
DEFAULT_ROWS = 20
MAX_ROWS = 1000
SCORES = ("exact_match", "rouge_l", "token_f1")
PROBE_FILE = paths.PACKAGE_DIR / "samples" / "forgetting_probe.json"
PROBE_MAX_NEW_TOKENS = 48
ANSWER_MARGIN = 16  # tokens an answer may run past its longest reference
ANSWER_MAX = 256


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
class ProbeResult:
    id: str
    lang: str
    prompt: str
    base: str
    adapter: str
    similarity: float  # ROUGE-L of the adapter's answer against the base's: 1.0 is unchanged
    changed: bool
    base_right: bool = False  # the answer holds one of the prompt's expected words
    adapter_right: bool = False


@dataclass
class Evaluation:
    adapter: str
    dataset: str
    dataset_sha256: str
    rows_kind: str  # "held_out" | "trained" | "other"
    max_new_tokens: int
    base: dict[str, float | None] = field(default_factory=dict)  # mean scores, and "eval_loss"
    tuned: dict[str, float | None] = field(default_factory=dict)
    rows: list[RowResult] = field(default_factory=list)
    probe: list[ProbeResult] = field(default_factory=list)
    evaluated_at: str = ""
    # preference pairs: the share of pairs whose chosen answer has the higher log-probability, base and adapter
    preference: dict[str, float | int] = field(default_factory=dict)  # {"pairs", "base", "adapter"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["rows"] = [RowResult(**r) for r in values.get("rows", [])]
        values["probe"] = [ProbeResult(**p) for p in values.get("probe", [])]
        return cls(**values)

    @property
    def probe_changed(self) -> int:
        return sum(p.changed for p in self.probe)

    @property
    def probe_right(self) -> tuple[int, int]:
        """How many probe prompts the base and the adapter answered right."""
        return sum(p.base_right for p in self.probe), sum(p.adapter_right for p in self.probe)

    @property
    def probe_similarity(self) -> float | None:
        return statistics.fmean(p.similarity for p in self.probe) if self.probe else None

    def summary(self) -> dict[str, Any]:
        """What the manifest lists of it: the file, the rows, the mean scores and the probe's count."""
        return {"file": EVAL_FILE, "dataset": self.dataset, "rows_kind": self.rows_kind, "rows": len(self.rows),
                "base": self.base, "adapter": self.tuned, "probe_changed": self.probe_changed,
                "probe_total": len(self.probe), "probe_similarity": self.probe_similarity,
                "probe_right": list(self.probe_right), "evaluated_at": self.evaluated_at,
                **({"preference": self.preference} if self.preference else {})}  # fmt: skip

    def best_and_worst(self, n: int = 3) -> tuple[list[RowResult], list[RowResult]]:
        """The rows the adapter answered best and worst (by ROUGE-L, then token F1); a row is in one list only, and
        a perfect answer is never among the worst."""
        ranked = sorted(self.rows, key=lambda r: (r.adapter_scores["rouge_l"], r.adapter_scores["token_f1"], -r.row))
        imperfect = [r for r in ranked if r.adapter_scores["rouge_l"] < 1.0]
        worst = imperfect[: min(n, len(ranked) // 2)]
        best = ranked[len(worst) :][::-1][:n]
        return best, worst


def read_evaluation(adapter: str | Path) -> Evaluation | None:
    """The adapter's ``eval.json``; None when it has none, ``AdapterError`` when it is unreadable."""
    path = Path(adapter) / EVAL_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Evaluation.from_json(data)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise AdapterError("adapter_bad_eval", name=Path(adapter).name) from exc


def probe_prompts() -> list[dict[str, str]]:
    return json.loads(PROBE_FILE.read_text(encoding="utf-8"))


def _rows_to_score(adapter: Path, data: Any, fmt: str, columns: str, sheet: str, tokenizer: Any,
                   limit: int) -> tuple[list[Any], str, Any]:  # fmt: skip
    """The records to answer, what kind of rows they are, and the dataset report (``data``: a file, or the report
    of the rows a training used)."""
    from .data import DatasetReport, load_records
    from .masking import encode_records, split_dataset, to_dataset

    manifest = adapters.read_manifest(adapter) if adapters.has_manifest(adapter) else None
    hyper = manifest.hyperparameters if manifest else {}
    parts = manifest.dataset.parts if manifest else []
    if isinstance(data, DatasetReport):
        report = data
    else:
        # the training's own file, read as the training read it (its format, columns and sheet); its own rows only
        # when it was the run's one dataset, used whole (a part of a mix, or a limited one, is not held out)
        sha = _sha256(data) if manifest is not None and not columns and not sheet else ""
        part = next((p for p in parts if p.get("sha256") == sha), None) if sha else None
        if part is not None:
            fmt, columns, sheet = part.get("format") or fmt, part.get("columns") or "", part.get("sheet") or ""
        elif sha and sha == manifest.dataset.sha256:  # a manifest from before parts were recorded
            fmt = hyper.get("format", fmt)
        report = load_records(data, fmt, columns=columns or None, sheet=sheet)
    records = report.usable(skip_invalid=True)
    reading = (report.columns, report.sheet)
    own = (
        manifest is not None
        and manifest.dataset.sha256 == report.sha256
        and (not parts or len(parts) > 1 or reading == (parts[0].get("columns") or "", parts[0].get("sheet") or ""))
    )
    if not own:
        return records[:limit], "other", report
    val_split = float(hyper.get("val_split") or 0)
    if val_split <= 0:
        return records[:limit], "trained", report
    max_length = int(hyper.get("max_length") or 1024)
    if manifest.method != "sft" and all(r.is_pair for r in records):  # split as the preference training split
        from .pairs import encode_pairs, to_pair_dataset

        pairs, rows, _ = encode_pairs(records, tokenizer, max_length)
        encoded = to_pair_dataset(pairs, rows)
    else:
        examples, rows, _ = encode_records(records, tokenizer, max_length)
        encoded = to_dataset(examples, rows)
    _, held_out = split_dataset(encoded, val_split, int(hyper.get("seed") or 0))
    if held_out is None:
        return records[:limit], "trained", report
    wanted = set(held_out["row"])
    return [r for r in records if r.row in wanted][:limit], "held_out", report


def _sha256(path: Any) -> str:
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return ""  # load_records says what is wrong with it


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


def pair_logps(model: Any, pairs: list[Any]) -> list[tuple[float, float]]:
    """Each pair's (chosen, rejected) log-probability: the sum over the answer's tokens, given the prompt."""
    import torch

    device = next(model.parameters()).device
    result = []
    with torch.inference_mode():
        for pair in pairs:
            both = []
            for answer in (pair.chosen_ids, pair.rejected_ids):
                ids = torch.tensor([pair.prompt_ids + answer], device=device)
                logits = model(input_ids=ids).logits[0, len(pair.prompt_ids) - 1 : -1].float()
                targets = torch.tensor(answer, device=device)[:, None]
                both.append(float(torch.log_softmax(logits, -1).gather(-1, targets).sum()))
            result.append((both[0], both[1]))
    return result


def preference_accuracy(logps: list[tuple[float, float]]) -> float | None:
    """The share of pairs whose chosen answer is the more likely one."""
    return sum(c > r for c, r in logps) / len(logps) if logps else None


def evaluate(adapter: str | Path, data: Any, base: str | Path | None = None, fmt: str = "auto",
             limit: int = DEFAULT_ROWS, max_new_tokens: int | None = None, save: bool = True, probe: bool = True,
             stop: threading.Event | None = None, trust_remote_code: bool = False, during_training: bool = False,
             columns: str = "", sheet: str = "") -> Evaluation | None:  # fmt: skip
    """Score the adapter against its base on rows of ``data`` and on the forgetting probe (see the module's
    docstring); written to the adapter's ``eval.json`` (and summarised in its manifest) unless ``save`` is False.
    None, with nothing written, when ``stop`` is set before it is done. ``during_training``: called by the training
    that made the adapter, which holds the training lock (a GPU is then not refused to it). ``data``: a dataset
    file (read with ``fmt``, ``columns`` and ``sheet``; the adapter's own file as its training read it), or the
    ``data.DatasetReport`` of the rows its training used."""
    from .chat import ChatEngine, GenerationSettings
    from .masking import encode_records
    from .runs import now

    adapter = Path(adapter)
    adapters.verify_adapter(adapter)
    if not 1 <= int(limit) <= MAX_ROWS:
        raise TrainingError("setting_range", setting="limit", value=str(limit), low="1", high=str(MAX_ROWS))
    base_dir = Path(base) if base else adapters.base_for_adapter(adapter)
    if base_dir is None:
        raise AdapterError("adapter_base_unknown", name=adapter.name)
    engine = ChatEngine()
    try:
        engine.load_base(base_dir, trust_remote_code, during_training=during_training)
        loaded = engine.activate(adapter)
        records, kind, report = _rows_to_score(adapter, data, fmt, columns, sheet, engine.tokenizer, int(limit))
        if not records:
            raise TrainingError("nothing_to_evaluate", file=report.name)
        asked = [split_last_reply(r) for r in records]
        references = [a[2] for a in asked]
        budget = int(max_new_tokens or answer_budget(engine.tokenizer, references, ANSWER_MARGIN, ANSWER_MAX))
        # the rows and the probe's prompts in the same batches, each with its own budget (the rows' and the
        # probe's decoding steps are then shared, not one after the other)
        items = probe_prompts() if probe else []
        conversations = [a[0] for a in asked] + [[{"role": "user", "content": i["prompt"]}] for i in items]
        budgets = [budget] * len(asked) + [PROBE_MAX_NEW_TOKENS] * len(items)
        replies = engine.answer_both(conversations, GenerationSettings(max_new_tokens=budget), stop=stop,
                                     budgets=budgets)  # fmt: skip
        if replies is None or (stop is not None and stop.is_set()):
            return None
        answers = (replies[0][: len(asked)], replies[1][: len(asked)])
        probed = _probed(items, replies[0][len(asked) :], replies[1][len(asked) :])
        results = [RowResult(r.row, prompt, ref, base_answer, tuned_answer, scores(base_answer, ref),
                             scores(tuned_answer, ref))
                   for r, (_, prompt, ref), base_answer, tuned_answer
                   in zip(records, asked, *answers, strict=True)]  # fmt: skip
        examples, _, _ = encode_records(records, engine.tokenizer, 4096, loaded.style)
        pairs = _pairs(records, engine.tokenizer, loaded.style)
        preference: dict[str, float | int] = {"pairs": len(pairs)} if pairs else {}
        with engine._adapter_mode(None):
            base_loss = _mean_loss(engine.model, examples)
            if pairs:
                preference["base"] = preference_accuracy(pair_logps(engine.model, pairs))
        with engine._adapter_mode(loaded.name):
            tuned_loss = _mean_loss(engine.model, examples)
            if pairs:
                preference["adapter"] = preference_accuracy(pair_logps(engine.model, pairs))
    finally:
        engine.unload()
    evaluation = Evaluation(
        adapter=adapter.name, dataset=report.name, dataset_sha256=report.sha256, rows_kind=kind,
        max_new_tokens=budget, rows=results, probe=probed, evaluated_at=now(), preference=preference,
        base={**_means(results, "base_scores"), "eval_loss": base_loss},
        tuned={**_means(results, "adapter_scores"), "eval_loss": tuned_loss},
    )  # fmt: skip
    if save:
        save_evaluation(adapter, evaluation)
        logger.info("evaluated %s on %d rows of %s", adapter.name, len(results), report.name)
    return evaluation


def _pairs(records: list[Any], tokenizer: Any, style: Any) -> list[Any]:
    """The preference pairs among ``records``, encoded as their training encoded them (none: instruction rows)."""
    if not records or not all(r.is_pair for r in records):
        return []
    from .pairs import encode_pairs

    return encode_pairs(records, tokenizer, 4096, style)[0]


def save_evaluation(adapter: Path, evaluation: Evaluation) -> None:
    """``eval.json``, and its summary in the manifest (an adapter from elsewhere, without one, gets only the file)."""
    write_json(adapter / EVAL_FILE, evaluation.to_json(), indent=1)
    if adapters.has_manifest(adapter):
        from .manifest import write_manifest

        manifest = adapters.read_manifest(adapter)
        manifest.evaluation = evaluation.summary()
        write_manifest(adapter, manifest)


def _probed(items: list[dict], base: list[str], tuned: list[str]) -> list[ProbeResult]:
    """The general prompts answered by base and adapter; an answer counts as changed when it is not the same text."""
    results = []
    for item, base_answer, tuned_answer in zip(items, base, tuned, strict=True):
        same = tuned_answer.strip() == base_answer.strip()
        results.append(ProbeResult(item["id"], item["lang"], item["prompt"], base_answer, tuned_answer,
                                   1.0 if same else rouge_l(tuned_answer, base_answer), not same,
                                   _right(base_answer, item), _right(tuned_answer, item)))  # fmt: skip
    return results


def _right(answer: str, item: dict[str, Any]) -> bool:
    text = answer.lower()
    return any(word in text for word in item.get("expect", []))


def _means(results: list[RowResult], which: str) -> dict[str, float]:
    return {name: statistics.fmean(getattr(r, which)[name] for r in results) for name in SCORES}
