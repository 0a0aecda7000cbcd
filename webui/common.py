"""What every tab shares: translated labels that follow the language switch, and the one place where core
errors become messages for the user."""

from __future__ import annotations

import functools
import inspect
import logging
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
            return gr.Error(error_text(exc, lang), title=t("error_title", lang), print_exception=False)
        if exc.title == "Error":  # a gr.Error raised by the handler itself: its title in the user's language too
            exc.title = t("error_title", lang)
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
