"""Tab 3: the adapters in Models/LoRA/ (scan, verify, activate / deactivate, quick test, merge, delete)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lora_core import adapters, bundles, hub, paths, storage
from lora_core.adapters import base_for_adapter
from lora_core.chat import GenerationSettings
from lora_core.errors import ChatError
from lora_core.export import merge_adapter
from lora_core.gguf_import import import_gguf
from lora_core.sessions import ChatSession, forget_adapter

from . import eval_card
from .chat_sessions import session
from .common import Labels, keep_reason, md, stored_items_section, user_errors
from .dataset_tab import base_model_choices, forget_gradio_copy
from .i18n import DEFAULT_LANG, error_message, t

# Why a folder is unusable is in its validity cell, seen without scrolling (no column left empty when every folder
# is usable); the long list of target modules last. The name's column is wide enough for <task>_<timestamp>.
COLUMNS = ["col_adapter_name", "col_valid", "col_status", "col_base", "col_rank", "col_size", "col_date",
           "col_train_loss", "col_eval_loss", "col_targets"]  # fmt: skip
COLUMN_WIDTHS = ["24%", "14%", "8%", "10%", "5%", "6%", "9%", "6%", "6%", "12%"]


def _loss(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else ""


def human_size(size: int) -> str:
    """``812 B``, ``4.0 KB``, ``1.2 MB``, ``3.4 GB``."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def reason_text(info: adapters.AdapterInfo, lang: str) -> str:
    """Why a folder is not a usable adapter, in ``lang``."""
    return error_message(info.reason_code, info.reason_params, lang, info.reason)


def adapter_choices(infos: list[adapters.AdapterInfo], lang: str) -> list[tuple[str, str]]:
    """Every folder, the unusable ones marked: an invalid folder can still be chosen to be deleted."""
    return [(a.name if a.valid else f"{a.name} ({t('invalid', lang)})", a.name) for a in infos]


def adapter_table(lang: str) -> tuple[pd.DataFrame, list[adapters.AdapterInfo]]:
    """Every folder under Models/LoRA/ (valid or not, with the reason), and what the scan found."""
    infos = adapters.scan()
    rows = []
    for a in infos:
        if a.valid:
            validity = t("external" if a.external else "valid", lang)
        else:
            validity = t("invalid_because", lang, reason=reason_text(a, lang))
        rows.append([
            a.name, validity, t(f"state_{a.status}", lang) if a.status else "",
            paths_name(a.base_model), a.rank or "", human_size(a.size_bytes), a.created.replace("T", " "),
            _loss(a.final_train_loss), _loss(a.final_eval_loss), ", ".join(a.target_modules),
        ])  # fmt: skip
    return pd.DataFrame(rows, columns=[t(c, lang) for c in COLUMNS]), infos


def paths_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if path else ""


def engine_status(lang: str, request: gr.Request | None = None) -> str:
    """What the next chat answer of the page of ``request`` will use."""
    return session_status(session(request), lang)


def session_status(chat: ChatSession, lang: str) -> str:
    status = chat.status()
    if not status["base"]:
        return t("engine_empty", lang)
    adapter = status["active"] or t("no_adapter", lang)
    return t("engine_status", lang, base=md(paths_name(status["base"])), adapter=md(adapter))


@user_errors
def on_scan(lang: str, current: str | None) -> tuple[Any, Any, str]:
    frame, infos = adapter_table(lang)
    names = [a.name for a in infos]
    usable = [a.name for a in infos if a.valid]
    value = current if current in names else (usable or names or [None])[0]
    status = t("scanned", lang, n=len(infos), valid=len(usable), invalid=len(infos) - len(usable))
    return frame, gr.update(choices=adapter_choices(infos, lang), value=value), status


def on_language(lang: str, current: str | None, request: gr.Request = None) -> tuple[Any, Any, str, str]:
    """The texts the handlers wrote (table headers and cells, scan and chat status) in the new language."""
    return (*on_scan(lang, current), engine_status(lang, request))


