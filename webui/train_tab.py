"""Tab 2: pick a base model, see the detected targets, set hyper-parameters, train with a live loss plot.

The training runs in the core's background thread; this tab only polls its snapshot with a ``gr.Timer``, so
closing the browser never stalls or stops it, and reopening the page shows it again.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from lora_core import training
from lora_core.config import TrainConfig
from lora_core.demo import DEMO_TRAINING
from lora_core.targets import PRESETS
from lora_core.training import State, TrainingJob

from .common import Labels, user_errors
from .dataset_tab import LoadedDataset, base_model_choices, refresh_bases, resolve_base
from .i18n import t

logger = logging.getLogger(__name__)

# The job this process last started (the core allows one at a time); every browser session sees it.
_LAST: dict[str, TrainingJob | None] = {"job": None}
DEFAULTS = TrainConfig(base="", data="", task="")
HYPER = (
    "epochs", "max_steps", "learning_rate", "rank", "alpha", "dropout", "batch_size", "grad_accum", "max_length",
    "val_split", "warmup_ratio", "scheduler", "seed", "quantization", "gradient_checkpointing", "skip_invalid",
)  # fmt: skip


def current_job() -> TrainingJob | None:
    return training.active_job() or _LAST["job"]


def _gb(n: int) -> str:
    return f"{n / 1024**3:.2f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


@user_errors
def on_model(lang: str, base_name: str | None, preset: str, rank: float, batch: float, max_len: float, quant: str):
    """Detected architecture and targets, trainable parameters and memory, before anything is loaded."""
    if not base_name:
        return t("no_base", lang), gr.update()
    base = resolve_base(base_name)
    est = training.estimate(base, preset, int(rank), int(batch), int(max_len), _quant_for_estimate(quant))
    info = t(
        "model_info",
        lang,
        model_type=est.model_type,
        targets=", ".join(est.target_modules),
        reason=est.targets_reason,
        lora=f"{est.lora_params:,}",
        total=f"{est.total_params:,}",
        pct=f"{100 * est.lora_params / max(1, est.total_params):.2f}",
        memory=_gb(est.memory_bytes),
        device=est.device.upper(),
        quant=est.quantization,
    )
    return info, gr.update(choices=est.linear_modules, value=est.target_modules)


def _quant_for_estimate(quant: str) -> str:
    return "auto" if training.device_kind() != "cuda" else quant


def demo_settings() -> list[Any]:
    """The settings that make the demo model learn the sample data in a few minutes on a CPU."""
    values = {**{k: getattr(DEFAULTS, k) for k in HYPER}, **DEMO_TRAINING}
    return [values[k] for k in HYPER] + [values["targets"]]


@user_errors
def on_start(lang: str, loaded: LoadedDataset | None, base_name: str | None, task: str, targets: list[str], *hyper):
    if loaded is None:
        raise gr.Error(t("no_dataset", lang))
    base = resolve_base(base_name)
    values = dict(zip(HYPER, hyper, strict=True))
    for key in ("epochs", "learning_rate", "alpha", "dropout", "val_split", "warmup_ratio"):
        values[key] = float(values[key])
    for key in ("max_steps", "rank", "batch_size", "grad_accum", "max_length", "seed"):
        values[key] = int(values[key])
    if training.device_kind() != "cuda":
        values["quantization"] = "none"
    config = TrainConfig(
        base=str(base),
        data=loaded.path,
        task=task or loaded.report.name.rsplit(".", 1)[0],
        format=loaded.report.format,
        targets=",".join(targets) if targets else "all-linear",
        **values,
    )
    _LAST["job"] = TrainingJob(config).start()
    return t("started", lang, task=config.task)


def on_stop(lang: str, save: bool) -> str:
    job = training.active_job()
    if job is None:
        return t("nothing_running", lang)
    job.stop(save=save)
    return t("stopping_save" if save else "stopping_discard", lang)


def loss_frame(snap: dict | None, lang: str) -> pd.DataFrame:
    train_name, eval_name = t("series_train", lang), t("series_eval", lang)
    rows = [(s, v, train_name) for s, v in (snap or {}).get("loss", [])]
    rows += [(s, v, eval_name) for s, v in (snap or {}).get("eval_loss", [])]
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def progress_text(snap: dict | None, lang: str) -> str:
    if not snap:
        return t("no_training", lang)
    state = snap["state"]
    parts = [t("progress", lang, task=snap["task"], state=t(f"state_{state}", lang), step=snap["step"],
               total=snap["total_steps"] or "?", epoch=f"{snap['epoch']:.2f}")]  # fmt: skip
    if state == State.RUNNING:
        eta = snap["eta_s"]
        parts.append(
            t("speed", lang, eta=_duration(eta) if eta is not None else "?", tps=f"{snap['tokens_per_s']:.0f}")
        )
    if snap.get("eval_loss_before") is not None:
        after = snap.get("eval_loss_after")
        parts.append(t("eval_before_after", lang, before=f"{snap['eval_loss_before']:.4f}",
                       after=f"{after:.4f}" if after is not None else "…"))  # fmt: skip
    if state in (State.COMPLETED, State.STOPPED) and snap.get("adapter_dir"):
        parts.append(t("adapter_saved", lang, path=snap["adapter_dir"]))
    elif state == State.STOPPED:
        parts.append(t("discarded", lang))
    if state == State.FAILED:
        parts.append(t("failed", lang, error=snap.get("error") or ""))
    return "\n\n".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m {seconds % 60:02d}s"
    )


def history_rows(lang: str) -> list[list]:
    rows = []
    for run in training.list_runs():
        losses = run.get("loss") or []
        rows.append([
            run.get("run", ""),
            t(f"state_{run.get('state', 'failed')}", lang),
            run.get("step", 0),
            f"{losses[-1][1]:.4f}" if losses else "",
            run.get("started_at", ""),
            run.get("adapter_dir") or run.get("error") or "",
        ])  # fmt: skip
    return rows


def poll(lang: str, seen_state: str | None) -> tuple:
    """Timer tick: progress, plot, and (when the state changed) the run history."""
    job = current_job()
    snap = job.snapshot() if job else None
    state = str(snap["state"]) if snap else None
    history = history_rows(lang) if state != seen_state else gr.skip()
    return progress_text(snap, lang), loss_frame(snap, lang), history, state


def build(labels: Labels, lang: gr.State, shared: dict[str, Any]) -> None:
    choices = base_model_choices()
    cpu = training.device_kind() != "cuda"
    labels.add(gr.Markdown(), value="train_intro")
    with gr.Row():
        base = labels.add(gr.Dropdown(choices, value=choices[0] if choices else None, scale=3), label="base_model")
        refresh = labels.add(gr.Button(scale=1), value="refresh")
        task = labels.add(gr.Textbox(value="my_task", max_length=64, scale=2), label="task_name")
    model_info = gr.Markdown()
    with gr.Row():
        preset = labels.add(gr.Radio(list(PRESETS), value=DEFAULTS.targets, scale=1), label="target_preset")
        targets = labels.add(gr.Dropdown([], multiselect=True, scale=3), label="targets", info="targets_info")
    with labels.add(gr.Accordion(open=True), label="hyper"):
        with gr.Row():
            epochs = labels.add(gr.Number(DEFAULTS.epochs, minimum=0.01), label="epochs")
            max_steps = labels.add(gr.Number(DEFAULTS.max_steps, minimum=0, precision=0), label="max_steps")
            lr = labels.add(gr.Number(DEFAULTS.learning_rate, minimum=1e-7), label="learning_rate")
            scheduler = labels.add(
                gr.Dropdown(["cosine", "linear", "constant"], value=DEFAULTS.scheduler), label="scheduler"
            )
            warmup = labels.add(gr.Number(DEFAULTS.warmup_ratio, minimum=0, maximum=0.9), label="warmup_ratio")
        with gr.Row():
            rank = labels.add(gr.Number(DEFAULTS.rank, minimum=1, precision=0), label="rank")
            alpha = labels.add(gr.Number(DEFAULTS.alpha, minimum=0.1), label="alpha")
            dropout = labels.add(gr.Number(DEFAULTS.dropout, minimum=0, maximum=0.9), label="dropout")
            batch = labels.add(gr.Number(DEFAULTS.batch_size, minimum=1, precision=0), label="batch_size")
            accum = labels.add(gr.Number(DEFAULTS.grad_accum, minimum=1, precision=0), label="grad_accum")
        with gr.Row():
            max_len = labels.add(gr.Number(DEFAULTS.max_length, minimum=8, precision=0), label="max_length")
            val = labels.add(gr.Number(DEFAULTS.val_split, minimum=0, maximum=0.49), label="val_split")
            seed = labels.add(gr.Number(DEFAULTS.seed, precision=0), label="seed")
            quant = labels.add(
                gr.Dropdown(["auto", "4bit", "8bit", "none"], value="none" if cpu else "auto", interactive=not cpu),
                label="quantization",
                info="quant_cpu" if cpu else "quant_gpu",
            )
        with gr.Row():
            checkpointing = labels.add(gr.Checkbox(DEFAULTS.gradient_checkpointing), label="gradient_checkpointing")
            skip_invalid = labels.add(gr.Checkbox(DEFAULTS.skip_invalid), label="skip_invalid")
            demo_btn = labels.add(gr.Button(size="sm"), value="demo_settings")
    with gr.Row():
        start = labels.add(gr.Button(variant="primary"), value="start")
        stop_save = labels.add(gr.Button(variant="stop"), value="stop_save")
        stop_discard = labels.add(gr.Button(), value="stop_discard")
    status = gr.Markdown()
    progress = gr.Markdown()
    plot = labels.add(
        gr.LinePlot(loss_frame(None, "en"), x="step", y="loss", color="series", height=280),
        label="loss_plot",
    )
    history = labels.add(
        gr.Dataframe(headers=["run", "state", "step", "loss", "started", "adapter"], interactive=False, wrap=True),
        label="history",
        headers=["col_run", "col_state", "col_step", "col_loss", "col_started", "col_adapter"],
    )
    seen_state = gr.State(None)

    hyper = [epochs, max_steps, lr, rank, alpha, dropout, batch, accum, max_len, val, warmup, scheduler, seed, quant,
             checkpointing, skip_invalid]  # fmt: skip
    model_inputs = [lang, base, preset, rank, batch, max_len, quant]
    for trigger in (base.change, preset.change, rank.change, batch.change, max_len.change):
        trigger(on_model, model_inputs, [model_info, targets], api_visibility="private")
    refresh.click(refresh_bases, base, base, api_visibility="private")
    demo_btn.click(demo_settings, None, [*hyper, preset], api_visibility="private")
    start.click(on_start, [lang, shared["loaded"], base, task, targets, *hyper], status, api_name="start_training")
    stop_save.click(lambda lang_: on_stop(lang_, True), lang, status, api_name="stop_training")
    stop_discard.click(lambda lang_: on_stop(lang_, False), lang, status, api_name="discard_training")
    timer = gr.Timer(1.0)
    timer.tick(poll, [lang, seen_state], [progress, plot, history, seen_state], api_visibility="private")
    shared["train_base"] = base
