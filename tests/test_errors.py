"""The error registry: every error the core (or the UI) raises has a registered code, is raised with exactly the
params of its sentence, and reads in every language of the UI with exactly those params."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from lora_core import errors
from lora_core.errors import ERRORS, AdapterError, SimpleLoraError, placeholders, render
from webui.i18n import LANGUAGES, error_message, error_text, errors_of

ROOT = Path(__file__).resolve().parent.parent
ERROR_CLASSES = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, Exception)}


def raise_sites() -> list[tuple[str, str | None, set[str], bool]]:
    """(where, code, keyword params, uses **) of every construction of a SimpleLoraError class in the app's code."""
    sites = []
    for path in [*(ROOT / "lora_core").rglob("*.py"), *(ROOT / "webui").rglob("*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in ERROR_CLASSES - {"SimpleLoraError"} or name == "Exception":
                continue
            first = node.args[0] if node.args else None
            code = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            params = {k.arg for k in node.keywords if k.arg}
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            sites.append((where, code, params, any(k.arg is None for k in node.keywords)))
    return sites


def test_every_raise_site_passes_exactly_the_params_of_a_registered_code() -> None:
    sites = raise_sites()
    assert len(sites) > 60  # the scan finds them
    for where, code, params, star in sites:
        assert code in ERRORS, f"{where}: code {code!r} is not a literal registered in lora_core/errors.py"
        assert not star, f"{where}: params must be named, not **spread"
        assert params == placeholders(ERRORS[code]), f"{where}: {code} takes {sorted(placeholders(ERRORS[code]))}"


def test_every_registered_code_is_raised_somewhere() -> None:
    raised = {code for _, code, _, _ in raise_sites()}
    assert sorted(set(ERRORS) - raised) == []


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_every_code_reads_in_every_language_with_exactly_its_params(lang) -> None:
    texts = errors_of(lang)
    assert sorted(set(ERRORS) - set(texts)) == [], f"codes without a {lang} text"
    assert sorted(set(texts) - set(ERRORS)) == [], f"{lang} texts of codes that do not exist"
    for code, template in ERRORS.items():
        assert placeholders(texts[code]) == placeholders(template), (lang, code)
        specs = {f: s for _, f, s, _ in string.Formatter().parse(template) if f}
        assert {f: s for _, f, s, _ in string.Formatter().parse(texts[code]) if f} == specs, (lang, code)


def test_an_error_refuses_wrong_params_and_unknown_codes() -> None:
    with pytest.raises(TypeError, match="takes params"):
        AdapterError("adapter_missing", path="x")
    with pytest.raises(TypeError, match="unknown error code"):
        SimpleLoraError("no_such_code")
    err = AdapterError("adapter_missing", name="x")
    assert err.code == "adapter_missing" and err.params == {"name": "x"} and str(err) == "There is no adapter named x."


def test_lists_and_sizes_read_naturally() -> None:
    params = {"files": ["a.bin", "b.bin"], "size": 3 * 1024**2}
    assert render("{files} / {size:bytes}", params) == "a.bin, b.bin / 3.0 MB"


def test_the_base_mismatch_is_chinese_in_chinese_with_both_names() -> None:
    err = AdapterError("adapter_base_mismatch", adapter="my_task_1", trained_on="Qwen", base="Llama")
    assert error_text(err, "zh") == "适配器 my_task_1 是在基座模型 Qwen 上训练的，不能用于基座模型 Llama。"
    assert error_text(err, "en") == err.message


def test_every_core_error_is_chinese_in_chinese() -> None:
    """Each code rendered with sample params: the Chinese text is not the English one and has Chinese in it."""
    for code, template in ERRORS.items():
        specs = {f: s for _, f, s, _ in string.Formatter().parse(template) if f}
        params = {name: 1024 if specs[name] == "bytes" else f"<{name}>" for name in placeholders(template)}
        zh = error_message(code, params, "zh", "fallback")
        assert zh != "fallback" and zh != render(template, params), code
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh), code
