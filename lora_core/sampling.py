"""Samples during training: at a few steps of a run (``TrainConfig.samples`` times, evenly spread, the last at
its end) the adapter being trained answers one to three dataset prompts greedily, and the Train tab shows each
answer beside its reference, so a user sees the answers move towards the data, not only a loss value.

Which prompts: the rows named in ``TrainConfig.sample_rows`` (1-based, as the Dataset tab counts), else the first
held-out row when there is a validation split (an answer it was not trained on), else the first row.

The cost is bounded: answers are cut a little past their reference's length (at most ``ANSWER_MAX`` tokens), and
the samples of a run take at most ``BUDGET`` of its training time (projected from its steps so far), or ``FREE_S``
seconds when that is more (on a run of seconds, a fraction of a second for a few answers is not worth skipping).
Before the first one, a forward pass of a few tokens (about one decoding step) is timed, the faster of two, and
multiplied by the answer's tokens and the rows to estimate what a sample costs; each sample taken then measures
it. The last one (the answers at the run's end) is always taken; one before it is skipped when it and the last
one would pass the budget.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import TrainingError

MAX_ROWS = 3
BUDGET = 0.02  # of the training time; the measured cost is in BENCHMARKS.md
FREE_S = 1.0
ANSWER_MARGIN = 8
ANSWER_MAX = 64
logger = logging.getLogger(__name__)
_ROWS = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")


@dataclass
class Sample:
    step: int
    row: int
    prompt: str
    reference: str
    answer: str


def parse_rows(text: str) -> list[int]:
    """``"3, 7"`` -> ``[3, 7]``; empty -> ``[]`` (the default rows). ``TrainingError`` naming the text otherwise."""
    text = (text if isinstance(text, str) else str(text)).strip()
    if not text:
        return []
    if len(text) > 64 or not _ROWS.match(text):
        raise TrainingError("bad_sample_rows", value=text[:40], max=MAX_ROWS)
    rows = list(dict.fromkeys(int(part) for part in text.split(",")))
    if len(rows) > MAX_ROWS or min(rows) < 1:
        raise TrainingError("bad_sample_rows", value=text[:40], max=MAX_ROWS)
    return rows


def choose(records: list[Any], train_rows: list[int], held_out_rows: list[int], wanted: str, file: str) -> list[Any]:
    """The records to sample: the ``wanted`` rows (each must be a row that is trained or held out), else the
    first held-out row, else the first trained row."""
    usable = set(train_rows) | set(held_out_rows)
    by_row = {r.row: r for r in records if r.row in usable}
    rows = parse_rows(wanted)
    for row in rows:
        if row not in by_row:
            raise TrainingError("sample_row_missing", row=row, file=file)
    if not rows:
        rows = [min(held_out_rows)] if held_out_rows else [min(train_rows)] if train_rows else []
    return [by_row[row] for row in rows if row in by_row]


def sample_steps(total: int, times: int) -> list[int]:
    """``times`` steps spread evenly over a run of ``total`` steps, the last one its end."""
    if total < 1 or times < 1:
        return []
    return sorted({max(1, round(total * k / times)) for k in range(1, times + 1)})


def split_last_reply(record: Any) -> tuple[list[dict], str, str]:
    """A row's conversation up to its last reply, its last prompt and that reply (the reference)."""
    messages = [{"role": m.role, "content": m.content} for m in record.messages]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last - 1]["content"], messages[last]["content"]


def answer_budget(tokenizer: Any, references: list[str], margin: int, cap: int) -> int:
    """New tokens enough for the longest reference and ``margin`` (at most ``cap``): a greedy answer that runs on is
    cut there."""
    longest = max((len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in references), default=0)
    return max(margin, min(cap, longest + margin))


class Sampler:
    """Answers the chosen records with the model being trained, at the chosen steps, within the time budget."""

    def __init__(self, tokenizer: Any, records: list[Any], times: int, style: str | None = None) -> None:
        self.tokenizer, self.records, self.times, self.style = tokenizer, records, times, style
        self.steps: set[int] = set()
        self.last = 0
        self.total = 0
        self.cost: float | None = None  # what the last sample took
        self.spent = 0.0
        self.started = time.monotonic()
        self.skipped = 0
        references = [split_last_reply(r)[2] for r in records]
        self.max_new_tokens = answer_budget(tokenizer, references, ANSWER_MARGIN, ANSWER_MAX)

    def begin(self, total_steps: int) -> None:
        self.steps = set(sample_steps(total_steps, self.times if self.records else 0))
        self.last = max(self.steps, default=0)
        self.total = total_steps
        self.started, self.spent = time.monotonic(), 0.0

    def due(self, step: int, model: Any = None) -> bool:
        if step not in self.steps:
            return False
        if step == self.last:  # the answers at the run's end
            return True
        if self.cost is None and model is not None:
            self.cost = self.estimate(model)
        if self.cost is None:  # nothing to estimate it with: this one measures it
            return True
        training = time.monotonic() - self.started - self.spent
        allowance = max(FREE_S, BUDGET * training / step * self.total)
        reserve = 0.0 if step == self.last else self.cost
        if self.spent + self.cost + reserve > allowance:
            self.skipped += 1
            logger.info("sample at step %d skipped: %.1f s of samples so far, %.1f s allowed", step, self.spent,
                        allowance)  # fmt: skip
            return False
        return True

    def estimate(self, model: Any) -> float | None:
        """What answering the records should cost: a forward pass of 8 tokens in eval mode (about one decoding step,
        which reads every weight once; the faster of two, the first may pay for warming up) × the new tokens of an
        answer × the records. None when it cannot be timed."""
        import torch

        was_training = model.training
        started = time.monotonic()
        times = []
        try:
            model.eval()
            ids = torch.zeros((1, 8), dtype=torch.long, device=next(model.parameters()).device)
            with torch.inference_mode():
                for _ in range(2):
                    begun = time.monotonic()
                    model(input_ids=ids)
                    times.append(time.monotonic() - begun)
        except Exception:  # noqa: BLE001 (an estimate only: the sample itself then measures its cost)
            logger.exception("the sample cost could not be estimated")
            return None
        finally:
            model.train(was_training)
            self.spent += time.monotonic() - started
        return min(times) * (self.max_new_tokens + 1) * len(self.records)

    def answer(self, model: Any, step: int) -> list[dict]:
        """The records answered by ``model`` now (in eval mode for the answers, back to training mode after)."""
        from .chat import GenerationSettings, generate
        from .merge import ExactMerge

        started = time.monotonic()
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens)
        was_training = model.training
        model.eval()
        # As the Chat tab does: the adapter merged into the base layers while it answers (fewer operations per
        # token), the base weights put back exactly after.
        merge = ExactMerge()
        adapter = getattr(model, "active_adapter", None)
        try:
            if isinstance(adapter, str):
                merge.merge(model, adapter)
            samples = []
            for record in self.records:
                messages, prompt, reference = split_last_reply(record)
                answer = generate(model, self.tokenizer, messages, settings, self.style)
                samples.append(asdict(Sample(step, record.row, prompt, reference, answer)))
        finally:
            merge.unmerge(model)
            model.train(was_training)
            self.cost = time.monotonic() - started
            self.spent += self.cost
            logger.info("sample at step %d took %.2f s", step, self.cost)
        return samples
