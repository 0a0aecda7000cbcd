"""What the Train tab shows of a run: its progress line, the loss plot's points, its samples and the history of
runs."""

from __future__ import annotations

import pandas as pd

from lora_core import paths, runs
from lora_core.runs import ACTIVE_STATES, State

from .common import md
from .dataset_tab import table
from .i18n import error_message, t

SERIES = ("train", "eval")  # the curves' names in the plot's data; never shown (the legend is the plot's label)
SERIES_COLORS = {"train": "#4c78a8", "eval": "#e45756"}  # blue and red, as the plots' labels say
EMPTY_X_MAX = 10  # the step axis before a run's length is known
HISTORY_HEADERS = ["col_run", "col_state", "col_dataset", "col_step", "col_loss", "col_started", "col_adapter"]
SAMPLE_HEADERS = ["col_step", "col_row", "col_prompt", "col_reference", "col_adapter_reply"]


def loss_frame(snap: dict | None) -> pd.DataFrame:
    """The plot's points. The browser's plot keeps what it learnt from the data it was first drawn with (which
    columns are numbers, which curves exist) and later only swaps the points, so: typed columns even when empty,
    and both curves always present (an empty one as a single blank point), under fixed names whose colours the
    plot's label explains in the user's language."""
    rows = [(s, v, SERIES[0]) for s, v in (snap or {}).get("loss", [])]
    rows += [(s, v, SERIES[1]) for s, v in (snap or {}).get("eval_loss", [])]
    rows += [(0, None, name) for name in SERIES if name not in {r[2] for r in rows}]
    return pd.DataFrame(
        {
            "step": pd.Series([r[0] for r in rows], dtype="int64"),
            "loss": pd.Series([r[1] for r in rows], dtype="float64"),
            "series": pd.Series([r[2] for r in rows], dtype="str"),
        }
    )


# A DPO / ORPO run's second plot: the share of pairs preferred, and the method's own signal (DPO's reward margin,
# ORPO's log odds ratio), under fixed names as for the loss plot.
PREFERENCE_SERIES = ("accuracy", "signal")
PREFERENCE_COLORS = {"accuracy": "#54a24b", "signal": "#b279a2"}  # green and purple, as the plot's label says


def preference_frame(snap: dict | None) -> pd.DataFrame:
    history = (snap or {}).get("preference") or {}
    signal = history.get("log_odds") or history.get("margin") or []
    rows = [(s, v, "accuracy") for s, v in history.get("accuracy", [])] + [(s, v, "signal") for s, v in signal]
    rows += [(0, None, name) for name in PREFERENCE_SERIES if name not in {r[2] for r in rows}]
    return pd.DataFrame(
        {
            "step": pd.Series([r[0] for r in rows], dtype="int64"),
            "value": pd.Series([r[1] for r in rows], dtype="float64"),
            "series": pd.Series([r[2] for r in rows], dtype="str"),
        }
    )


def preference_points(snap: dict | None) -> int:
    return sum(len(points) for points in ((snap or {}).get("preference") or {}).values())


def x_max(snap: dict | None) -> int:
    """The end of the plot's step axis: the run's last step, so the curve fills the plot as the run goes."""
    if not snap:
        return EMPTY_X_MAX
    last = max((step for step, _ in snap["loss"] + snap["eval_loss"]), default=0)
    return max(snap["total_steps"] or EMPTY_X_MAX, last, 1)


def y_range(snap: dict | None) -> list[float] | None:
    """The loss axis: from 0 to a quarter above the run's first loss, so that a single point keeps its tick inside
    the plot. It stays the same for the whole run (the browser's plot stops taking new points when its axis range
    changes under it); None (the plot's own) before the first point."""
    first = next((v for _, v in (snap or {}).get("loss", []) if v is not None), None)
    if first is None:
        return None
    return [0.0, round(first * 1.25 + 0.05, 2)]


def _error(snap: dict, lang: str) -> str:
    """A run's error in ``lang``: translated by its code and params when the table has it."""
    message = snap.get("error") or ""
    code = snap.get("error_code")
    return error_message(code, snap.get("error_params") or {}, lang, message) if code else message


