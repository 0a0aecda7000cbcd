"""Tab 3: the adapters in Models/LoRA/ (scan, verify, activate / deactivate, quick test, merge, delete)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from lora_core import adapters, paths
from lora_core.inference import GenerationSettings, base_for_adapter, engine, merge_adapter

from .common import Labels, user_errors
from .i18n import t

COLUMNS = ["col_adapter_name", "col_valid", "col_status", "col_base", "col_rank", "col_targets", "col_size",
           "col_date", "col_train_loss", "col_eval_loss", "col_reason"]  # fmt: skip


def _loss(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else ""


def adapter_table(lang: str) -> tuple[pd.DataFrame, list[str]]:
    """Every folder under Models/LoRA/ (valid or not, with the reason), and the names of the usable ones."""
    infos = adapters.scan()
    rows = []
    for a in infos:
        validity = t("external" if a.external else "valid", lang) if a.valid else t("invalid", lang)
        rows.append([
            a.name, validity, t(f"state_{a.status}", lang) if a.status else "", paths_name(a.base_model), a.rank or "",
            ", ".join(a.target_modules), f"{a.size_bytes / 1024**2:.1f} MB", a.created.replace("T", " "),
            _loss(a.final_train_loss), _loss(a.final_eval_loss), a.reason,
        ])  # fmt: skip
    frame = pd.DataFrame(rows, columns=[t(c, lang) for c in COLUMNS])
    return frame, [a.name for a in infos if a.valid]


def paths_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if path else ""


def engine_status(lang: str) -> str:
    status = engine().status()
    if not status["base"]:
        return t("engine_empty", lang)
    adapter = status["active"] or t("no_adapter", lang)
    return t("engine_status", lang, base=paths_name(status["base"]), adapter=adapter)


@user_errors
def on_scan(lang: str, current: str | None) -> tuple[Any, Any, str]:
    frame, names = adapter_table(lang)
    value = current if current in names else (names[0] if names else None)
    return frame, gr.update(choices=names, value=value), t("scanned", lang, n=len(frame), valid=len(names))


def activate_by_name(name: str | None) -> None:
    """Load the adapter's own base model if the chat holds another, then switch to the adapter."""
    if not name:
        raise adapters.AdapterError("Choose an adapter first.", code="adapter_missing", name="")
    path = adapters.adapter_path(name)
    chat = engine()
    base = base_for_adapter(path)
    if base is not None and chat.base != base:
        chat.load_base(base)
    elif base is None and chat.base is None:
        raise adapters.AdapterError(
            f"The base model of {name} is not in Models/LLM/; load its base model in the Chat tab first.",
            code="adapter_base_unknown",
            name=name,
        )
    chat.activate(path)


@user_errors
def on_activate(lang: str, name: str | None) -> str:
    activate_by_name(name)
    return engine_status(lang)


@user_errors
def on_deactivate(lang: str) -> str:
    engine().deactivate()
    return engine_status(lang)


@user_errors
def on_quick_test(lang: str, name: str | None, prompt: str) -> str:
    if not prompt.strip():
        return ""
    if name and engine().active != name:
        activate_by_name(name)
    return engine().generate([{"role": "user", "content": prompt}], GenerationSettings(max_new_tokens=128))


@user_errors
def on_merge(lang: str, name: str | None, out_name: str) -> str:
    path = adapters.adapter_path(name or "")
    folder = paths.safe_name(out_name or f"{name}-merged")
    out = paths.inside(paths.llm_dir(), folder)
    merged = merge_adapter(path, out)
    return t("merged", lang, path=str(merged))


@user_errors
def on_delete(lang: str, name: str | None, confirmed: bool) -> tuple[str, Any, Any, Any]:
    if not confirmed:
        raise gr.Error(t("confirm_first", lang))
    adapters.adapter_path(name or "")
    engine().remove(name)
    adapters.delete_adapter(name)
    frame, names = adapter_table(lang)
    return t("deleted", lang, name=name), frame, gr.update(choices=names, value=names[0] if names else None), False


def build(labels: Labels, lang: gr.State) -> dict[str, Any]:
    labels.add(gr.Markdown(), value="models_intro")
    with gr.Row():
        scan = labels.add(gr.Button(variant="secondary", scale=1), value="scan")
        scan_status = gr.Markdown()
    table = labels.add(gr.Dataframe(interactive=False, wrap=True), label="adapters")
    with gr.Row():
        choice = labels.add(gr.Dropdown([], allow_custom_value=True, scale=3), label="adapter")
        activate = labels.add(gr.Button(variant="primary", scale=1), value="activate")
        deactivate = labels.add(gr.Button(scale=1), value="deactivate")
    status = gr.Markdown()
    with gr.Row():
        prompt = labels.add(gr.Textbox(lines=2, scale=3), label="quick_test")
        test_btn = labels.add(gr.Button(scale=1), value="send")
    reply = labels.add(gr.Textbox(lines=3, interactive=False), label="reply")
    with labels.add(gr.Accordion(open=False), label="merge_header"):
        labels.add(gr.Markdown(), value="merge_intro")
        with gr.Row():
            merge_name = labels.add(gr.Textbox(scale=3), label="merge_name")
            merge_btn = labels.add(gr.Button(scale=1), value="merge")
        merge_status = gr.Markdown()
    with labels.add(gr.Accordion(open=False), label="delete_header"):
        with gr.Row():
            confirm = labels.add(gr.Checkbox(False, scale=3), label="delete_confirm")
            delete_btn = labels.add(gr.Button(variant="stop", scale=1), value="delete")
        delete_status = gr.Markdown()

    scan.click(on_scan, [lang, choice], [table, choice, scan_status], api_name="scan_adapters")
    activate.click(on_activate, [lang, choice], status, api_name="activate_adapter")
    deactivate.click(on_deactivate, lang, status, api_name="deactivate_adapter")
    test_btn.click(on_quick_test, [lang, choice, prompt], reply, api_visibility="private")
    prompt.submit(on_quick_test, [lang, choice, prompt], reply, api_visibility="private")
    merge_btn.click(on_merge, [lang, choice, merge_name], merge_status, api_name="merge_adapter")
    delete_btn.click(
        on_delete, [lang, choice, confirm], [delete_status, table, choice, confirm], api_visibility="private"
    )
    return {"scan": (on_scan, [lang, choice], [table, choice, scan_status]), "status": (engine_status, lang, status)}
