"""Tab 1: upload a dataset, see it validated row by row, and see exactly which tokens will be trained."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from lora_core import paths, storage
from lora_core.config import TrainConfig, setting_range
from lora_core.data import FORMAT_NAMES, FORMATS, DatasetReport, needs_columns, records_of
from lora_core.demo import BUNDLED, PREFERENCE_SAMPLE, SAMPLE_DATASET
from lora_core.errors import PathError
from lora_core.files import write_json
from lora_core.masking import encode_records, trained_spans
from lora_core.models import list_base_models, load_tokenizer
from lora_core.prompts import prompt_style
from lora_core.tables import read_table

from .common import (
    Labels,
    Number,
    base_dropdown,
    keep_reason,
    last_reason,
    md,
    reason_markdown,
    stored_items_section,
    user_errors,
    whole_number,
)
from .i18n import DEFAULT_LANG, normalize_lang, problem_text, t

# The upload cap (Gradio refuses a bigger upload; the core refuses a bigger file), 100 MB unless set.
MAX_UPLOAD_BYTES = storage.max_upload_bytes()
PREVIEW_ROWS = 5
PREVIEW_CHARS = 2000  # a longer message is cut in the preview (one row may hold megabytes)
HIGHLIGHT_EXAMPLES = 3
PROBLEM_ROWS_SHOWN = 500
MIN_MAX_LENGTH = 8
PROBLEM_HEADERS = ["col_row", "col_field", "col_problem"]
PREVIEW_HEADERS = ["col_row", "col_role", "col_text"]
# Fonts with Chinese glyphs, for the histogram's labels (matplotlib's default font has none).
CJK_FONT_NAMES = (
    "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei",
    "SimHei", "PingFang SC", "Heiti SC", "Hiragino Sans GB", "Droid Sans Fallback", "Noto Sans SC",
)  # fmt: skip
CJK_FONT_FILES = ("notosanscjk", "sourcehansans", "wqy", "msyh", "simhei", "pingfang", "droidsansfallback")


# What an upload may be (the browser's file dialog offers these; the core reads a file by its content).
UPLOAD_TYPES = [".json", ".jsonl", ".csv", ".tsv", ".txt", ".parquet", ".xlsx"]


@dataclass(frozen=True)
class LoadedDataset:
    """What the other tabs need of the current dataset: where the app stored it, and its report (of the rows of
    every dataset, when several are mixed: ``sources``)."""

    path: str
    report: DatasetReport
    sources: tuple = ()  # mixing.DataSource of each dataset of a mix

    def config(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields that name this data."""
        if self.sources:
            from lora_core.mixing import as_dicts

            return {"data": self.sources[0].path, "datasets": as_dicts(list(self.sources))}
        return {"data": self.path, "format": self.report.format, "data_name": self.report.name,
                "columns": self.report.columns, "sheet": self.report.sheet}  # fmt: skip


def store_upload(src: str | Path, sha256: str, name: str) -> Path:
    """Keep an uploaded file under a name the app chooses (its content hash and its kind's suffix), never the
    user's file name, readable by the app's user only, within the workspace's quota; Gradio's own temporary copy is
    removed. The name the user gave it is recorded beside it."""
    suffix = Path(name).suffix.lower()
    filename = f"{sha256[:20]}{suffix if suffix in UPLOAD_TYPES else '.json'}"
    dest = storage.keep_upload(filename, Path(src).stat().st_size, lambda tmp: shutil.copyfile(src, tmp),
                               name=name[:255])  # fmt: skip
    forget_gradio_copy(src)
    return dest


def forget_gradio_copy(src: str | Path) -> None:
    """Remove the copy Gradio made of an upload in its cache folder (and the folder it made for it)."""
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    src = Path(src).resolve()
    if cache in src.parents:
        src.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # Gradio puts each upload in a folder of its own
            if src.parent != cache:
                src.parent.rmdir()


def base_model_choices() -> list[str]:
    return [p.name for p in list_base_models()]


