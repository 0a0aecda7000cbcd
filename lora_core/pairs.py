"""Preference pairs: a prompt, a chosen answer and a rejected one (docs/contracts.md, "Preference pairs").

Three shapes of row are read, each with an optional top-level ``system``:
- ``{"prompt": str, "chosen": str, "rejected": str}`` (TRL's standard form: the prompt is the user's turn);
- ``{"prompt": [turns], "chosen": [one assistant turn], "rejected": [...]}`` (TRL's conversational form, OpenAI
  ``role`` / ``content`` turns; an answer may also be a single turn or a string);
- ``{"conversations": [turns], "chosen": {"from": "gpt", "value": ...}, "rejected": {...}}`` (LLaMA-Factory's
  ShareGPT pairs).
A prompt's turns alternate user / assistant and end on the user's turn. Every problem is a ``RowProblem`` naming
the row and the field, as for instruction rows.

Encoding: the prompt is tokenized once, as chat sends it (``masking.prompt_ids``), and each answer is what the
whole conversation (prompt + answer) adds after it, through the answer's end-of-turn token: exactly the tokens
trained in an instruction row's reply. Only the answers are trained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .data import Message, Problems, conversation_messages, text_field, turn_role, type_name
from .errors import TemplateError
from .masking import IGNORE_INDEX, Encoded, EncodeStats, encode_messages, prompt_ids, special_prefix, trained_spans
from .prompts import PromptStyle

BRANCHES = ("chosen", "rejected")
# What a preference run plots beside its loss, and the key TRL's DPOTrainer (or preference_trainer.orpo_loss) logs
# it under: the reward margin and the share of pairs preferred (DPO: relative to the base), ORPO's log odds ratio.
PLOTTED = {"margin": "rewards/margins", "accuracy": "rewards/accuracies", "log_odds": "log_odds"}


def pair_messages(row: dict, problems: Problems) -> tuple[tuple[Message, ...], str] | None:
    """The pair's prompt and chosen answer as messages, and its rejected answer; None with problems added."""
    before = len(problems.found)
    if "conversations" in row:  # LLaMA-Factory's ShareGPT pairs
        prompt = conversation_messages(row, "sharegpt", problems, last="user")
    elif isinstance(row.get("prompt"), list):  # TRL's conversational form
        prompt = conversation_messages(row, "messages", problems, list_key="prompt", system_field=True, last="user")
    else:  # TRL's standard form
        system = text_field(problems, row, "system", "system", required=False)
        user = text_field(problems, row, "prompt", "prompt", required=True)
        prompt = (*([Message("system", system)] if system else []), Message("user", user)) if user else None
    chosen, rejected = (answer_text(row, key, problems) for key in BRANCHES)
    if chosen is not None and rejected is not None and chosen.strip() == rejected.strip():
        problems.add("rejected", "same_answers")
    if len(problems.found) > before or prompt is None or chosen is None or rejected is None:
        return None
    return (*prompt, Message("assistant", chosen)), rejected


def answer_text(row: dict, key: str, problems: Problems) -> str | None:
    """The text of one answer: a string, one assistant turn (OpenAI or ShareGPT keys), or a list of one turn."""
    value = row.get(key)
    field = key
    if isinstance(value, list):
        if len(value) != 1:
            problems.add(key, "reply_turns", count=len(value))
            return None
        value, field = value[0], f"{key}[0]"
    if isinstance(value, dict):
        role_key, text_key = ("from", "value") if "from" in value or "value" in value else ("role", "content")
        role = turn_role(problems, value, role_key, f"{field}.{role_key}")
        text = text_field(problems, value, text_key, f"{field}.{text_key}", required=True)
        if role is not None and role != "assistant":
            problems.add(f"{field}.{role_key}", "reply_role", found=role)
            return None
        return text if role is not None else None
    if key in row and value is not None and not isinstance(value, str):
        problems.add(key, "not_reply", found=type_name(value))
        return None
    return text_field(problems, row, key, key, required=True)


