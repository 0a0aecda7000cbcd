"""The one place where a conversation becomes text, for training and for chat alike.

A conversation is rendered into ``Piece``s: stretches of text that are either prompt (never trained) or an
assistant reply (trained). ``masking.py`` turns the pieces into tokens; chat renders its prompt with the same
function, so a question asked in chat is tokenized exactly as in training.

Two styles:
- ``chat_template``: the tokenizer's own template. A reply is what the full render adds after the render of the
  conversation before it with ``add_generation_prompt=True`` (its end-of-turn token included).
- ``alpaca``: a built-in template for tokenizers without one; each reply is followed by the EOS token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .errors import TemplateError


class PromptStyle(StrEnum):
    CHAT_TEMPLATE = "chat_template"
    ALPACA = "alpaca"


@dataclass(frozen=True)
class Piece:
    text: str
    trained: bool
    end_of_turn: bool = False  # alpaca style: the tokenizer's EOS follows this piece


@dataclass(frozen=True)
class Rendered:
    style: PromptStyle
    pieces: tuple[Piece, ...]

    def text(self, eos_token: str = "") -> str:
        return "".join(p.text + (eos_token if p.end_of_turn else "") for p in self.pieces)


# Built-in template (Alpaca style). Kept short: every token of it is paid for in every example.
ALPACA_SYSTEM = "{system}\n\n"
ALPACA_USER = "### Instruction:\n{content}\n\n### Response:\n"
ALPACA_TURN_SEPARATOR = "\n\n"


def prompt_style(tokenizer: Any) -> PromptStyle:
    return PromptStyle.CHAT_TEMPLATE if getattr(tokenizer, "chat_template", None) else PromptStyle.ALPACA


def render(
    tokenizer: Any,
    messages: Sequence[Any],
    *,
    add_generation_prompt: bool = False,
    style: PromptStyle | str | None = None,
) -> Rendered:
    """Render ``messages`` (``data.Message`` or ``{"role", "content"}`` dicts) into prompt and reply pieces.

    With ``add_generation_prompt`` the conversation must end with a user turn, and the text ends where the
    model's reply would begin (what chat sends to the model).
    """
    msgs = [_as_dict(m) for m in messages]
    style = PromptStyle(style) if style else prompt_style(tokenizer)
    if style is PromptStyle.CHAT_TEMPLATE:
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError("no_template")
        return Rendered(style, tuple(_template_pieces(tokenizer, msgs, add_generation_prompt)))
    return Rendered(style, tuple(_alpaca_pieces(msgs, add_generation_prompt)))


def _as_dict(message: Any) -> dict[str, str]:
    if isinstance(message, dict):
        return {"role": message["role"], "content": message["content"]}
    return {"role": message.role, "content": message.content}


def _apply(tokenizer: Any, msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises its own errors (e.g. raise_exception() in the template)
        raise TemplateError("template_failed", detail=str(exc)) from exc


def _template_pieces(tokenizer: Any, msgs: list[dict[str, str]], add_generation_prompt: bool) -> list[Piece]:
    full = _apply(tokenizer, msgs, add_generation_prompt)
    pieces: list[Piece] = []
    cursor = 0
    for i, msg in enumerate(msgs):
        if msg["role"] != "assistant":
            continue
        prompt = _apply(tokenizer, msgs[:i], True)
        with_reply = _apply(tokenizer, msgs[: i + 1], False)
        if not (with_reply.startswith(prompt) and full.startswith(with_reply) and len(prompt) >= cursor):
            raise TemplateError("template_not_prefix", turn=i + 1)
        pieces.append(Piece(full[cursor : len(prompt)], trained=False))
        pieces.append(Piece(full[len(prompt) : len(with_reply)], trained=True))
        cursor = len(with_reply)
    if cursor < len(full):
        pieces.append(Piece(full[cursor:], trained=False))
    return [p for p in pieces if p.text]


def _alpaca_pieces(msgs: list[dict[str, str]], add_generation_prompt: bool) -> list[Piece]:
    pieces: list[Piece] = []
    prompt = ""
    for msg in msgs:
        if msg["role"] == "system":
            prompt += ALPACA_SYSTEM.format(system=msg["content"])
        elif msg["role"] == "user":
            prompt += (ALPACA_TURN_SEPARATOR if pieces else "") + ALPACA_USER.format(content=msg["content"])
        else:
            pieces += [Piece(prompt, trained=False), Piece(msg["content"], trained=True, end_of_turn=True)]
            prompt = ""
    if prompt and add_generation_prompt:
        pieces.append(Piece(prompt, trained=False))
    return [p for p in pieces if p.text]