def chosen(name: str | None, lang: str) -> str:
    if not name:
        raise gr.Error(t("choose_adapter", lang), print_exception=False)
    return name


def activate_by_name(chat: ChatSession, name: str) -> None:
    """The session answers with the adapter from now on, on its own base model (or, for an adapter whose base
    is not found, the base the session holds)."""
    path = adapters.adapter_path(name)
    adapters.verify_adapter(path)  # an invalid folder says why before any model is loaded
    base = base_for_adapter(path) or chat.base
    if base is None:
        raise adapters.AdapterError("adapter_base_unknown", name=name)
    chat.load(base, path)


@user_errors
def on_activate(lang: str, name: str | None, request: gr.Request = None) -> str:
    chat = session(request)
    activate_by_name(chat, chosen(name, lang))
    return session_status(chat, lang)


@user_errors
def on_deactivate(lang: str, request: gr.Request = None) -> str:
    chat = session(request)
    chat.deactivate()
    return session_status(chat, lang)


@user_errors
def on_quick_test(lang: str, name: str | None, prompt: str, request: gr.Request = None) -> tuple[str, str]:
    """The selected adapter (activated first) answers ``prompt``, greedy."""
    if not (prompt or "").strip():
        raise gr.Error(t("need_prompt", lang), print_exception=False)
    name = chosen(name, lang)
    chat = session(request)
    if chat.status()["active"] != name:
        activate_by_name(chat, name)
    reply = chat.generate([{"role": "user", "content": prompt}], GenerationSettings(max_new_tokens=128))
    return reply, session_status(chat, lang)


@user_errors
def on_merge(lang: str, name: str | None, out_name: str) -> str:
    path = adapters.adapter_path(chosen(name, lang))
    folder = paths.safe_name((out_name or "").strip() or f"{name}-merged")
    if folder in base_model_choices():  # a base model of that name is offered already (shared or own)
        raise ChatError("merge_out_exists", path=folder)
    base = adapters.base_for_adapter(path)
    storage.check_quota("merged", storage.folder_size(base) if base is not None else 0)  # at most the base's size
    merged = merge_adapter(path, paths.inside(paths.own_llm_dir(), folder))
    return t("merged", lang, path=paths.shown(merged), name=md(merged.name))


@user_errors
def on_download(lang: str, name: str | None) -> str:
    """The chosen adapter as a .zip of exactly its folder, to save from the browser."""
    path = adapters.adapter_path(chosen(name, lang))
    return str(bundles.zip_adapter(path, downloads_dir()))


def downloads_dir() -> Path:
    """Where the zips handed to the browser are written (Gradio serves a copy of each from its own cache)."""
    user = paths.current_user()
    return Path(tempfile.gettempdir()) / "simple_lora_downloads" / (paths.safe_name(user) if user else "shared")


@user_errors
def on_upload(lang: str, file: str | None, current: str | None) -> tuple[str, Any, Any, str]:
    """An adapter zip from the browser, checked and listed (valid or external)."""
    if not file:
        raise gr.Error(t("choose_zip", lang), print_exception=False)
    try:
        folder = bundles.import_adapter_zip(file)
    finally:
        forget_gradio_copy(file)
    return (t("adapter_uploaded", lang, name=md(folder.name)), *on_scan(lang, folder.name))


TRACK_PROGRESS = gr.Progress(track_tqdm=True)  # the dequantizing's own progress bar, shown in the page
HUB_FILE_HEADERS = ["col_file", "col_size"]


def _hub_text(value: Any, limit: int = 200) -> str:
    return str(value or "").strip()[:limit]


@user_errors
def on_hub_files(lang: str, repo_id: str, revision: str, token: str) -> tuple[Any, str]:
    """What a download would fetch (files and sizes), or why it is refused; nothing is fetched but config.json."""
    _need_repo(repo_id, lang)
    plan = hub.plan_download(_hub_text(repo_id), _hub_text(revision) or None, _hub_text(token, 500) or None)
    rows = [[name, human_size(size)] for name, size in sorted(plan.files.items())]  # this tab's B / KB / MB
    total = t("hub_plan", lang, repo=md(plan.repo_id), n=len(rows), size=human_size(plan.total_bytes))
    return hub_table(rows, lang), total


