"""A conversation made to fit a model's context: what chat sends, and what it refuses.

A message longer than ``MAX_MESSAGE_CHARS`` is refused before it is tokenized; a history is cut from its oldest
user / assistant turns (the system prompt stays) until the prompt leaves room for a reply; a message that cannot
fit even alone is refused with its token count and the limit; the new tokens are capped by what remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ChatError

MAX_MESSAGE_CHARS = 20_000  # one message; longer ones are refused before they are tokenized
MAX_CONVERSATION_CHARS = 200_000  # a whole history; its oldest turns are dropped past it
MIN_REPLY_TOKENS = 16  # room a prompt must leave in the context for the reply


@dataclass(frozen=True)
class Fitted:
    """A conversation made to fit the model's context: what is sent, how many old turns were left out, and how
    many new tokens there is room for."""

    messages: list[dict]
    dropped_turns: int
    prompt_tokens: int
    max_new_tokens: int


def context_length(model: Any, tokenizer: Any) -> int:
    """The most tokens the model reads at once (prompt and reply together)."""
    limits = [getattr(getattr(model, "config", None), "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]  # fmt: skip
    return min((int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7), default=2048)


def fit_to_context(tokenizer: Any, messages: list[dict], style: str | None, context: int, max_new: int) -> Fitted:
    """Drop the oldest user / assistant turns until the prompt leaves room for a reply; refuse a message that is
    too long by itself (in characters, or in tokens with only the system prompt beside it)."""
    from .masking import prompt_ids

    for message in messages:
        if len(message["content"]) > MAX_MESSAGE_CHARS:
            raise ChatError("message_too_long", chars=len(message["content"]), max=MAX_MESSAGE_CHARS)
    head = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(head) :]
    dropped = 0
    while len(turns) > 1 and sum(len(m["content"]) for m in turns) > MAX_CONVERSATION_CHARS:
        turns, dropped = turns[2:], dropped + 2
    while True:
        tokens = len(prompt_ids(tokenizer, head + turns, style))
        room = context - tokens
        if room >= min(max_new, MIN_REPLY_TOKENS):
            return Fitted(head + turns, dropped, tokens, min(max_new, room))
        if len(turns) <= 1:
            raise ChatError("prompt_too_long", tokens=tokens, limit=context - min(max_new, MIN_REPLY_TOKENS))
        turns, dropped = turns[2:], dropped + 2
