"""The Dataset tab's ways in beyond one file of the three formats: the Columns box (a file's columns mapped to
instruction / input / output / system or to a conversation, guessed from their names, then validated like any
other file), a dataset fetched from the Hub, and several datasets mixed with a row limit and a weight each."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from lora_core import columns as colmap
from lora_core import storage
from lora_core.data import load_records
from lora_core.demo import BUNDLED
from lora_core.errors import DatasetError
from lora_core.mixing import MAX_LIMIT, MAX_SOURCES, MAX_WEIGHT, DataSource, load_mix

from . import dataset_tab
from .common import Labels, Number, user_errors
from .dataset_tab import (
    LoadedDataset,
    dataset_views,
    on_upload,
    remember_dataset,
    table,
)
from .i18n import DEFAULT_LANG, t

MAP_KEYS = ("instruction", "input", "output", "system", "conversation")
ROLE_CHARS = 200
COLUMN_HEADERS = ["col_column", "col_values"]
FETCH_PROGRESS = gr.Progress()
MIX_HEADERS = ["col_mix_dataset", "col_mix_valid", "col_limit", "col_weight", "col_used"]


# --- the Columns box ---------------------------------------------------------------------------------------------


def columns_views(pending: dict | None, lang: str) -> tuple:
    """The box (shown when the file's columns need a mapping), its table of columns and values, the five
    column choices (the guess, or the mapping kept with the upload, preselected), the turn keys, the role names and
    the sheet choice."""
    if not pending:
        return (gr.update(visible=False), table([], COLUMN_HEADERS, lang), *[gr.update(choices=[""], value="")] * 5,
                "", "", "", "", gr.update(visible=False))  # fmt: skip
    guess = colmap.ColumnMap(**pending.get("mapping") or {})
    choices = ["", *pending["columns"]]
    picks = [gr.update(choices=choices, value=getattr(guess, key) or "") for key in MAP_KEYS]
    sheets = pending.get("sheets") or []
    return (
        gr.update(visible=bool(pending["needs"])),
        table(pending["values"], COLUMN_HEADERS, lang),
        *picks,
        guess.role,
        guess.content,
        "|".join(guess.user),
        "|".join(guess.assistant),
        gr.update(choices=sheets, value=pending.get("sheet") or None, visible=len(sheets) > 1),
    )


def chosen_mapping(values: list[str], role: str, content: str, user: str, assistant: str) -> colmap.ColumnMap:
    """The chosen columns, turn keys and role names as a mapping; a name that its text form (``--columns``, the
    manifest) cannot hold (with ',', '=' or '|') is refused, naming it."""
    chosen: dict[str, Any] = {}
    for key, column in (*zip(MAP_KEYS, values, strict=True), ("role", role), ("content", content)):
        column = str(column or "")[:ROLE_CHARS]
        if column.strip():
            if any(c in column for c in ",=|"):
                raise DatasetError("column_unmappable", column=column[:60])
            chosen[key] = column
    if chosen.get("conversation"):
        for key, names in (("user", user), ("assistant", assistant)):
            chosen[key] = tuple(n.strip() for n in str(names or "")[:ROLE_CHARS].split("|") if n.strip())
            if any("," in n or "=" in n for n in chosen[key]):
                raise DatasetError("column_unmappable", column=str(names)[:60])
    else:
        chosen.pop("role", None)
        chosen.pop("content", None)
    return colmap.check(colmap.ColumnMap(**chosen))


@user_errors
def on_columns(lang: str, pending: dict | None, instruction: str, input_: str, output: str, system: str,
               conversation: str, role: str, content: str, user: str, assistant: str) -> tuple:  # fmt: skip
    """Validate the waiting file with the chosen columns; the mapping is kept with the upload."""
    if not pending:
        raise gr.Error(t("no_dataset", lang), print_exception=False)
    values = [str(v or "") for v in (instruction, input_, output, system, conversation)]
    mapping = chosen_mapping(values, role, content, user, assistant)
    report = load_records(pending["path"], "auto", max_bytes=dataset_tab.MAX_UPLOAD_BYTES, columns=mapping,
                          sheet=pending.get("sheet", ""), guess=False)  # fmt: skip
    report = replace(report, name=pending["name"])
    if Path(pending["path"]).resolve() not in BUNDLED:
        storage.save_upload_meta(pending["path"], columns=report.columns, sheet=report.sheet)
    loaded = LoadedDataset(pending["path"], report)
    remember_dataset(loaded)
    return (*dataset_views(loaded, lang), loaded)


def on_sheet(lang: str, sheet: str | None, fmt: str, pending: dict | None) -> tuple:
    if not pending or not sheet or sheet == pending.get("sheet"):
        return (gr.update(),) * 5
    return on_upload(lang, pending["path"], fmt, str(sheet)[:255])


# --- a dataset from the Hub --------------------------------------------------------------------------------------


@user_errors
def on_fetch(lang: str, repo_id: str, config: str, split: str, revision: str, fmt: str,
             progress: gr.Progress = FETCH_PROGRESS) -> tuple:  # fmt: skip
    """Fetch a dataset's split from the Hub into the stored uploads, then read it like an upload."""
    from lora_core.hub_datasets import fetch_dataset

    def report_progress(done: int, total: int) -> None:
        progress(done / total if total else 0, desc=t("fetching", lang))

    token = os.environ.get("HF_TOKEN") or None
    fetched = fetch_dataset(str(repo_id or ""), str(config or "").strip()[:200], str(split or "").strip()[:200]
                            or "train", str(revision or "").strip()[:200] or None, token, report_progress,
                            dataset_tab.MAX_UPLOAD_BYTES)  # fmt: skip
    return on_upload(lang, str(fetched.path), fmt)


# --- several datasets mixed --------------------------------------------------------------------------------------


def mix_views(mix: list[dict], report: Any, lang: str) -> tuple[str, Any]:
    if not mix:
        return t("mix_empty", lang), table([], MIX_HEADERS, lang)
    rows = [[p["name"], p["rows_valid"], p["limit"] or "–", p["weight"], p["rows_used"]] for p in report]
    total = sum(p["rows_used"] for p in report)
    return t("mix_summary", lang, n=len(mix), rows=total), table(rows, MIX_HEADERS, lang)


@user_errors
def on_mix_add(lang: str, loaded: LoadedDataset | None, mix: list[dict] | None, limit: Any, weight: Any,
               seed: Any = 42) -> tuple:  # fmt: skip
    """Add the dataset shown to the mix (with its row limit and weight); the data to train on becomes the mix."""
    if loaded is None or loaded.sources or not loaded.report.ok:
        raise gr.Error(t("mix_needs_dataset", lang), print_exception=False)
    mix = list(mix or [])
    if len(mix) >= MAX_SOURCES:
        raise gr.Error(t("mix_full", lang, max=MAX_SOURCES), print_exception=False)
    try:
        limit = int(limit or 0) if float(limit or 0).is_integer() else -1
        weight = float(weight if weight not in (None, "") else 1)
    except (TypeError, ValueError, OverflowError):
        limit, weight = -1, -1.0
    if not 0 <= limit <= MAX_LIMIT or not 0 < weight <= MAX_WEIGHT:
        raise gr.Error(t("mix_bad_numbers", lang, max_limit=MAX_LIMIT, max_weight=f"{MAX_WEIGHT:g}"),
                       print_exception=False)  # fmt: skip
    cfg = loaded.config()
    mix.append({"path": cfg["data"], "name": loaded.report.name, "format": cfg["format"], "columns": cfg["columns"],
                "sheet": cfg["sheet"], "limit": limit, "weight": weight})  # fmt: skip
    return mixed(lang, mix)


def mixed(lang: str, mix: list[dict]) -> tuple:
    sources = [DataSource(**s) for s in mix]
    result = load_mix(sources, 42, skip_invalid=True, max_bytes=dataset_tab.MAX_UPLOAD_BYTES)
    loaded = LoadedDataset(sources[0].path, result.report, tuple(sources))
    summary, shown = mix_views(mix, result.parts, lang)
    return (*dataset_views(loaded, lang), loaded, mix, summary, shown)


def on_mix_clear(lang: str) -> tuple:
    summary, shown = mix_views([], [], lang)
    return (*dataset_views(None, lang), None, [], summary, shown)


# --- layout ------------------------------------------------------------------------------------------------------


def hub_section(labels: Labels) -> dict[str, Any]:
    """A dataset id, its configuration and split, and Fetch (beside the upload: another way in)."""
    with labels.add(gr.Accordion(open=False), label="hub_data_header"):
        labels.add(gr.Markdown(), value="hub_data_intro")
        with gr.Row():
            repo = labels.add(gr.Textbox(max_length=200, scale=3, elem_id="hub-dataset"), label="hub_dataset")
            config = labels.add(gr.Textbox(max_length=200, scale=1), label="hub_config")
            split = labels.add(gr.Textbox("train", max_length=200, scale=1), label="hub_split")
            revision = labels.add(gr.Textbox(max_length=200, scale=1), label="hub_revision")
            fetch = labels.add(gr.Button(scale=1), value="fetch_dataset")
    return {"repo": repo, "config": config, "split": split, "revision": revision, "fetch": fetch}


def columns_box(labels: Labels) -> dict[str, Any]:
    """The Columns box (under the summary that asks for it), hidden until a file needs a mapping."""
    with gr.Group(visible=False, elem_id="columns-box") as box:
        labels.add(gr.Markdown(), value="columns_intro")
        values = labels.add(gr.Dataframe(table([], COLUMN_HEADERS, DEFAULT_LANG), interactive=False, wrap=True,
                                         elem_id="column-values"), label="column_values")  # fmt: skip
        with gr.Row():
            picks = [labels.add(gr.Dropdown([""], value="", allow_custom_value=True, elem_id=f"map-{key}"),
                                label=f"map_{key}") for key in MAP_KEYS]  # fmt: skip
        with gr.Row():
            role, content, user, assistant = [
                labels.add(gr.Textbox("", max_length=ROLE_CHARS, elem_id=f"map-{key}"), label=f"map_{key}")
                for key in ("role", "content", "user", "assistant")
            ]
        apply = labels.add(gr.Button(variant="primary", elem_id="apply-columns"), value="apply_columns")
    return {"box": box, "values": values, "picks": picks, "role": role, "content": content, "user": user,
            "assistant": assistant, "apply": apply}  # fmt: skip


def mix_section(labels: Labels) -> dict[str, Any]:
    """Several datasets in one training: the dataset shown added with a row limit and a weight, the mix listed."""
    mix = gr.State([])
    with labels.add(gr.Accordion(open=False, elem_id="mix"), label="mix_header"):
        labels.add(gr.Markdown(), value="mix_intro")
        with gr.Row():
            limit = labels.add(Number(value=0, precision=0, scale=1), label="mix_limit")
            weight = labels.add(Number(value=1, scale=1), label="mix_weight")
            add = labels.add(gr.Button(variant="secondary", scale=1, elem_id="mix-add"), value="mix_add")
            clear = labels.add(gr.Button(variant="secondary", scale=1), value="mix_clear")
        summary = gr.Markdown()
        shown = labels.add(gr.Dataframe(table([], MIX_HEADERS, DEFAULT_LANG), interactive=False,
                                        elem_id="mix-table"), label="mix_table")  # fmt: skip
    return {"mix": mix, "limit": limit, "weight": weight, "add": add, "clear": clear, "summary": summary,
            "shown": shown}  # fmt: skip


def wire(lang: gr.State, parts: dict[str, Any], hub: dict[str, Any], cols: dict[str, Any],
         mix: dict[str, Any]) -> None:  # fmt: skip
    """The events of the three sections, with the tab's ``parts`` (format, pending file, sheet, loaded dataset,
    dataset outputs, and ``after``: what every dataset event does next)."""
    fmt, pending, sheet = parts["fmt"], parts["pending"], parts["sheet"]
    dataset_outputs, after = parts["dataset_outputs"], parts["after"]
    picks = cols["picks"]
    keys = [cols["role"], cols["content"], cols["user"], cols["assistant"]]
    column_outputs = [cols["box"], cols["values"], *picks, *keys, sheet]
    pending.change(lambda lang_, p: columns_views(p, lang_), [lang, pending], column_outputs,
                   api_visibility="private")  # fmt: skip
    mapped = cols["apply"].click(on_columns, [lang, pending, *picks, *keys], dataset_outputs[:4],
                                 api_name="map_columns")  # fmt: skip
    fetched = hub["fetch"].click(on_fetch, [lang, *(hub[k] for k in ("repo", "config", "split", "revision")), fmt],
                                 dataset_outputs,
                                 api_name="fetch_dataset")  # fmt: skip
    picked = sheet.input(on_sheet, [lang, sheet, fmt, pending], dataset_outputs, api_visibility="private")
    mix_outputs = [*dataset_outputs[:4], mix["mix"], mix["summary"], mix["shown"]]
    added = mix["add"].click(on_mix_add, [lang, parts["loaded"], mix["mix"], mix["limit"], mix["weight"]],
                             mix_outputs, api_visibility="private")  # fmt: skip
    added.success(lambda: (0, 1), None, [mix["limit"], mix["weight"]], api_visibility="private")  # the next one's own
    cleared = mix["clear"].click(on_mix_clear, lang, mix_outputs, api_visibility="private")
    after(mapped, "choose")
    after(picked, "choose")
    after(added, "keep")
    for event in (fetched, cleared):
        after(event)