def refresh_bases(current: str | None = None) -> Any:
    choices = base_model_choices()
    return gr.update(choices=choices, value=current if current in choices else (choices[0] if choices else None))


def resolve_base(name: str | None) -> Path:
    """A base model chosen in the UI: must be one of the offered folders, inside Models/LLM/."""
    if not name or name not in base_model_choices():
        raise PathError("not_offered", value=str(name))
    return next(p for p in list_base_models() if p.name == name)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, mtime: float) -> Any:
    return load_tokenizer(path)


def tokenizer_of(base: Path) -> Any:
    return _tokenizer(str(base), (base / "config.json").stat().st_mtime)


def table(rows: list[list], header_keys: list[str], lang: str) -> Any:
    """Rows with translated column names. A Dataframe shows the headers of its value, so relabelling one means
    sending its value again."""
    import pandas as pd

    return pd.DataFrame(rows, columns=[t(k, lang) for k in header_keys])


def report_views(report: DatasetReport, lang: str) -> tuple[str, list[list], list[list]]:
    fmt = FORMAT_NAMES.get(report.format, report.format)
    if report.format == "mix":
        fmt = t("mix_format", lang)
    if report.ok:
        summary = t("report_ok", lang, name=md(report.name), fmt=fmt, rows=report.total_rows)
    else:
        summary = t(
            "report_bad" if report.valid_rows else "report_none",
            lang,
            name=md(report.name),
            fmt=fmt,
            rows=report.total_rows,
            invalid=report.invalid_rows,
            valid=report.valid_rows,
        )
    if report.columns:
        summary += " " + t("mapped_columns", lang, columns=md(report.columns))
    problems = [[p.row, p.field, problem_text(p, lang)] for p in report.problems[:PROBLEM_ROWS_SHOWN]]
    preview = []
    for record in report.records[:PREVIEW_ROWS]:
        for i, message in enumerate(record.messages):
            role = "chosen" if record.is_pair and i == len(record.messages) - 1 else message.role
            preview.append([record.row, t(f"role_{role}", lang), _cut(message.content)])
        if record.is_pair:
            preview.append([record.row, t("role_rejected", lang), _cut(record.rejected)])
    return summary, problems, preview


def _cut(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}… (+{len(text) - PREVIEW_CHARS:,})"


def dataset_views(loaded: LoadedDataset | None, lang: str) -> tuple[str, Any, Any]:
    """The summary and the two tables (problems shown only when there are some) in ``lang``."""
    if loaded is None:
        summary, problems, preview = t("no_dataset", lang), [], []
    else:
        summary, problems, preview = report_views(loaded.report, lang)
    return (
        summary,
        gr.update(value=table(problems, PROBLEM_HEADERS, lang), visible=bool(problems)),
        table(preview, PREVIEW_HEADERS, lang),
    )


@user_errors
def on_dataset(lang: str, file: str | None, fmt: str) -> tuple[str, Any, Any, LoadedDataset | None]:
    """A new upload (or the sample): read, stored, validated; see ``read_upload``."""
    return read_upload(lang, file, fmt)[:4]


def read_upload(lang: str, file: str | None, fmt: str, sheet: str = "", columns: str = "") -> tuple:
    """Read a file (refused whole when it cannot be read: nothing is stored), keep it, and validate its rows; a file
    whose columns are none of the three formats waits for its mapping (``pending``: what the Columns box shows),
    unless ``columns`` or the mapping kept with the upload (the same file mapped before) says it."""
    if not file:
        return (*dataset_views(None, lang), None, None)
    table = read_table(file, MAX_UPLOAD_BYTES, sheet)
    needs = needs_columns(table)
    report = None if needs else records_of(table, file, fmt, guess=False)  # a file refused is not stored
    source = Path(file).resolve()
    if source in BUNDLED or source.parent == paths.uploads_dir().resolve():
        stored, name = source, storage.upload_meta(source).get("name") or source.name
    else:
        stored, name = store_upload(file, table.sha256, Path(file).name), Path(file).name
    meta = storage.upload_meta(stored)
    if needs and not columns and meta.get("columns") and meta.get("sheet", "") == table.sheet:
        columns = str(meta["columns"])  # mapped before: used again (and shown, to change)
    pending = pending_of(stored, name, table, columns if needs else "")
    if needs and not columns:
        _, problems, preview = dataset_views(None, lang)
        return pending_summary(pending, lang), problems, preview, None, pending
    if needs:  # a mapping makes the rows' format
        report = records_of(table, stored, "auto", columns=columns, guess=False)
    report = replace(report, name=name, path=str(stored))
    loaded = LoadedDataset(str(stored), report)
    remember_dataset(loaded)
    return (*dataset_views(loaded, lang), loaded, pending)