def hub_table(rows: list[list], lang: str) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[t(c, lang) for c in HUB_FILE_HEADERS])


def _need_repo(repo_id: str, lang: str) -> None:
    if not _hub_text(repo_id):
        raise gr.Error(t("hub_need_repo", lang), print_exception=False)


@user_errors
def on_hub_download(lang: str, repo_id: str, revision: str, name: str, token: str,
                    progress: gr.Progress = TRACK_PROGRESS) -> str:  # fmt: skip
    """Download a base model (the token is used for this download only), with the bytes so far as progress."""

    def report(done: int, total: int) -> None:
        progress((done, total), desc=t("hub_downloading", lang), unit="bytes")

    _need_repo(repo_id, lang)
    folder = hub.download_model(_hub_text(repo_id), _hub_text(revision) or None, _hub_text(name, 64) or None,
                                _hub_text(token, 500) or None, progress=report)  # fmt: skip
    return t("hub_downloaded", lang, name=md(folder.name))


@user_errors
def on_import_gguf(lang: str, file: str | None, progress: gr.Progress = TRACK_PROGRESS) -> str:
    """A .gguf file from the browser, turned into a base model of this workspace (with a progress bar)."""
    if not file:
        raise gr.Error(t("choose_gguf", lang), print_exception=False)
    try:
        folder = import_gguf(file)
    finally:
        forget_gradio_copy(file)
    return t("gguf_imported", lang, name=md(folder.name))


@user_errors
def on_push(lang: str, name: str | None, repo_id: str, token: str, private: bool) -> str:
    """The chosen adapter pushed to the Hub with a model card; the token is used for this push only."""
    path = adapters.adapter_path(chosen(name, lang))
    url = hub.push_adapter(path, _hub_text(repo_id), _hub_text(token, 500), private=bool(private))
    return t("pushed", lang, repo=md(_hub_text(repo_id)), url=md(url))


def chosen_merged(name: str | None, lang: str) -> str:
    if not name:
        raise gr.Error(t("choose_stored", lang), print_exception=False)
    return name


@user_errors
def on_download_merged(lang: str, name: str | None) -> str:
    """The chosen merged model as a .zip, when it fits the page's cap."""
    return str(bundles.zip_merged(chosen_merged(name, lang), downloads_dir()))


@user_errors
def on_push_merged(lang: str, name: str | None, repo_id: str, token: str, private: bool) -> str:
    """The chosen merged model pushed to the Hub with a model card; the token is used for this push only."""
    url = hub.push_merged(chosen_merged(name, lang), _hub_text(repo_id), _hub_text(token, 500), bool(private))
    return t("pushed", lang, repo=md(_hub_text(repo_id)), url=md(url))


def push_controls(labels: Labels) -> tuple[Any, Any, Any, Any]:
    """A row to push to the Hub: repository id, write token (never shown), private (by default), Push."""
    with gr.Row():
        repo = labels.add(gr.Textbox(max_length=200, scale=2), label="push_repo", placeholder="hub_repo_hint")
        token = labels.add(gr.Textbox(type="password", max_length=500, scale=2), label="push_token")
        private = labels.add(gr.Checkbox(True, scale=1), label="push_private")
        push = labels.add(gr.Button(scale=1), value="push")
    return repo, token, private, push


def merged_transfer(labels: Labels, lang: gr.State) -> Any:
    """Download and push controls for the merged model chosen in the merged models' list."""

    def controls(chosen: gr.Dropdown) -> None:
        with gr.Row():
            button = labels.add(gr.Button(scale=1), value="download_zip")
            file = labels.add(gr.File(interactive=False, scale=2), label="download_file")
        repo, token, private, push = push_controls(labels)
        status = gr.Markdown()
        for event in (
            button.click(on_download_merged, [lang, chosen], file, api_name="download_merged", show_progress_on=file),
            push.click(on_push_merged, [lang, chosen, repo, token, private], status, api_name="push_merged",
                       show_progress_on=status),
        ):  # fmt: skip
            keep_reason(event, markdown=[status])

    return controls