# --- encoding ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def length(self) -> int:
        """The longer of the two sequences (prompt + answer): what a batch is padded to."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def encode_pair(tokenizer: Any, messages: Sequence[Message], rejected: str,
                style: PromptStyle | str | None = None) -> EncodedPair:  # fmt: skip
    """A pair's prompt ids (as chat sends them) and the ids each answer adds after them, through its end-of-turn."""
    prompt = list(messages[:-1])
    ids = prompt_ids(tokenizer, prompt, style)
    branches = [_answer_ids(tokenizer, prompt, text, ids, style) for text in (messages[-1].content, rejected)]
    return EncodedPair(ids, *branches)


def _answer_ids(tokenizer: Any, prompt: list[Message], text: str, ids: list[int], style: Any) -> list[int]:
    whole = encode_messages(tokenizer, [*prompt, Message("assistant", text)], style)
    if whole.input_ids[: len(ids)] != ids:  # the template renders the prompt differently with an answer after it
        raise TemplateError("template_token_prefix")
    trained = [i for i, label in enumerate(whole.labels) if label != IGNORE_INDEX and i >= len(ids)]
    end = trained[-1] + 1 if trained else len(whole.input_ids)
    return whole.input_ids[len(ids) : end]


def fit_pair(pair: EncodedPair, max_length: int, keep_prefix: int = 0) -> EncodedPair | None:
    """Fit both sequences into ``max_length`` tokens: the prompt loses its oldest tokens after the first
    ``keep_prefix`` (BOS), keeping at least half the window when it is that long; answers still too long lose their
    ends. None when no prompt token would be left."""
    prompt, chosen, rejected = pair.prompt_ids, pair.chosen_ids, pair.rejected_ids
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= max_length:
        return pair
    room = max(max_length - longest, min(len(prompt), max_length // 2))
    if room <= keep_prefix:
        return None
    prompt = prompt[:keep_prefix] + prompt[len(prompt) - (room - keep_prefix) :]
    rest = max_length - len(prompt)
    return EncodedPair(prompt, chosen[:rest], rejected[:rest])


def encode_pairs(
    records: Iterable[Any], tokenizer: Any, max_length: int, style: PromptStyle | str | None = None
) -> tuple[list[EncodedPair], list[int], EncodeStats]:
    """Encode the pair ``data.Record``s; returns the kept pairs, their row numbers and the statistics."""
    stats = EncodeStats()
    keep_prefix = len(special_prefix(tokenizer))
    kept: list[EncodedPair] = []
    rows: list[int] = []
    for record in records:
        stats.total += 1
        full = encode_pair(tokenizer, record.messages, record.rejected, style)
        stats.lengths.append(full.length)
        pair = fit_pair(full, max_length, keep_prefix)
        if pair is None:
            stats.dropped["nothing_to_train"] += 1
            stats.dropped_rows.append(record.row)
            continue
        stats.truncated += pair is not full
        kept.append(pair)
        rows.append(record.row)
    stats.kept = len(kept)
    return kept, rows, stats


def to_pair_dataset(pairs: Sequence[EncodedPair], rows: Sequence[int]) -> Any:
    """The encoded pairs as a ``datasets.Dataset`` (the columns TRL's preference collator reads)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt_ids": [p.prompt_ids for p in pairs],
            "chosen_ids": [p.chosen_ids for p in pairs],
            "rejected_ids": [p.rejected_ids for p in pairs],
            "length": [p.length for p in pairs],
            "row": list(rows),
        }
    )


def pair_spans(tokenizer: Any, pair: EncodedPair) -> dict[str, list[tuple[str, bool]]]:
    """The pair as (text, trained) runs: the prompt once, untrained, and each answer, trained."""
    untrained = Encoded(pair.prompt_ids, [IGNORE_INDEX] * len(pair.prompt_ids))
    return {
        "prompt": trained_spans(tokenizer, untrained) if pair.prompt_ids else [],
        **{b: trained_spans(tokenizer, Encoded(ids, list(ids))) if ids else [] for b, ids in
           zip(BRANCHES, (pair.chosen_ids, pair.rejected_ids), strict=True)},
    }  # fmt: skip