on_upload = user_errors(read_upload)


def pending_summary(pending: dict, lang: str) -> str:
    """What a file waiting for its columns says: its rows and columns, and whether the mapping shown is a guess."""
    return t("needs_mapping" if pending["guess"] else "needs_mapping_unguessed", lang, name=md(pending["name"]),
             rows=pending["rows"], columns=md(", ".join(pending["columns"][:20])))  # fmt: skip


def pending_of(stored: Path, name: str, table: Any, kept: str = "") -> dict[str, Any]:
    """What the Columns box needs of a file: its columns with their first values, the mapping to preselect (the one
    ``kept`` with the upload, else the guess), its sheets."""
    from lora_core import columns as colmap

    needs = needs_columns(table)
    guess = colmap.guess(table.columns, table.rows) if needs else None
    mapping = colmap.parse(kept) if kept else guess
    return {"path": str(stored), "name": name, "rows": len(table.rows), "sheet": table.sheet, "sheets": table.sheets,
            "needs": needs, "columns": table.columns[:MAX_MAPPED_COLUMNS], "values": column_values(table),
            "guess": guess.spec() if guess else "", "mapping": asdict(mapping) if mapping else {}}  # fmt: skip


MAX_MAPPED_COLUMNS = 200
VALUES_SHOWN = 3
VALUE_CHARS = 80
VALUES_SEARCHED = 1000  # rows looked at for a column's first values


