"""Tab 1: upload a dataset, see it validated row by row, and see exactly which tokens will be trained."""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from lora_core import paths
from lora_core.data import FORMAT_NAMES, DatasetReport, load_records
from lora_core.demo import SAMPLE_DATASET
from lora_core.errors import PathError
from lora_core.loading import list_base_models, load_tokenizer
from lora_core.masking import encode_records, trained_spans
from lora_core.prompts import prompt_style

from .common import Labels, user_errors
from .i18n import problem_text, t

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
PREVIEW_ROWS = 5
HIGHLIGHT_EXAMPLES = 3
PROBLEM_ROWS_SHOWN = 500


@dataclass(frozen=True)
class LoadedDataset:
    """What the other tabs need of the current dataset: where the app stored it, and its report."""

    path: str
    report: DatasetReport


def store_upload(src: str | Path, report: DatasetReport) -> Path:
    """Keep an uploaded file under a name the app chooses (its content hash), never the user's file name."""
    suffix = ".jsonl" if Path(report.name).suffix.lower() == ".jsonl" else ".json"
    dest = paths.uploads_dir() / f"{report.sha256[:20]}{suffix}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
    return dest


def base_model_choices() -> list[str]:
    return [p.name for p in list_base_models()]


def refresh_bases(current: str | None = None) -> Any:
    choices = base_model_choices()
    return gr.update(choices=choices, value=current if current in choices else (choices[0] if choices else None))


def resolve_base(name: str | None) -> Path:
    """A base model chosen in the UI: must be one of the offered folders, inside Models/LLM/."""
    if not name or name not in base_model_choices():
        raise PathError(f"'{name}' is not one of the models in Models/LLM/.", code="not_offered", value=str(name))
    return paths.inside(paths.llm_dir(), name)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, mtime: float) -> Any:
    return load_tokenizer(path)


def tokenizer_of(base: Path) -> Any:
    return _tokenizer(str(base), (base / "config.json").stat().st_mtime)


def report_views(report: DatasetReport, lang: str) -> tuple[str, list[list], list[list]]:
    fmt = FORMAT_NAMES.get(report.format, report.format)
    if report.ok:
        summary = t("report_ok", lang, name=report.name, fmt=fmt, rows=report.total_rows)
    else:
        summary = t(
            "report_bad",
            lang,
            name=report.name,
            fmt=fmt,
            rows=report.total_rows,
            invalid=report.invalid_rows,
            valid=report.valid_rows,
        )
    problems = [[p.row, p.field, problem_text(p.code, p.message, lang)] for p in report.problems[:PROBLEM_ROWS_SHOWN]]
    preview = [
        [record.row, message.role, message.content]
        for record in report.records[:PREVIEW_ROWS]
        for message in record.messages
    ]
    return summary, problems, preview


@user_errors
def on_dataset(lang: str, file: str | None, fmt: str) -> tuple[str, Any, Any, LoadedDataset | None]:
    if not file:
        return t("no_dataset", lang), [], [], None
    report = load_records(file, fmt, max_bytes=MAX_UPLOAD_BYTES)
    stored = store_upload(file, report) if Path(file).resolve() != SAMPLE_DATASET else SAMPLE_DATASET
    summary, problems, preview = report_views(report, lang)
    return summary, problems, preview, LoadedDataset(str(stored), report)