@user_errors
def on_delete(lang: str, name: str | None, confirmed: bool,
              request: gr.Request = None) -> tuple[str, Any, Any, str, Any, str]:  # fmt: skip
    name = chosen(name, lang)
    if not confirmed:
        raise gr.Error(t("confirm_first", lang, name=name), print_exception=False)
    path = adapters.adapter_path(name)
    forget_adapter(path)
    adapters.delete_adapter(name)
    chat = session(request)
    if chat.adapter == path.resolve():
        chat.deactivate()
    frame, choice, scan_status = on_scan(lang, None)
    return t("deleted", lang, name=md(name)), frame, choice, scan_status, False, session_status(chat, lang)


def build(labels: Labels, lang: gr.State) -> dict[str, Any]:
    labels.add(gr.Markdown(), value="models_intro")
    with gr.Row():
        scan = labels.add(gr.Button(variant="secondary", scale=1), value="scan")
        scan_status = gr.Markdown()
    table = labels.add(gr.Dataframe(interactive=False, wrap=True, column_widths=COLUMN_WIDTHS), label="adapters")
    with gr.Row():
        choice = labels.add(gr.Dropdown([], allow_custom_value=True, scale=3), label="adapter")
        activate = labels.add(gr.Button(variant="primary", scale=1), value="activate")
        deactivate = labels.add(gr.Button(scale=1), value="deactivate")
    status = gr.Markdown()
    with gr.Row():
        prompt = labels.add(gr.Textbox(lines=1, scale=3), label="quick_test", placeholder="quick_test_hint")
        test_btn = labels.add(gr.Button(scale=1), value="send")
    reply = labels.add(gr.Textbox(lines=2, interactive=False), label="reply")
    eval_card.build(labels, lang, choice, table)
    with labels.add(gr.Accordion(open=False), label="hub_header"):
        labels.add(gr.Markdown(), value="hub_intro")
        with gr.Row():
            hub_repo = labels.add(gr.Textbox(max_length=200, scale=3), label="hub_repo", placeholder="hub_repo_hint")
            hub_revision = labels.add(gr.Textbox(max_length=200, scale=1), label="hub_revision")
            hub_name = labels.add(gr.Textbox(max_length=64, scale=1), label="hub_name")
            hub_token = labels.add(gr.Textbox(type="password", max_length=500, scale=2), label="hub_token")
        with gr.Row():
            hub_list = labels.add(gr.Button(scale=1), value="hub_list")
            hub_get = labels.add(gr.Button(variant="primary", scale=1), value="hub_download")
        hub_status = gr.Markdown()
        hub_files = labels.add(gr.Dataframe(hub_table([], DEFAULT_LANG), interactive=False, wrap=True),
                               label="hub_files")  # fmt: skip
        gguf_file = labels.add(gr.File(file_types=[".gguf"], type="filepath"), label="upload_gguf")
        gguf_status = gr.Markdown()
    with labels.add(gr.Accordion(open=False), label="transfer_header"):
        labels.add(gr.Markdown(), value="transfer_intro")
        with gr.Row():
            download_btn = labels.add(gr.Button(scale=1), value="download_zip")
            download_file = labels.add(gr.File(interactive=False, scale=2), label="download_file")
        with gr.Row():
            upload_file = labels.add(gr.File(file_types=[".zip"], type="filepath", scale=2), label="upload_zip")
        upload_status = gr.Markdown()
        push_repo, push_token, push_private, push_btn = push_controls(labels)
        push_status = gr.Markdown()
    with labels.add(gr.Accordion(open=False), label="merge_header"):
        labels.add(gr.Markdown(), value="merge_intro")
        with gr.Row():
            merge_name = labels.add(gr.Textbox(scale=3), label="merge_name", placeholder="merge_name_hint")
            merge_btn = labels.add(gr.Button(scale=1), value="merge")
        merge_status = gr.Markdown()
    with labels.add(gr.Accordion(open=False), label="delete_header"):
        labels.add(gr.Markdown(), value="delete_intro")
        with gr.Row():
            confirm = labels.add(gr.Checkbox(False, scale=3), label="delete_confirm")
            delete_btn = labels.add(gr.Button(variant="stop", scale=1), value="delete")
        delete_status = gr.Markdown()

    merged = stored_items_section(labels, lang, "merged", storage.merged_models, storage.delete_merged,
                                  more=merged_transfer(labels, lang))  # fmt: skip
    keep_reason(download_btn.click(on_download, [lang, choice], download_file, api_name="download_adapter",
                                   show_progress_on=download_file), markdown=[upload_status])  # fmt: skip
    keep_reason(upload_file.upload(on_upload, [lang, upload_file, choice], [upload_status, table, choice, scan_status],
                                   api_name="upload_adapter", show_progress_on=upload_status),
                markdown=[upload_status])  # fmt: skip
    keep_reason(gguf_file.upload(on_import_gguf, [lang, gguf_file], gguf_status, api_name="import_gguf"),
                markdown=[gguf_status])  # fmt: skip
    pushing = push_btn.click(on_push, [lang, choice, push_repo, push_token, push_private], push_status,
                             api_name="push_adapter", show_progress_on=push_status)  # fmt: skip
    keep_reason(pushing, markdown=[push_status])
    listing = hub_list.click(on_hub_files, [lang, hub_repo, hub_revision, hub_token], [hub_files, hub_status],
                             api_name="hub_files", show_progress_on=hub_status)  # fmt: skip
    fetching = hub_get.click(on_hub_download, [lang, hub_repo, hub_revision, hub_name, hub_token], hub_status,
                             api_name="download_model", show_progress_on=hub_status)  # fmt: skip
    for event in (listing, fetching):
        keep_reason(event, markdown=[hub_status])
    # An error shows as a message at the top right and a mark on the line it concerns (show_progress_on), never
    # over the table or the choices.
    keep_reason(scan.click(on_scan, [lang, choice], [table, choice, scan_status], api_name="scan_adapters",
                           show_progress_on=scan_status), markdown=[scan_status])  # fmt: skip
    keep_reason(activate.click(on_activate, [lang, choice], status, api_name="activate_adapter"), markdown=[status])
    keep_reason(deactivate.click(on_deactivate, lang, status, api_name="deactivate_adapter"), markdown=[status])
    for trigger in (test_btn.click, prompt.submit):
        keep_reason(trigger(on_quick_test, [lang, choice, prompt], [reply, status], api_visibility="private",
                            show_progress_on=reply), text=[reply])  # fmt: skip
    merging = merge_btn.click(lambda: "", None, merge_status, api_visibility="private", queue=False).then(
        on_merge, [lang, choice, merge_name], merge_status, api_name="merge_adapter"
    )
    merging.success(*merged, api_visibility="private")
    keep_reason(merging, markdown=[merge_status])
    # a tick given for one adapter never deletes another
    choice.input(lambda: (False, ""), None, [confirm, delete_status], api_visibility="private", queue=False)
    keep_reason(delete_btn.click(on_delete, [lang, choice, confirm],
                                 [delete_status, table, choice, scan_status, confirm, status],
                                 api_visibility="private", show_progress_on=delete_status),
                markdown=[delete_status])  # fmt: skip
    lang.change(on_language, [lang, choice], [table, choice, scan_status, status], api_visibility="private",
                show_progress="hidden")  # fmt: skip
    return {"scan": (on_scan, [lang, choice], [table, choice, scan_status]), "status": (engine_status, lang, status),
            "merged": merged}  # fmt: skip
