"""The Models tab's evaluation card and runs side by side.

The card of the chosen adapter: how it scores against its base model on its dataset's rows (exact match, ROUGE-L,
token F1, eval loss), its loss curves, the rows it answers best and worst, and the forgetting probe (general prompts
whose answers it changed). Every training writes one (``lora_core.evaluation``); Evaluate writes it again, on the
adapter's own dataset or an uploaded one; Export gives it as Markdown and PNG (the Hub model card includes both).

Runs side by side: two or more adapters, their differing settings, their training losses in one plot and their
scores in one table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lora_core import adapters, evaluation, report, runs
from lora_core.errors import SimpleLoraError
from lora_core.evaluation import SCORES, Evaluation, read_evaluation
from lora_core.manifest import Manifest

from .common import Labels, keep_reason, md, user_errors
from .dataset_tab import table
from .i18n import DEFAULT_LANG, t
from .train_view import SERIES_COLORS, evaluation_text

SCORE_HEADERS = ["col_score", "col_base_reply", "col_adapter_reply"]
ROW_HEADERS = ["col_which", "col_row", "col_prompt", "col_reference", "col_base_reply", "col_adapter_reply",
               "col_rouge"]  # fmt: skip
PROBE_HEADERS = ["col_prompt", "col_base_reply", "col_adapter_reply", "col_similarity", "col_base_right",
                 "col_adapter_right"]  # fmt: skip
RUN_HEADERS = ["col_line", "col_adapter_name", "col_dataset", "col_rows_kind", "score_exact_match", "score_rouge_l",
               "score_token_f1", "score_eval_loss", "col_probe_changed", "col_probe_right",
               "col_train_loss"]  # fmt: skip
COMPARE_MAX = 8
NO_CURVES: dict[str, list] = {"train": [], "eval": []}
CURVE_COLORS = ["#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#9d755d", "#000000"]
CELL_MAX = 400  # characters of an answer shown in a table cell


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def _short(text: str) -> str:
    return text if len(text) <= CELL_MAX else text[: CELL_MAX - 1] + "…"


def _mark(right: bool) -> str:
    return "✓" if right else "✗"


def _manifest(path: Path) -> Manifest | None:
    return adapters.read_manifest(path) if adapters.has_manifest(path) else None


def curve_frame(series: dict[str, list[list[float]]]) -> pd.DataFrame:
    """Loss points of named curves: typed columns, and every curve present (an empty one as a single blank point),
    since the browser's plot keeps the column types and the curves it was first drawn with."""
    rows = [(int(step), float(loss), name) for name, points in series.items() for step, loss in points]
    rows += [(0, None, name) for name, points in series.items() if not points]
    return pd.DataFrame({"step": pd.Series([r[0] for r in rows], dtype="int64"),
                         "loss": pd.Series([r[1] for r in rows], dtype="float64"),
                         "series": pd.Series([r[2] for r in rows], dtype="str")})  # fmt: skip


def line_name(index: int) -> str:
    """The name of the comparison's ``index``-th curve: its number, as in the tables' first column."""
    return str(index + 1)


def compare_frame(histories: list[list[list[float]]]) -> pd.DataFrame:
    """The comparison plot's points: always its COMPARE_MAX curves, the unused ones blank."""
    return curve_frame({line_name(i): histories[i] if i < len(histories) else [] for i in range(COMPARE_MAX)})


def card_views(name: str | None, lang: str) -> tuple[str, Any, Any, Any, Any]:
    """The card of adapter ``name``: its summary line, scores table, loss curves, best / worst rows, probe."""
    empty = (table([], SCORE_HEADERS, lang), curve_frame(NO_CURVES), table([], ROW_HEADERS, lang),
             table([], PROBE_HEADERS, lang))  # fmt: skip
    if not name:
        return t("card_choose", lang), *empty
    path = adapters.adapter_path(name)
    manifest = _manifest(path)
    card = read_evaluation(path)
    curves = {"train": manifest.loss_history, "eval": manifest.eval_history} if manifest else NO_CURVES
    if card is None:
        return t("card_none", lang, name=md(name)), empty[0], curve_frame(curves), *empty[2:]
    summary = evaluation_text(card.summary(), lang)
    header = t("card_header", lang, name=md(name), dataset=md(card.dataset), when=card.evaluated_at.replace("T", " "))
    scores = [[t(f"score_{s}", lang), _num(card.base.get(s)), _num(card.tuned.get(s))] for s in (*SCORES, "eval_loss")]
    if card.preference:
        scores.append([t("score_preference", lang), _num(card.preference.get("base")),
                       _num(card.preference.get("adapter"))])  # fmt: skip
    best, worst = card.best_and_worst(3)
    rows = [[t(which, lang), r.row, _short(r.prompt), _short(r.reference), _short(r.base), _short(r.adapter),
             f"{r.adapter_scores['rouge_l']:.2f}"]
            for which, group in (("card_best", best), ("card_worst", worst)) for r in group]  # fmt: skip
    probe = [[_short(p.prompt), _short(p.base), _short(p.adapter), f"{p.similarity:.2f}", _mark(p.base_right),
              _mark(p.adapter_right)] for p in card.probe]  # fmt: skip
    return (f"{header}\n\n{summary}", table(scores, SCORE_HEADERS, lang), curve_frame(curves),
            table(rows, ROW_HEADERS, lang), table(probe, PROBE_HEADERS, lang))  # fmt: skip


