"""Conversations -> ``input_ids`` + ``labels`` with the loss on assistant replies only.

Rules (docs/contracts.md, "Masking rules"):
- labels are ``IGNORE_INDEX`` everywhere but assistant tokens; every assistant turn is trained;
- a reply's end-of-turn / EOS token is trained, so the model learns to stop;
- padding is masked by position in ``collate``, never by token id (pad may equal eos);
- too long: the oldest tokens go first; an example left with no trained token is dropped and counted;
- labels are not shifted: the model shifts them itself.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import TemplateError
from .prompts import PromptStyle, Rendered, render

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class EncodeStats:
    total: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    dropped_rows: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # untruncated length of every example, for the histogram

    def to_json(self) -> dict:
        return {
            "total": self.total,
            "kept": self.kept,
            "truncated": self.truncated,
            "dropped": dict(self.dropped),
            "dropped_rows": self.dropped_rows,
        }


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before any text at inference (usually BOS, often nothing)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start])
    return []


def encode_rendered(tokenizer: Any, rendered: Rendered) -> Encoded:
    """Tokens and labels of rendered pieces, without truncation."""
    if rendered.style is PromptStyle.CHAT_TEMPLATE:
        ids, labels = _encode_template(tokenizer, rendered)
    else:
        ids, labels = _encode_alpaca(tokenizer, rendered)
    prefix = special_prefix(tokenizer)
    if prefix and ids[: len(prefix)] != prefix:
        ids, labels = prefix + ids, [IGNORE_INDEX] * len(prefix) + labels
    return Encoded(ids, labels)


def _tokenize(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _encode_template(tokenizer: Any, rendered: Rendered) -> tuple[list[int], list[int]]:
    # The template's text is tokenized as a whole (as at inference); each piece boundary must then fall on a
    # token boundary, i.e. the tokens of the text before it must be a prefix of the whole text's tokens.
    text = rendered.text()
    ids = _tokenize(tokenizer, text)
    labels = [IGNORE_INDEX] * len(ids)
    offset, start_token = 0, 0
    for piece in rendered.pieces:
        offset += len(piece.text)
        end_token = len(ids)
        if offset < len(text):
            head = _tokenize(tokenizer, text[:offset])
            if ids[: len(head)] != head:
                raise TemplateError("template_token_prefix")
            end_token = len(head)
        if piece.trained:
            labels[start_token:end_token] = ids[start_token:end_token]
        start_token = end_token
    return ids, labels


def _encode_alpaca(tokenizer: Any, rendered: Rendered) -> tuple[list[int], list[int]]:
    # Pieces are tokenized one by one: at inference the prompt is tokenized alone and the reply is generated
    # after it, so a reply's first token must never merge with the prompt's last.
    eos = tokenizer.eos_token_id
    if eos is None and any(p.end_of_turn for p in rendered.pieces):
        raise TemplateError("no_eos")
    ids: list[int] = []
    labels: list[int] = []
    for piece in rendered.pieces:
        piece_ids = _tokenize(tokenizer, piece.text) + ([eos] if piece.end_of_turn else [])
        ids += piece_ids
        labels += piece_ids if piece.trained else [IGNORE_INDEX] * len(piece_ids)
    return ids, labels


def encode_messages(tokenizer: Any, messages: Sequence[Any], style: PromptStyle | str | None = None) -> Encoded:
    return encode_rendered(tokenizer, render(tokenizer, messages, style=style))


def prompt_ids(tokenizer: Any, messages: Sequence[Any], style: PromptStyle | str | None = None) -> list[int]:
    """What chat sends to the model: the conversation so far, ending where the reply begins."""
    return encode_rendered(tokenizer, render(tokenizer, messages, add_generation_prompt=True, style=style)).input_ids


def truncate(encoded: Encoded, max_length: int, keep_prefix: int = 0) -> Encoded | None:
    """Fit ``encoded`` into ``max_length`` tokens by cutting the oldest tokens after the first ``keep_prefix``.

    A reply whose prompt was cut away entirely (the window starts inside or at it) is kept as context only.
    Returns None when nothing is left to train.
    """
    ids, labels = encoded.input_ids, encoded.labels
    if len(ids) > max_length:
        cut = len(ids) - max_length
        if max_length <= keep_prefix:
            return None
        ids = ids[:keep_prefix] + ids[keep_prefix + cut :]
        labels = labels[:keep_prefix] + labels[keep_prefix + cut :]
        labels = _mask_leading_reply(labels, keep_prefix)
    result = Encoded(list(ids), list(labels))
    return result if result.trained_tokens else None


def _mask_leading_reply(labels: list[int], start: int) -> list[int]:
    labels = list(labels)
    i = start
    while i < len(labels) and labels[i] != IGNORE_INDEX:
        labels[i] = IGNORE_INDEX
        i += 1
    return labels


def encode_records(
    records: Iterable[Any],
    tokenizer: Any,
    max_length: int,
    style: PromptStyle | str | None = None,
) -> tuple[list[Encoded], list[int], EncodeStats]:
    """Encode ``data.Record``s; returns the kept examples, their row numbers and the statistics."""
    stats = EncodeStats()
    keep_prefix = len(special_prefix(tokenizer))
    kept: list[Encoded] = []
    rows: list[int] = []
    for record in records:
        stats.total += 1
        full = encode_messages(tokenizer, record.messages, style)
        stats.lengths.append(len(full.input_ids))
        example = truncate(full, max_length, keep_prefix)
        if example is None:
            stats.dropped["nothing_to_train"] += 1
            stats.dropped_rows.append(record.row)
            continue
        stats.truncated += len(example.input_ids) < len(full.input_ids)
        kept.append(example)
        rows.append(record.row)
    stats.kept = len(kept)
    if stats.dropped:
        logger.info("dropped %d of %d examples with nothing left to train", sum(stats.dropped.values()), stats.total)
    return kept, rows, stats


def to_dataset(examples: Sequence[Encoded], rows: Sequence[int]) -> Any:
    """The encoded rows as a ``datasets.Dataset`` (what the trainer consumes)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "input_ids": [e.input_ids for e in examples],
            "labels": [e.labels for e in examples],
            "length": [len(e.input_ids) for e in examples],  # for length-grouped batches
            "row": list(rows),
        }
    )


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def collate(features: Sequence[dict], pad_id: int, pad_to_multiple_of: int | None = None) -> dict:
    """Right-pad a batch. Padding is masked by position (attention 0, label IGNORE_INDEX), whatever its id."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": [], "labels": [], "attention_mask": []}
    for f in features:
        n, pad = len(f["input_ids"]), longest - len(f["input_ids"])
        batch["input_ids"].append(list(f["input_ids"]) + [pad_id] * pad)
        batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        batch["attention_mask"].append([1] * n + [0] * pad)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def trained_spans(tokenizer: Any, encoded: Encoded) -> list[tuple[str, bool]]:
    """The example as (text, trained) runs, for showing which tokens will be trained."""
    runs: list[tuple[str, bool]] = []
    start = 0
    ids, labels = encoded.input_ids, encoded.labels
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (labels[i] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            runs.append((tokenizer.decode(ids[start:i]), labels[start] != IGNORE_INDEX))
            start = i
    return runs


def split_dataset(dataset: Any, val_split: float, seed: int) -> tuple[Any, Any]:
    """A seeded random share ``val_split`` of the examples held out for the eval loss (None when none)."""
    import random

    n = len(dataset)
    n_eval = round(n * val_split) if val_split > 0 else 0
    if n_eval == 0 or n - n_eval < 1:
        return dataset, None
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return dataset.select(sorted(order[n_eval:])), dataset.select(sorted(order[:n_eval]))