def length_histogram(lengths: list[int], max_length: int, lang: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#4c78a8")
    ax.axvline(max_length, color="#e45756", linestyle="--", label=t("hist_limit", lang))
    ax.set_xlabel(t("hist_x", lang))
    ax.set_ylabel(t("hist_y", lang))
    ax.legend(loc="upper right")
    fig.tight_layout()
    plt.close(fig)
    return fig


@user_errors
def on_tokens(lang: str, loaded: LoadedDataset | None, base_name: str | None, max_length: float) -> tuple:
    if loaded is None:
        raise gr.Error(t("no_dataset", lang))
    if not base_model_choices():
        raise gr.Error(t("no_base", lang))
    tokenizer = tokenizer_of(resolve_base(base_name))
    max_length = int(max_length)
    records = loaded.report.records
    examples, _, stats = encode_records(records, tokenizer, max_length)
    highlighted: list[tuple[str, str | None]] = []
    trained_label, masked_label = t("trained", lang), t("masked", lang)
    for i, example in enumerate(examples[:HIGHLIGHT_EXAMPLES]):
        if i:
            highlighted.append(("\n\n", None))
        highlighted += [
            (text, trained_label if trained else masked_label) for text, trained in trained_spans(tokenizer, example)
        ]
    summary = t(
        "token_stats",
        lang,
        total=stats.total,
        tokens=sum(len(e.input_ids) for e in examples),
        trained=sum(e.trained_tokens for e in examples),
        max_length=max_length,
        truncated=stats.truncated,
        dropped=sum(stats.dropped.values()),
        style=prompt_style(tokenizer).value,
    )
    color_map = {trained_label: "#2ca02c", masked_label: "#d0d0d0"}
    return (
        gr.update(value=highlighted, color_map=color_map),
        length_histogram(stats.lengths, max_length, lang),
        summary,
    )


def build(labels: Labels, lang: gr.State) -> dict[str, Any]:
    """Lay out the tab; returns the components other tabs use (the loaded dataset, the base model choice)."""
    loaded = gr.State(None)
    labels.add(gr.Markdown(), value="dataset_intro")
    with gr.Row():
        with gr.Column(scale=2):
            upload = labels.add(gr.File(file_types=[".json", ".jsonl"], type="filepath"), label="upload")
        with gr.Column(scale=1):
            fmt = labels.add(gr.Dropdown(["auto", "alpaca", "sharegpt", "messages"], value="auto"), label="format")
            sample = labels.add(gr.Button(variant="secondary"), value="use_sample")
    summary = gr.Markdown()
    problems = labels.add(
        gr.Dataframe(headers=["row", "field", "problem"], interactive=False, wrap=True),
        label="problems",
        headers=["col_row", "col_field", "col_problem"],
    )
    preview = labels.add(
        gr.Dataframe(headers=["row", "role", "text"], interactive=False, wrap=True),
        label="preview",
        headers=["col_row", "col_role", "col_text"],
    )

    labels.add(gr.Markdown(), value="tokens_header")
    with gr.Row():
        choices = base_model_choices()
        base = labels.add(gr.Dropdown(choices, value=choices[0] if choices else None, scale=3), label="base_model")
        refresh = labels.add(gr.Button(scale=1), value="refresh")
        max_length = labels.add(
            gr.Number(value=512, minimum=8, maximum=32768, precision=0, scale=1), label="max_length"
        )
        analyze = labels.add(gr.Button(variant="primary", scale=1), value="analyze")
    token_summary = gr.Markdown()
    highlight = labels.add(gr.HighlightedText(show_legend=True, combine_adjacent=True), label="highlight")
    histogram = labels.add(gr.Plot(), label="histogram")

    dataset_outputs = [summary, problems, preview, loaded]
    upload.change(on_dataset, [lang, upload, fmt], dataset_outputs, api_name="validate_dataset")
    fmt.change(on_dataset, [lang, upload, fmt], dataset_outputs, api_visibility="private")
    sample.click(
        lambda lang_, fmt_: on_dataset(lang_, str(SAMPLE_DATASET), fmt_),
        [lang, fmt],
        dataset_outputs,
        api_visibility="private",
    )
    refresh.click(refresh_bases, base, base, api_visibility="private")
    token_outputs = [highlight, histogram, token_summary]
    analyze.click(on_tokens, [lang, loaded, base, max_length], token_outputs, api_name="show_tokens")
    return {"loaded": loaded, "base": base, "max_length": max_length}