@user_errors
def on_card(lang: str, name: str | None) -> tuple:
    return card_views(name, lang)


def own_dataset(path: Path) -> Any:
    """The file the adapter was trained on (or the rows of its datasets mixed), when its run's record is here and
    the files still are."""
    from lora_core.mixing import load_mix

    manifest = _manifest(path)
    if manifest is None:
        return None
    for record in runs.list_runs():
        if record.get("run") == manifest.run:
            config = record.get("config") or {}
            if config.get("datasets"):
                try:
                    return load_mix(config["datasets"], int(config.get("seed") or 0), skip_invalid=True).report
                except SimpleLoraError:
                    return None
            data = config.get("data")
            return data if data and Path(data).is_file() else None
    return None


@user_errors
def on_evaluate(lang: str, name: str | None, file: str | None, rows: Any) -> tuple:
    """Evaluate the adapter on the uploaded dataset, else on its own; then show its new card."""
    if not name:
        raise gr.Error(t("choose_adapter", lang), print_exception=False)
    path = adapters.adapter_path(name)
    data = file or own_dataset(path)
    if data is None:
        raise gr.Error(t("card_needs_data", lang, name=md(name)), print_exception=False)
    try:
        limit = int(rows) if float(rows).is_integer() else -1
    except (TypeError, ValueError, OverflowError):
        limit = -1  # refused by the core, naming the setting and its range
    evaluation.evaluate(path, data, limit=limit)
    return card_views(name, lang)


@user_errors
def on_export(lang: str, name: str | None) -> list[str]:
    """The card as a Markdown file and a PNG to download."""
    from .models_tab import downloads_dir

    if not name:
        raise gr.Error(t("choose_adapter", lang), print_exception=False)
    path = adapters.adapter_path(name)
    files = report.export_card(path, _manifest(path), downloads_dir() / "cards")
    if not files:
        raise gr.Error(t("card_none", lang, name=md(name)), print_exception=False)
    return [str(f) for f in files]


def _run_row(name: str, manifest: Manifest | None, card: Evaluation | None, lang: str) -> list[Any]:
    scores = [_num(card.tuned.get(s)) if card else "–" for s in (*SCORES, "eval_loss")]
    kind = t(f"rows_{card.rows_kind}", lang).split(":")[0].split("：")[0] if card else "–"
    changed = f"{card.probe_changed} / {len(card.probe)}" if card and card.probe else "–"
    right = "{} → {}".format(*card.probe_right) if card and card.probe else "–"
    final = _num(manifest.final_train_loss) if manifest else "–"
    return [name, card.dataset if card else (manifest.dataset.name if manifest else ""), kind, *scores, changed,
            right, final]  # fmt: skip


@user_errors
def on_compare(lang: str, names: list[str] | None) -> tuple[Any, Any, Any]:
    """The chosen adapters side by side: differing settings, training losses in one plot, scores in one table."""
    names = list(dict.fromkeys(names or []))
    if not 2 <= len(names) <= COMPARE_MAX:
        raise gr.Error(t("compare_choose", lang, max=COMPARE_MAX), print_exception=False)
    manifests: dict[str, Manifest] = {}
    cards: dict[str, Evaluation | None] = {}
    for name in names:
        path = adapters.adapter_path(name)
        manifest = _manifest(path)
        if manifest is None:
            raise gr.Error(t("compare_no_manifest", lang, name=md(name)), print_exception=False)
        manifests[name], cards[name] = manifest, read_evaluation(path)
    diff = report.settings_diff(manifests)
    numbered = [f"{line_name(i)}: {name}" for i, name in enumerate(names)]
    diff_frame = pd.DataFrame([[key, *(_setting(v) for v in values)] for key, values in diff],
                              columns=[t("col_setting", lang), *numbered])  # fmt: skip
    curves = compare_frame([m.loss_history for m in manifests.values()])
    scores = table([[line_name(i), *_run_row(n, manifests[n], cards[n], lang)] for i, n in enumerate(names)],
                   RUN_HEADERS, lang)  # fmt: skip
    return diff_frame, curves, scores


