"""The UI's translation tables, one module per language, and the helpers that use them.

Each language module (``en.py``, ``zh.py``) holds ``NAME`` (how the language switch shows it), ``TEXT`` (the UI's
texts by key) and ``ERRORS`` (the core's errors by code, with exactly the params of ``lora_core.errors.ERRORS``;
English uses the core's own sentences). A third language is one new module and one line in ``LANGUAGES``.
"""

from __future__ import annotations

from typing import Any

from lora_core.data import ROW_MESSAGES, RowProblem
from lora_core.errors import ERRORS as CORE_ERRORS
from lora_core.errors import SimpleLoraError, render

from . import en, zh

LANGUAGES = {"zh": zh, "en": en}
LANGS = tuple(LANGUAGES)
DEFAULT_LANG = "en"

# Every key with its text in each language that has one: {key: {lang: text}}.
TEXT: dict[str, dict[str, str]] = {}
for _lang, _module in LANGUAGES.items():
    for _key, _text in _module.TEXT.items():
        TEXT.setdefault(_key, {})[_lang] = _text


def errors_of(lang: str) -> dict[str, str]:
    """The core's error texts in ``lang``, by code."""
    return getattr(LANGUAGES[lang], "ERRORS", None) or CORE_ERRORS


def t(key: str, lang: str, **params: Any) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get(DEFAULT_LANG, key)
    return text.format(**params) if params else text


def error_message(code: str, params: dict[str, Any], lang: str, fallback: str) -> str:
    """A core error (by code and params) in ``lang``; ``fallback`` (the core's sentence) when the code is unknown
    to that language or its params do not fit (an old run record)."""
    template = errors_of(normalize_lang(lang)).get(code)
    if template is None:
        return fallback
    try:
        return render(template, params)
    except (KeyError, IndexError, ValueError):
        return fallback


def error_text(exc: SimpleLoraError, lang: str) -> str:
    """A core error in the user's language."""
    return error_message(exc.code, exc.params, lang, exc.message)


def normalize_lang(value: str | None) -> str:
    """A browser language ('zh-CN', 'en-US', ...) or a UI choice to one of LANGS."""
    value = (value or "").lower()
    return next((lang for lang in LANGS if value.startswith(lang)), DEFAULT_LANG)


def problems_of(lang: str) -> dict[str, str]:
    """The row problems' sentences in ``lang``, by template."""
    return getattr(LANGUAGES[lang], "PROBLEMS", None) or ROW_MESSAGES


def problem_text(problem: RowProblem, lang: str) -> str:
    """A row problem in ``lang``, with its row, field, and what was found and expected; the core's sentence when a
    template is unknown or its params do not fit."""
    template = problems_of(normalize_lang(lang)).get(problem.template)
    try:
        return template.format(**problem.params) if template else problem.message
    except (KeyError, IndexError, ValueError):
        return problem.message
