"""What every tab shares: translated labels that follow the language switch, and the one place where core
errors become messages for the user."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from lora_core.errors import SimpleLoraError

from .i18n import DEFAULT_LANG, LANGS, error_text, t

__all__ = ["Labels", "error_text", "user_errors"]

logger = logging.getLogger(__name__)


class Labels:
    """Components whose texts come from the translation table; ``updates(lang)`` re-labels them all."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, dict[str, str | list[str]]]] = []

    def add(self, component: Any, **attrs: str | list[str]) -> Any:
        """Register ``component``; its ``attrs`` (label, value, headers...) are translation keys."""
        for attr, key in attrs.items():  # the first render, before the browser's language is known
            setattr(component, attr, _translate(key, DEFAULT_LANG))
        self.items.append((component, attrs))
        return component

    @property
    def components(self) -> list[Any]:
        return [c for c, _ in self.items]

    def updates(self, lang: str) -> list[Any]:
        return [gr.update(**{attr: _translate(key, lang) for attr, key in attrs.items()}) for _, attrs in self.items]


def _translate(key: str | list[str], lang: str) -> str | list[str]:
    return [t(k, lang) for k in key] if isinstance(key, list) else t(key, lang)


def user_errors(fn: Callable) -> Callable:
    """Turn a core error into a readable gr.Error (never a stack trace), titled in the user's language. The
    handler's first input is the lang. A generator handler stays a generator (Gradio streams only those)."""

    def translated(exc: Exception, args: tuple) -> gr.Error:
        lang = args[0] if args and args[0] in LANGS else DEFAULT_LANG
        if isinstance(exc, SimpleLoraError):
            remember_reason(error_text(exc, lang))
            text = html.escape(error_text(exc, lang), quote=False)  # a toast shows HTML: user text must be text
            return gr.Error(text, title=t("error_title", lang), print_exception=False)
        if exc.title == "Error":  # a gr.Error raised by the handler itself: its title in the user's language too
            exc.title = t("error_title", lang)
        remember_reason(exc.message)
        exc.message = html.escape(exc.message, quote=False)
        return exc

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except (SimpleLoraError, gr.Error) as exc:
                raise translated(exc, args) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SimpleLoraError, gr.Error) as exc:
            raise translated(exc, args) from exc

    return wrapper


# The last refusal of each page (by Gradio's session hash), for the page to show next to the control that failed
# (``keep_reason``): a toast goes after a few seconds, the reason stays until the next action writes there.
_REASONS: OrderedDict[str, str] = OrderedDict()
_REASONS_LOCK = threading.Lock()
MAX_REASONS = 2000


def _page() -> str | None:
    from gradio.context import LocalContext

    return getattr(LocalContext.request.get(None), "session_hash", None)


def remember_reason(text: str) -> None:
    page = _page()
    if page is None:
        return
    with _REASONS_LOCK:
        _REASONS.pop(page, None)
        _REASONS[page] = text
        while len(_REASONS) > MAX_REASONS:
            _REASONS.popitem(last=False)


def last_reason() -> str:
    """The page's last refusal, as plain text ("" when there is none)."""
    page = _page()
    with _REASONS_LOCK:
        return _REASONS.get(page, "") if page is not None else ""


def reason_markdown(text: str) -> str:
    return f"⚠️ {md(text)}" if text else ""


def keep_reason(event: Any, markdown: list | tuple = (), text: list | tuple = ()) -> None:
    """When ``event`` fails, its reason is written into the ``markdown`` components (a status line next to the
    control) and the ``text`` components (in place of an output), where it stays until the next action."""

    def show() -> Any:
        reason = last_reason()
        values = [reason_markdown(reason)] * len(markdown) + [reason] * len(text)
        return values[0] if len(values) == 1 else tuple(values)

    event.failure(show, None, [*markdown, *text], api_visibility="private", queue=False, show_progress="hidden")


# What can start formatting, a link or an image inside a line: backslash, backtick, *, ~, brackets, !, |, a colon
# (a bare URL becomes a link), and an underscore at the edge of a word (inside one, as in file_name, it is text).
_MARKDOWN_SPECIALS = re.compile(r"([\\`*~\[\]!|:]|(?<!\w)_|_(?!\w))")


def md(text: object) -> str:
    """Text a user (or a file, a model, another visitor) chose, made safe to put inside a line of Markdown: shown
    exactly as it is, never as a link, an image, HTML or formatting. Line breaks become spaces."""
    flat = " ".join(str(text).splitlines())
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(flat, quote=False))


def stored_items_section(labels: Labels, lang: Any, kind: str, items: Callable, delete: Callable,
                         more: Callable | None = None) -> Any:  # fmt: skip
    """An accordion listing what a workspace has stored of one ``kind`` ("uploads", "merged") with their sizes,
    and a Delete button behind a confirmation box. ``items()`` lists them (``storage.Stored``), ``delete(name)``
    removes one; ``more(chosen)``, if given, adds controls for the chosen item below. Returns the refresh event's
    (fn, inputs, outputs), for a tab to call when it is opened."""
    from lora_core.errors import human_size

    def choices() -> Any:
        return gr.update(choices=[(f"{s.name} ({human_size(s.size_bytes)})", s.name) for s in items()], value=None)

    @user_errors
    def on_delete(lang: str, name: str | None, confirmed: bool) -> tuple:
        if not name:
            raise gr.Error(t("choose_stored", lang), print_exception=False)
        if not confirmed:
            raise gr.Error(t("confirm_stored", lang), print_exception=False)
        delete(name)
        return t("stored_deleted", lang, name=md(name)), choices(), False

    with labels.add(gr.Accordion(open=False), label=f"{kind}_header"):
        labels.add(gr.Markdown(), value=f"{kind}_intro")
        with gr.Row():
            chosen = labels.add(gr.Dropdown([], scale=3), label=f"{kind}_list")
            confirm = labels.add(gr.Checkbox(False, scale=1), label="confirm_stored_box")
            button = labels.add(gr.Button(variant="stop", scale=1), value="delete")
        status = gr.Markdown()
        if more is not None:
            more(chosen)
    keep_reason(button.click(on_delete, [lang, chosen, confirm], [status, chosen, confirm], api_name=f"delete_{kind}",
                             show_progress_on=status), markdown=[status])  # fmt: skip
    chosen.input(lambda: False, None, confirm, api_visibility="private", queue=False)
    return choices, None, chosen


def Number(*args: Any, **kwargs: Any) -> gr.Number:  # noqa: N802 (a component, named like one)
    """A ``gr.Number`` whose value, when an API client sends something that is not a number (``"abc"``, a number
    too large to round), reaches the handler as it was sent, so that the handler refuses it by the field's name in
    one sentence instead of Gradio's "an error occurred". (Not a subclass: Gradio writes a stub file for each.)"""
    number = gr.Number(*args, **kwargs)
    strict = number.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return strict(payload)
        except (TypeError, ValueError, OverflowError):
            return payload

    number.preprocess = preprocess
    return number


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not one (text, a bool, None, infinity, NaN)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def whole_number(value: Any, low: int, high: int) -> bool:
    """``value`` is a whole number from ``low`` to ``high`` (a bool, text or infinity is not)."""
    number = finite_number(value)
    return number is not None and number.is_integer() and low <= number <= high


def base_dropdown(choices: list[str], **kwargs: Any) -> gr.Dropdown:
    """The base model choice. It takes names the page does not list yet (a model downloaded or imported since the
    page was built, named by an API client): the handlers check every name against Models/LLM/ themselves."""
    return gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True, **kwargs)