def _setting(value: Any) -> str:
    return "" if value is None else str(value)


def adapter_names() -> Any:
    return gr.update(choices=[a.name for a in adapters.scan() if a.valid])


# --- layout ---------------------------------------------------------------------------------------------------


def build(labels: Labels, lang: gr.State, choice: gr.Dropdown, adapters_table: gr.Dataframe) -> None:
    from lora_core.config import TrainConfig

    with labels.add(gr.Accordion(open=True, elem_id="eval-card"), label="card_title"):
        card_status = gr.Markdown()
        with gr.Row():
            scores = labels.add(gr.Dataframe(table([], SCORE_HEADERS, DEFAULT_LANG), interactive=False, scale=1),
                                label="card_scores")  # fmt: skip
            curve = labels.add(gr.LinePlot(curve_frame(NO_CURVES), x="step", y="loss", color="series", scale=2,
                                           color_map=SERIES_COLORS, y_title=" ", x_title="step"),
                               label="card_curve")  # fmt: skip
        rows = labels.add(gr.Dataframe(table([], ROW_HEADERS, DEFAULT_LANG), interactive=False, wrap=True,
                                       column_widths=["7%", "5%", "18%", "20%", "20%", "20%", "10%"]),
                          label="card_rows")  # fmt: skip
        probe = labels.add(gr.Dataframe(table([], PROBE_HEADERS, DEFAULT_LANG), interactive=False, wrap=True,
                                        column_widths=["20%", "30%", "30%", "8%", "6%", "6%"], elem_id="card-probe"),
                           label="card_probe")  # fmt: skip
        with gr.Row():
            data = labels.add(gr.File(file_types=[".json", ".jsonl"], type="filepath", scale=2), label="card_data")
            limit = labels.add(gr.Number(TrainConfig.__dataclass_fields__["eval_rows"].default, precision=0,
                                         scale=1), label="card_rows_n")  # fmt: skip
            evaluate = labels.add(gr.Button(variant="primary", scale=1), value="card_evaluate")
            export = labels.add(gr.Button(scale=1), value="card_export")
        exported = labels.add(gr.File(file_count="multiple", interactive=False, height=110), label="card_files")
    with labels.add(gr.Accordion(open=False, elem_id="compare-runs"), label="compare_title"):
        with gr.Row():
            pick = labels.add(
                gr.Dropdown([], multiselect=True, allow_custom_value=True, scale=4), label="compare_pick"
            )
            compare = labels.add(gr.Button(variant="primary", scale=1), value="compare")
        diff = labels.add(gr.Dataframe(interactive=False, wrap=True), label="compare_diff")
        colors = dict(zip(map(line_name, range(COMPARE_MAX)), CURVE_COLORS, strict=True))
        overlay = labels.add(gr.LinePlot(compare_frame([]), x="step", y="loss", color="series", y_title=" ",
                                         x_title="step", color_map=colors, elem_id="compare-curves"),
                             label="compare_curves")  # fmt: skip
        run_scores = labels.add(gr.Dataframe(table([], RUN_HEADERS, DEFAULT_LANG), interactive=False, wrap=True,
                                             elem_id="compare-scores"),
                                label="compare_scores")  # fmt: skip
        compare_status = gr.Markdown()
    views = [card_status, scores, curve, rows, probe]
    keep_reason(choice.change(on_card, [lang, choice], views, api_name="evaluation_card"), markdown=[card_status])
    lang.change(on_card, [lang, choice], views, api_visibility="private", show_progress="hidden")
    keep_reason(evaluate.click(on_evaluate, [lang, choice, data, limit], views, api_name="evaluate_adapter",
                               concurrency_limit=1, concurrency_id="evaluate", show_progress_on=card_status),
                markdown=[card_status])  # fmt: skip
    keep_reason(export.click(on_export, [lang, choice], exported, api_name="export_card"), markdown=[card_status])
    adapters_table.change(adapter_names, None, pick, api_visibility="private", queue=False, show_progress="hidden")
    keep_reason(compare.click(on_compare, [lang, pick], [diff, overlay, run_scores], api_name="compare_adapters",
                              show_progress_on=compare_status), markdown=[compare_status])  # fmt: skip