def column_values(table: Any) -> list[list[str]]:
    """Each column with its first few non-empty values (among the first rows), cut short (shown as text)."""
    out = []
    for column in table.columns[:MAX_MAPPED_COLUMNS]:
        values = []
        for row in table.rows[:VALUES_SEARCHED]:
            value = row.get(column) if isinstance(row, dict) else None
            if value not in (None, ""):
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                values.append(text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…")
            if len(values) == VALUES_SHOWN:
                break
        out.append([column, " | ".join(" ".join(v.splitlines()) for v in values)])
    return out


# --- the last dataset of a workspace, offered again to a page opened later (a reload) -----------------------------

LAST_DATASET = "last_dataset.json"


def _last_file() -> Path:
    return paths.workspace() / "Settings" / LAST_DATASET


def remember_dataset(loaded: LoadedDataset) -> None:
    write_json(_last_file(), {"path": loaded.path, "name": loaded.report.name, "columns": loaded.report.columns,
                              "sheet": loaded.report.sheet})  # fmt: skip


def last_dataset() -> dict | None:
    """The workspace's last validated dataset, when its stored file is still there (one of the workspace's
    uploads, or the sample)."""
    try:
        record = json.loads(_last_file().read_text(encoding="utf-8"))
        path, name = Path(str(record["path"])).resolve(), str(record["name"])[:255]
        columns, sheet = str(record.get("columns") or "")[:2000], str(record.get("sheet") or "")[:255]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    stored = {s.path.resolve() for s in storage.uploads()} | BUNDLED
    found = path in stored and path.is_file()
    return {"path": path, "name": name, "columns": columns, "sheet": sheet} if found else None


def last_offer(lang: str) -> Any:
    """The button that loads the last dataset again, naming it; hidden when there is none."""
    last = last_dataset()
    if last is None:
        return gr.update(visible=False)
    return gr.update(value=t("use_last", lang, name=paths.cut(last["name"])), visible=True)


@user_errors
def on_last(lang: str, fmt: str) -> tuple[str, Any, Any, LoadedDataset | None]:
    last = last_dataset()
    if last is None:
        raise gr.Error(t("no_last_dataset", lang), print_exception=False)
    return read_upload(lang, str(last["path"]), fmt, last["sheet"], last["columns"])


def forget_dataset(lang: str) -> tuple:
    """After a file was refused (the error says why): no dataset, rather than the last one under an error badge."""
    _, problems, preview = dataset_views(None, lang)
    return f"{reason_markdown(last_reason())}\n\n{t('dataset_refused', lang)}", problems, preview, None, None


def clear_tokens() -> tuple:
    """No tokens shown (and no legend left in another language)."""
    return gr.update(value=None, color_map={}), None, "", None


def on_format(lang: str, fmt: str, pending: dict | None, loaded: LoadedDataset | None = None) -> tuple:
    """Another format chosen: read the dataset shown again (with its mapping and sheet); a mix stays as it is."""
    if loaded is not None and loaded.sources:
        return (gr.update(),) * 5
    if loaded is not None:
        return on_upload(lang, loaded.path, fmt, loaded.report.sheet, loaded.report.columns)
    if not pending:
        return (*dataset_views(None, lang), None, None)
    return on_upload(lang, pending["path"], fmt, pending.get("sheet", ""))


@functools.cache
def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs, or None. Fonts installed after matplotlib built its
    font cache are found by file name."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    name = next((n for n in CJK_FONT_NAMES if n in known), None)
    if name:
        return name
    for path in font_manager.findSystemFonts():
        if any(part in Path(path).name.lower() for part in CJK_FONT_FILES):
            try:
                font_manager.fontManager.addfont(path)
                return font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
    return None


def length_histogram(lengths: list[int], max_length: int, lang: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    font = cjk_font() if lang == "zh" else None
    if lang == "zh" and font is None:
        lang = "en"  # English labels rather than empty boxes where Chinese glyphs are missing
    # A concrete family name is kept by each text (a generic "sans-serif" would be looked up again when Gradio
    # draws the figure, outside this context).
    with plt.rc_context({"font.family": [font, "sans-serif"]} if font else {}):
        fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
        ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#4c78a8")
        longest = max(lengths, default=0)
        if max_length <= 1.5 * longest:
            ax.axvline(max_length, color="#e45756", linestyle="--", label=t("hist_limit", lang))
        else:  # the limit far to the right would squeeze the data into a sliver: say it instead
            ax.plot([], [], color="#e45756", linestyle="--", label=t("hist_limit_beyond", lang, n=max_length))
            ax.set_xlim(0, longest * 1.1 + 1)
        ax.set_xlabel(t("hist_x", lang))
        ax.set_ylabel(t("hist_y", lang))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of examples
        ax.legend(loc="upper right")
        fig.tight_layout()
    plt.close(fig)
    return fig


@user_errors
def on_tokens(lang: str, loaded: LoadedDataset | None, base_name: str | None, max_length: float) -> tuple:
    if loaded is None:
        raise gr.Error(t("no_dataset", lang), print_exception=False)
    if not base_model_choices():
        raise gr.Error(t("no_base", lang), print_exception=False)
    if not whole_number(max_length, MIN_MAX_LENGTH, int(setting_range("max_length")[1])):
        raise gr.Error(t("bad_max_length", lang, min=MIN_MAX_LENGTH), print_exception=False)
    if not loaded.report.records:
        raise gr.Error(t("no_valid_rows", lang, name=loaded.report.name), print_exception=False)
    tokenizer = tokenizer_of(resolve_base(base_name))
    max_length = int(max_length)
    records = loaded.report.records
    if all(r.is_pair for r in records):
        return pair_tokens(lang, records, tokenizer, max_length)
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
        style=t(f"style_{prompt_style(tokenizer).value}", lang),
    )
    color_map = {trained_label: "#2ca02c", masked_label: "#d0d0d0"}
    return (
        gr.update(value=highlighted, color_map=color_map),
        length_histogram(stats.lengths, max_length, lang),
        summary,
    )


def pair_tokens(lang: str, records: list[Any], tokenizer: Any, max_length: int) -> tuple:
    """The token view of preference pairs: each prompt once, untrained, then its chosen and its rejected answer,
    each trained (in its own colour)."""
    from lora_core.pairs import BRANCHES, encode_pairs, pair_spans

    pairs, _, stats = encode_pairs(records, tokenizer, max_length)
    masked = t("masked", lang)
    names = {b: t(f"trained_{b}", lang) for b in BRANCHES}
    highlighted: list[tuple[str, str | None]] = []
    for i, pair in enumerate(pairs[:HIGHLIGHT_EXAMPLES]):
        spans = pair_spans(tokenizer, pair)
        highlighted += [("\n\n", None)] if i else []
        highlighted += [(text, masked) for text, _ in spans["prompt"]]
        for branch in BRANCHES:
            highlighted += [(f"\n[{t(f'role_{branch}', lang)}] ", None)]
            highlighted += [(text, names[branch]) for text, _ in spans[branch]]
    trained = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    summary = t("token_stats", lang, total=stats.total, tokens=sum(len(p.prompt_ids) for p in pairs) + trained,
                trained=trained, max_length=max_length, truncated=stats.truncated, dropped=sum(stats.dropped.values()),
                style=t(f"style_{prompt_style(tokenizer).value}", lang))  # fmt: skip
    color_map = {names["chosen"]: "#2ca02c", names["rejected"]: "#ff7f0e", masked: "#d0d0d0"}
    return (
        gr.update(value=highlighted, color_map=color_map),
        length_histogram(stats.lengths, max_length, lang),
        summary,
    )


def build(labels: Labels, lang: gr.State) -> dict[str, Any]:
    """Lay out the tab; returns the components other tabs use (the loaded dataset, the base model choice)."""
    from . import data_sources

    loaded = gr.State(None)
    pending = gr.State(None)  # the file read last: its columns, guessed mapping, sheets (``pending_of``)
    labels.add(gr.Markdown(), value="dataset_intro")
    with gr.Row():
        with gr.Column(scale=2):
            upload = labels.add(gr.File(file_types=UPLOAD_TYPES, type="filepath"), label="upload")
        with gr.Column(scale=1):
            fmt = labels.add(gr.Dropdown(["auto", *FORMATS], value="auto"), label="format")
            sheet = labels.add(gr.Dropdown([], visible=False, allow_custom_value=True, elem_id="sheet"),
                               label="sheet")  # fmt: skip
            sample = labels.add(gr.Button(variant="secondary"), value="use_sample")
            pair_sample = labels.add(gr.Button(variant="secondary"), value="use_preference_sample")
            last = gr.Button(variant="secondary", visible=False)  # named by last_offer, in the page's language
    hub = data_sources.hub_section(labels)
    summary = gr.Markdown()
    columns = data_sources.columns_box(labels)
    # Headers are sent with the tables' values (see ``table``), which follow the language switch below.
    problems = labels.add(
        gr.Dataframe(table([], PROBLEM_HEADERS, DEFAULT_LANG), interactive=False, wrap=True, visible=False),
        label="problems",
    )
    preview = labels.add(
        gr.Dataframe(table([], PREVIEW_HEADERS, DEFAULT_LANG), interactive=False, wrap=True), label="preview"
    )

    labels.add(gr.Markdown(), value="tokens_header")
    with gr.Row():
        choices = base_model_choices()
        base = labels.add(base_dropdown(choices, scale=3), label="base_model")
        refresh = labels.add(gr.Button(scale=1), value="refresh")
        max_length = labels.add(
            # no minimum here: Gradio would refuse a small value in English; on_tokens says it in the user's language
            Number(value=TrainConfig.__dataclass_fields__["max_length"].default, precision=0, scale=1),
            label="max_length",
        )
        analyze = labels.add(gr.Button(variant="primary", scale=1), value="analyze")
    token_summary = gr.Markdown()
    highlight = labels.add(gr.HighlightedText(show_legend=True, combine_adjacent=True), label="highlight")
    histogram = labels.add(gr.Plot(), label="histogram")

    stored = stored_items_section(labels, lang, "uploads", storage.uploads, storage.delete_upload)
    mix = data_sources.mix_section(labels)
    shown = gr.State(None)  # (base, max length) of the tokens on screen, to redo them in another language
    dataset_outputs = [summary, problems, preview, loaded, pending]
    token_outputs = [highlight, histogram, token_summary]
    dataset_events = [
        upload.change(on_upload, [lang, upload, fmt], dataset_outputs, api_name="validate_dataset"),
        fmt.change(on_format, [lang, fmt, pending, loaded], dataset_outputs, api_visibility="private"),
        sample.click(
            lambda lang_, fmt_: on_upload(lang_, str(SAMPLE_DATASET), fmt_),
            [lang, fmt],
            dataset_outputs,
            api_visibility="private",
        ),
        pair_sample.click(
            lambda lang_, fmt_: on_upload(lang_, str(PREFERENCE_SAMPLE), fmt_),
            [lang, fmt],
            dataset_outputs,
            api_visibility="private",
        ),
        last.click(on_last, [lang, fmt], dataset_outputs, api_visibility="private"),
    ]

    def after(event: Any, failed: str = "forget") -> None:
        """What follows a dataset event: tokens of the previous dataset would be misleading; after a failure, a file
        that failed is not usable (``forget``), or a mapping or sheet refused leaves the file and its Columns box
        to choose again (``choose``), or nothing changes (``keep``: the error says why)."""
        event.then(clear_tokens, None, [*token_outputs, shown], api_visibility="private")
        if failed == "forget":
            event.failure(forget_dataset, lang, dataset_outputs, api_visibility="private")
        elif failed == "choose":
            event.failure(lambda: (f"{reason_markdown(last_reason())}", None), None, [summary, loaded],
                          api_visibility="private")  # fmt: skip
        event.success(*stored, api_visibility="private")  # a new upload is listed

    for event in dataset_events:
        after(event)
    parts = {"fmt": fmt, "pending": pending, "sheet": sheet, "loaded": loaded, "dataset_outputs": dataset_outputs,
             "after": after}  # fmt: skip
    data_sources.wire(lang, parts, hub, columns, mix)
    refresh.click(refresh_bases, base, base, api_visibility="private")
    tokens = analyze.click(on_tokens, [lang, loaded, base, max_length], token_outputs, api_name="show_tokens")
    tokens.success(lambda *args: args, [base, max_length], shown, api_visibility="private")
    tokens.failure(lambda: None, None, shown, api_visibility="private")
    keep_reason(tokens, markdown=[token_summary])
    lang.change(on_language, [lang, loaded, shown, pending], [summary, problems, preview, *token_outputs,
                columns["values"]], api_visibility="private")  # fmt: skip
    lang.change(last_offer, lang, last, api_visibility="private", show_progress="hidden")
    return {"loaded": loaded, "mix": mix["mix"], "base": base, "max_length": max_length, "stored_uploads": stored,
            "last_offer": (last_offer, lang, last)}  # fmt: skip


def on_language(lang: str, loaded: LoadedDataset | None, shown: tuple | None, pending: dict | None = None,
                columns: Any = None) -> tuple:  # fmt: skip
    """Texts computed by the handlers (summaries, table headers, chart) in the new language."""
    lang = normalize_lang(lang)
    tokens: tuple = (gr.update(), gr.update(), gr.update())
    if loaded is not None and shown is not None:
        # e.g. the model folder is gone: keep what is shown; Show tokens will say why
        with contextlib.suppress(gr.Error):
            tokens = on_tokens(lang, loaded, *shown)
    summary, problems, preview = dataset_views(loaded, lang)
    if loaded is None and pending and pending.get("needs"):  # a file waiting for its columns
        summary = pending_summary(pending, lang)
    values = table(pending["values"], ["col_column", "col_values"], lang) if pending else gr.update()
    return summary, problems, preview, *tokens, values