def progress_text(snap: dict | None, lang: str) -> str:
    if not snap:
        return t("no_training", lang)
    state = snap["state"]
    parts = [t("progress", lang, task=md(snap["task"]), state=t(f"state_{state}", lang), step=snap["step"],
               total=snap["total_steps"] or "?", epoch=f"{snap['epoch']:.2f}")]  # fmt: skip
    parts.append(dataset_text(snap, lang))
    if state == State.RUNNING:
        eta = snap["eta_s"]
        parts[0] += " · " + t(
            "speed", lang, eta=_duration(eta) if eta is not None else "…", tps=f"{snap['tokens_per_s']:.0f}"
        )
        threads, cores = snap.get("threads") or 0, (snap.get("detail") or {}).get("cores") or 0
        if 0 < threads < cores:  # a shared machine: say why it is slower than it was
            parts[0] += " · " + t("threads_busy", lang, threads=int(threads), cores=int(cores))
    elif state in (State.COMPLETED, State.STOPPED) and snap.get("elapsed_s"):
        parts[0] += " · " + t("took", lang, time=_duration(snap["elapsed_s"]))
    if snap.get("eval_loss_before") is not None:
        after = snap.get("eval_loss_after")
        parts.append(t("eval_before_after", lang, before=f"{snap['eval_loss_before']:.4f}",
                       after=f"{after:.4f}" if after is not None else "…"))  # fmt: skip
    if (snap.get("detail") or {}).get("phase") == "evaluating":
        parts.append(t("evaluating", lang))
    if state in (State.COMPLETED, State.STOPPED) and snap.get("adapter_dir"):
        parts.append(t("adapter_saved", lang, path=paths.shown(snap["adapter_dir"])))
        if snap.get("evaluation"):
            parts.append(evaluation_text(snap["evaluation"], lang))
            if not snap["evaluation"].get("error"):
                parts[-1] += " " + t("eval_see_card", lang)
    elif state == State.STOPPED:
        parts.append(t("discarded", lang))
    if state == State.FAILED:
        parts.append(t("failed", lang, error=md(_error(snap, lang))))
    return "\n\n".join(parts)


def evaluation_text(summary: dict, lang: str) -> str:
    """One line of a run's evaluation (``Evaluation.summary()``), or why there is none."""
    error = summary.get("error")
    if error == "stopped":
        return t("eval_stopped", lang)
    if error:
        return t("eval_failed", lang, error=md(error_message(error, summary.get("params") or {}, lang, error)))
    base, tuned = summary.get("base") or {}, summary.get("adapter") or {}
    right = summary.get("probe_right") or ["–", "–"]
    preference = summary.get("preference") or {}
    pairs = t("eval_pairs", lang, pairs=preference.get("pairs", 0), base=_score(preference.get("base")),
              tuned=_score(preference.get("adapter"))) + " " if preference else ""  # fmt: skip
    return pairs + t("eval_done", lang, kind=t(f"rows_{summary.get('rows_kind')}", lang), rows=summary.get("rows", 0),
             base_em=_score(base.get("exact_match")), tuned_em=_score(tuned.get("exact_match")),
             base_rl=_score(base.get("rouge_l")), tuned_rl=_score(tuned.get("rouge_l")),
             changed=summary.get("probe_changed", 0), total=summary.get("probe_total", 0),
             base_right=right[0], tuned_right=right[1])  # fmt: skip


def _score(value: float | None) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


def samples_table(snap: dict | None, lang: str) -> pd.DataFrame:
    """The answers given during the run, newest first."""
    rows = [[s["step"], s["row"], s["prompt"], s["reference"], s["answer"]]
            for s in reversed((snap or {}).get("samples") or [])]  # fmt: skip
    return table(rows, SAMPLE_HEADERS, lang)


def dataset_text(snap: dict, lang: str) -> str:
    """Which dataset a run trains on: its name, and once it is read its rows and the start of its sha256."""
    read = (snap.get("detail") or {}).get("dataset") or {}
    name = md(snap.get("dataset_name") or read.get("name") or "?")
    if read.get("sha256"):
        return t("run_dataset_detail", lang, name=name, rows=read.get("rows_total", "?"), sha=read["sha256"][:12])
    return t("run_dataset", lang, name=name)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m {seconds % 60:02d}s"
    )


def history_rows(lang: str) -> list[list]:
    """Every recorded run, newest first. The live step and loss of a running one are in the progress line."""
    rows = []
    for run in runs.list_runs():
        state = str(run.get("state", "failed"))
        active = state in ACTIVE_STATES
        losses = run.get("loss") or []
        if run.get("adapter_dir"):
            outcome = paths.shown(run["adapter_dir"])
        elif run.get("error"):
            outcome = _error(run, lang)
        else:
            outcome = t("nothing_saved", lang) if state == State.STOPPED else ""
        rows.append([
            run.get("run", ""),
            t(f"state_{state}", lang),
            run.get("dataset_name") or ((run.get("detail") or {}).get("dataset") or {}).get("name", ""),
            "" if active else run.get("step", 0),
            f"{losses[-1][1]:.4f}" if losses and not active else "",
            (run.get("started_at") or "").replace("T", " "),
            outcome,
        ])  # fmt: skip
    return rows


def history_table(lang: str) -> pd.DataFrame:
    return table(history_rows(lang), HISTORY_HEADERS, lang)
