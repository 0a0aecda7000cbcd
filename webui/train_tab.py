"""Tab 2: pick a base model, see the detected targets, set hyper-parameters, train with a live loss plot.

The training runs in the core's background thread; this tab only polls its snapshot with a ``gr.Timer``, so
closing the browser never stalls or stops it, and reopening the page shows it again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from lora_core import estimate, models, paths, saved_settings, training
from lora_core.config import TrainConfig
from lora_core.errors import SimpleLoraError, TrainingError
from lora_core.runs import ACTIVE_STATES, FINAL_STATES
from lora_core.targets import PRESETS, targets_for_folder
from lora_core.training import TrainingJob

from .common import Labels, Number, base_dropdown, finite_number, keep_reason, md, user_errors
from .dataset_tab import LoadedDataset, base_model_choices, refresh_bases, resolve_base, table
from .i18n import DEFAULT_LANG, LANGS, t
from .train_form import (
    DEFAULTS,
    HYPER,
    checkpointing_default,
    checkpointing_for,
    demo_settings,
    on_estimate,
    on_model,
)
from .train_view import (
    EMPTY_X_MAX,
    HISTORY_HEADERS,
    PREFERENCE_COLORS,
    SAMPLE_HEADERS,
    SERIES,
    SERIES_COLORS,
    history_rows,
    history_table,
    loss_frame,
    preference_frame,
    preference_points,
    progress_text,
    samples_table,
    x_max,
    y_range,
)

__all__ = [
    "HISTORY_HEADERS",
    "SAMPLE_HEADERS",
    "SERIES",
    "history_rows",
    "history_table",
    "loss_frame",
    "progress_text",
]

logger = logging.getLogger(__name__)

# The job each workspace last started (the core allows one at a time); every browser session of it sees it.
_LAST: dict[str | None, TrainingJob] = {}
FLOAT_SETTINGS = tuple(k for k in HYPER if isinstance(getattr(DEFAULTS, k), float))
INT_SETTINGS = tuple(k for k in HYPER if type(getattr(DEFAULTS, k)) is int)
STATUS_FIELDS = (
    "run", "task", "state", "step", "total_steps", "epoch", "loss", "eval_loss", "eta_s", "tokens_per_s", "threads",
    "elapsed_s", "eval_loss_before", "eval_loss_after", "adapter_dir", "error", "error_code", "started_at",
    "finished_at", "samples", "evaluation", "method", "preference",
)  # fmt: skip


def current_job() -> TrainingJob | None:
    user = paths.current_user()
    active = training.active_job()
    return active if active is not None and active.user == user else _LAST.get(user)


# --- Start / Stop ------------------------------------------------------------------------------------------------


def _settings(hyper: tuple) -> dict[str, Any]:
    """The form's values as TrainConfig takes them: numbers as numbers (a whole float as an int where the setting
    counts things); what is not a finite number is refused here, the ranges by TrainConfig.check."""
    values = dict(zip(HYPER, hyper, strict=True))
    for key in (*FLOAT_SETTINGS, *INT_SETTINGS):
        value = values[key]
        number = finite_number(value)
        if number is None:
            raise TrainingError("setting_not_number", setting=key, value=str(value)[:40])
        values[key] = int(number) if key in INT_SETTINGS and number.is_integer() else number
    if models.device_kind() != "cuda":
        values["quantization"] = "none"
    return values


def setting_message(exc: TrainingError, lang: str) -> str | None:
    """A refused setting named by its label in the form, with what it accepts; None for other errors."""
    if exc.code not in ("setting_range", "setting_choice", "setting_not_number"):
        return None
    return t(
        exc.code,
        lang,
        **{**exc.params, "label": t(exc.params["setting"], lang), "choices": ", ".join(exc.params.get("choices", []))},
    )


@user_errors
def on_start(
    lang: str, loaded: LoadedDataset | None, base_name: str | None, task: str, preset: str, targets: list[str] | None,
    method: str, beta: float, sft_weight: float, epochs: float, max_steps: float, learning_rate: float, rank: float,
    alpha: float, dropout: float, batch_size: float, grad_accum: float, max_length: float, val_split: float,
    warmup_ratio: float, scheduler: str, seed: float, quantization: str, gradient_checkpointing: bool,
    skip_invalid: bool, samples: float, sample_rows: str, eval_rows: float, mix: list | None = None,
) -> str:  # fmt: skip
    """Start a training on a background thread; the timer shows it. No targets chosen: the preset's. While the
    Dataset tab's mix (``mix``, the page's state) has datasets, they are the data.

    The settings are named parameters (HYPER, in its order; a test checks it) so that API clients can pass only
    those they change."""
    if mix:
        loaded = mixed_dataset(mix)
    if loaded is None:
        raise gr.Error(t("no_dataset", lang), print_exception=False)
    base = resolve_base(base_name)
    hyper = (
        method, beta, sft_weight, epochs, max_steps, learning_rate, rank, alpha, dropout, batch_size, grad_accum,
        max_length, val_split, warmup_ratio, scheduler, seed, quantization, gradient_checkpointing, skip_invalid,
        samples, sample_rows, eval_rows,
    )  # fmt: skip
    try:
        values = _settings(hyper)
        config = TrainConfig(
            base=str(base),
            task=(task or "").strip() or loaded.report.name.rsplit(".", 1)[0][:64],
            targets=_targets_spec(base, preset, targets),
            **loaded.config(),
            **values,
        )
        config.check()
    except TrainingError as exc:
        message = setting_message(exc, lang)
        if message is None:
            raise
        raise gr.Error(message, print_exception=False) from exc
    usable = loaded.report.usable(skip_invalid=values["skip_invalid"])  # invalid rows: said now, not by the thread
    check_sample_rows(config, {r.row for r in usable}, loaded.report.name)
    training.check_method(config, usable, loaded.report.name)  # pairs need dpo / orpo, instruction rows sft
    estimate.check_fits(config)  # a training that cannot fit is refused before a run exists
    _LAST[paths.current_user()] = TrainingJob(config).start()
    return t("started", lang, task=md(config.task))


def mixed_dataset(mix: list[dict]) -> LoadedDataset:
    """The datasets of the Dataset tab's mix, read again (each as it was added: its mapping, sheet, limit, weight)."""
    from lora_core.mixing import load_mix, source_from

    from .dataset_tab import MAX_UPLOAD_BYTES

    sources = [source_from(m) for m in mix]
    report = load_mix(sources, 42, skip_invalid=True, max_bytes=MAX_UPLOAD_BYTES).report
    return LoadedDataset(sources[0].path, report, tuple(sources))


def check_sample_rows(config: TrainConfig, rows: set[int], file: str) -> None:
    """A sample row that is not a usable row of the dataset is refused at Start, not by the run's thread."""
    from lora_core.sampling import parse_rows

    for row in parse_rows(config.sample_rows):
        if row not in rows:
            raise TrainingError("sample_row_missing", row=row, file=file)


def _targets_spec(base: Path, preset: str, targets: list[str] | None) -> str:
    """The preset's name when the modules shown are just what it detected (the manifest then says so), else the
    user's own list."""
    preset = preset if preset in PRESETS else DEFAULTS.targets
    if not targets:
        return preset
    try:
        detected = targets_for_folder(base, preset).target_modules
    except SimpleLoraError:  # the start itself says what is wrong with the model
        detected = None
    return preset if detected is not None and sorted(targets) == sorted(detected) else ",".join(targets)


def stop_training(lang: str) -> str:
    return on_stop(lang, True)


def discard_training(lang: str, confirmed: bool = True) -> str:
    """Stop without saving, once the page's confirmation was accepted (an API client confirms by calling)."""
    if not confirmed:
        return t("discard_cancelled", lang)
    return on_stop(lang, False)


# The page asks before a run's work is thrown away; the answer reaches discard_training as ``confirmed``.
CONFIRM_DISCARD_JS = (
    "(lang, confirmed) => [lang, window.confirm("
    + json.dumps({code: t("confirm_discard", code) for code in LANGS}, ensure_ascii=False)
    + "[lang] || '')]"
)


def on_stop(lang: str, save: bool) -> str:
    job = training.active_job()
    if job is None or job.user != paths.current_user():  # another user's training is not theirs to stop
        return t("nothing_running", lang)
    job.stop(save=save)
    return t("stopping_save" if save else "stopping_discard", lang)


# --- saved settings ---------------------------------------------------------------------------------------------


def saved_choices() -> Any:
    return gr.update(choices=sorted(saved_settings.load_all()))


@user_errors
def on_save_settings(lang: str, name: str, base_name: str | None, preset: str, targets: list[str] | None,
                     *hyper: Any) -> tuple[str, Any]:  # fmt: skip
    """The form's settings (and targets) saved under ``name`` in the workspace."""
    values = _settings(hyper)
    spec = _targets_spec(resolve_base(base_name), preset, targets) if base_name else (preset or DEFAULTS.targets)
    saved = saved_settings.save(name, {**values, "targets": spec})
    return t("settings_saved", lang, name=md(saved)), gr.update(choices=sorted(saved_settings.load_all()), value=saved)


@user_errors
def on_pick_settings(lang: str, name: str | None) -> list[Any]:
    """Saved settings back in the form: the target preset (or the modules), then each setting."""
    values = saved_settings.load_all().get(name or "")
    if values is None:
        raise TrainingError("saved_settings_missing", name=paths.cut(str(name or "")))
    spec = values.get("targets", DEFAULTS.targets)
    if spec in PRESETS:
        aim = [gr.update(value=spec), gr.update()]
    else:
        aim = [gr.update(), gr.update(value=[m for m in spec.split(",") if m])]
    return [*aim, *(gr.update(value=values[key]) if key in values else gr.update() for key in HYPER),
            t("settings_loaded", lang, name=md(name))]  # fmt: skip


@user_errors
def on_delete_settings(lang: str, name: str | None) -> tuple[str, Any]:
    saved_settings.delete(name or "")
    return t("settings_deleted", lang, name=md(name)), gr.update(choices=sorted(saved_settings.load_all()), value=None)


# --- what the timer shows -----------------------------------------------------------------------------------------


# How often a page asks for the training's progress: every 2 s while a run is going, every 5 s otherwise (a run
# started from another page or the API shows up then). Each tick costs the page 0.1-0.3 s of script time, more the
# more of the page's components events have touched (Gradio's page refreshes the loading status of every one of
# them at each change of an event's status), and the server a little (BENCHMARKS.md, "An open page"): a page
# watching a run takes CPU the training does not get, and an idle tab left open on a laptop or a Space should not
# keep a core busy.
TICK_ACTIVE_S = 2.0
TICK_IDLE_S = 5.0


def followed(seen: dict | None) -> tuple[Any, dict]:
    """A run was started from this page: the timer at the running pace from now."""
    return gr.Timer(TICK_ACTIVE_S), {**(seen or {}), "tick": TICK_ACTIVE_S}


def poll(lang: str, seen: dict | None) -> tuple:
    """Timer tick: progress every time; the plot when it has new points; the history, the buttons and the
    status line when the run, its state or the language changed; the timer's interval when a run started or
    ended (the last output)."""
    job = current_job()
    snap = job.snapshot() if job else None
    state = str(snap["state"]) if snap else None
    now = {
        "run": snap["run"] if snap else None,
        "state": state,
        "lang": lang,
        "points": len(snap["loss"]) + len(snap["eval_loss"]) + preference_points(snap) if snap else 0,
        "samples": len(snap["samples"]) if snap else 0,
        "tick": TICK_ACTIVE_S if state in ACTIVE_STATES else TICK_IDLE_S,
    }
    seen = seen or {}
    changed = any(seen.get(k, "?") != now[k] for k in ("run", "state", "lang"))
    plot: Any = gr.skip()
    pref: Any = gr.skip()
    if changed or seen.get("points") != now["points"]:
        plot = gr.update(value=loss_frame(snap), x_lim=[0, x_max(snap)], y_lim=y_range(snap))
        pref = preference_update(snap)
    if changed:
        active = state in ACTIVE_STATES
        history: Any = history_table(lang)
        buttons = [gr.update(interactive=not active), gr.update(interactive=active), gr.update(interactive=active)]
        # "started" / "stopping..." said what was asked; once the run has ended the progress line says the rest.
        # A page's first tick leaves the line alone: it may hold the reason a Start was just refused.
        ended = state in FINAL_STATES and seen.get("run") == now["run"] and seen.get("state") in ACTIVE_STATES
        status: Any = "" if ended or seen.get("lang", lang) != lang else gr.skip()
    else:
        history, status, buttons = gr.skip(), gr.skip(), [gr.skip()] * 3
    samples = samples_table(snap, lang) if changed or seen.get("samples") != now["samples"] else gr.skip()
    form = form_updates(job.config if job else None, state in ACTIVE_STATES) if changed else [gr.skip()] * FORM_SIZE
    tick = gr.Timer(now["tick"]) if seen.get("tick") != now["tick"] else gr.skip()
    return progress_text(snap, lang), plot, pref, samples, history, status, *buttons, now, *form, tick


FORM_SIZE = 4 + len(HYPER) + 1  # base, task, preset, targets, the settings, the demo button


def form_updates(config: TrainConfig | None, active: bool) -> list[Any]:
    """The form (base, task, preset, targets, the settings, the demo button): while a run is going, that run's
    settings, read-only; otherwise editable, as they are."""
    locked_quant = models.device_kind() != "cuda"  # no choice of quantization on a CPU
    if not active or config is None:
        return [gr.update(interactive=not (locked_quant and name == "quantization"))
                for name in ("base", "task", "preset", "targets", *HYPER, "demo")]  # fmt: skip
    values: dict[str, Any] = {name: getattr(config, name) for name in HYPER}
    if config.gradient_checkpointing is None:
        values["gradient_checkpointing"] = checkpointing_for(config.quantization)
    custom = config.targets not in PRESETS
    targets = gr.update(value=config.targets.split(","), interactive=False) if custom else gr.update(interactive=False)
    return [
        gr.update(value=Path(config.base).name, interactive=False),
        gr.update(value=config.task, interactive=False),
        gr.update(interactive=False) if custom else gr.update(value=config.targets, interactive=False),
        targets,
        *(gr.update(value=values[name], interactive=False) for name in HYPER),
        gr.update(interactive=False),
    ]


def preference_update(snap: dict | None) -> Any:
    """The preference plot: shown, with its points, for a DPO / ORPO run; hidden otherwise."""
    shown = bool(snap) and snap.get("method", "sft") != "sft"
    return gr.update(value=preference_frame(snap), x_lim=[0, x_max(snap)], visible=shown)


def on_open(lang: str, flip: bool) -> tuple[Any, Any, bool]:
    """The tab is opened: draw the plot again. A plot that got its points while its tab was hidden was laid out
    with no size and stays empty, and the browser redraws it only when one of its properties changes, so the
    axis title alternates between two spellings that look the same (with and without a zero-width space)."""
    job = current_job()
    snap = job.snapshot() if job else None
    title = t("plot_step", lang) + ("\u200b" if flip else "")
    loss = gr.update(value=loss_frame(snap), x_lim=[0, x_max(snap)], y_lim=y_range(snap), x_title=title)
    return loss, {**preference_update(snap), "x_title": title}, not flip


def training_status() -> dict:
    """The current (or last) training of this app: state, step, total_steps, loss points, adapter_dir, error...
    (``{"state": None}`` before the first one). For API clients following a training started by /start_training."""
    job = current_job()
    if job is None:
        return {"state": None}
    snap = job.snapshot()
    status = {key: snap.get(key) for key in STATUS_FIELDS}
    status["state"] = str(snap["state"])
    return status


# --- layout ---------------------------------------------------------------------------------------------------


def build(labels: Labels, lang: gr.State, shared: dict[str, Any]) -> None:
    choices = base_model_choices()
    cpu = models.device_kind() != "cuda"
    labels.add(gr.Markdown(), value="train_intro")
    with gr.Row():
        base = labels.add(base_dropdown(choices, scale=3), label="base_model")
        refresh = labels.add(gr.Button(scale=1), value="refresh")
        task = labels.add(gr.Textbox(value="my_task", max_length=64, scale=2), label="task_name")
    model_info = gr.Markdown()
    with gr.Row():
        preset = labels.add(gr.Radio(list(PRESETS), value=DEFAULTS.targets, scale=1), label="target_preset")
        targets = labels.add(
            # no choices until the page's load names them (reading a model's layers takes seconds of imports): an API
            # client may name any module, and Start refuses one the model lacks, naming the model's linear layers
            gr.Dropdown([], multiselect=True, allow_custom_value=True, scale=3),
            label="targets",
            info="targets_info",
        )
    # No minimum / maximum on the numbers: Gradio would refuse a value in English; Start says it in the user's
    # language (TrainConfig.check decides what is in range).
    with labels.add(gr.Accordion(open=True), label="hyper"):
        with gr.Row():
            method = labels.add(gr.Radio([("SFT", "sft"), ("DPO", "dpo"), ("ORPO", "orpo")], value=DEFAULTS.method,
                                         scale=2), label="method", info="method_info")  # fmt: skip
            beta = labels.add(Number(DEFAULTS.beta, scale=1), label="beta", info="beta_info")
            sft_weight = labels.add(Number(DEFAULTS.sft_weight, scale=1), label="sft_weight", info="sft_weight_info")
        with gr.Row():
            epochs = labels.add(Number(DEFAULTS.epochs), label="epochs")
            max_steps = labels.add(Number(DEFAULTS.max_steps, precision=0), label="max_steps")
            lr = labels.add(Number(DEFAULTS.learning_rate), label="learning_rate")
            scheduler = labels.add(
                gr.Dropdown(["cosine", "linear", "constant"], value=DEFAULTS.scheduler), label="scheduler"
            )
            warmup = labels.add(Number(DEFAULTS.warmup_ratio), label="warmup_ratio")
        with gr.Row():
            rank = labels.add(Number(DEFAULTS.rank, precision=0), label="rank")
            alpha = labels.add(Number(DEFAULTS.alpha), label="alpha")
            dropout = labels.add(Number(DEFAULTS.dropout), label="dropout")
            batch = labels.add(Number(DEFAULTS.batch_size, precision=0), label="batch_size")
            accum = labels.add(Number(DEFAULTS.grad_accum, precision=0), label="grad_accum")
        with gr.Row():
            max_len = labels.add(Number(DEFAULTS.max_length, precision=0), label="max_length")
            val = labels.add(Number(DEFAULTS.val_split), label="val_split")
            seed = labels.add(Number(DEFAULTS.seed, precision=0), label="seed")
            quant = labels.add(
                gr.Dropdown(["auto", "4bit", "8bit", "none"], value="none" if cpu else "auto", interactive=not cpu),
                label="quantization",
                info="quant_cpu" if cpu else "quant_gpu",
            )
        with gr.Row(equal_height=True):
            checkpointing = labels.add(gr.Checkbox(checkpointing_default()), label="gradient_checkpointing")
            skip_invalid = labels.add(gr.Checkbox(DEFAULTS.skip_invalid), label="skip_invalid")
            demo_btn = labels.add(gr.Button(), value="demo_settings")
        with gr.Row():
            samples = labels.add(Number(DEFAULTS.samples, precision=0), label="samples", info="samples_info")
            sample_rows = labels.add(gr.Textbox(DEFAULTS.sample_rows, max_length=64), label="sample_rows",
                                     info="sample_rows_info")  # fmt: skip
            eval_rows = labels.add(Number(DEFAULTS.eval_rows, precision=0), label="eval_rows", info="eval_rows_info")
    with labels.add(gr.Accordion(open=False), label="saved_settings"):
        with gr.Row():
            saved_name = labels.add(gr.Textbox(max_length=saved_settings.NAME_MAX, scale=2), label="settings_name")
            save_btn = labels.add(gr.Button(scale=1), value="save_settings")
            saved_pick = labels.add(gr.Dropdown([], allow_custom_value=True, scale=2), label="settings_pick")
            saved_delete = labels.add(gr.Button(variant="stop", scale=1), value="delete")
        saved_status = gr.Markdown()
    with gr.Row():
        start = labels.add(gr.Button(variant="primary"), value="start")
        stop_save = labels.add(gr.Button(variant="stop", interactive=False), value="stop_save")
        stop_discard = labels.add(gr.Button(interactive=False), value="stop_discard")
    status = gr.Markdown()
    progress = gr.Markdown()
    plot = labels.add(
        gr.LinePlot(
            loss_frame(None),
            x="step",
            y="loss",
            color="series",
            color_map=SERIES_COLORS,
            colors_in_legend=[],  # no legend: it would show the curves' internal names
            x_lim=[0, EMPTY_X_MAX],
            y_title=" ",  # the plot's label says "Loss"; a y title here was drawn half outside the plot
            show_label=True,
        ),
        label="loss_plot",
        x_title="plot_step",
    )
    pref_plot = labels.add(
        gr.LinePlot(
            preference_frame(None),
            x="step",
            y="value",
            color="series",
            color_map=PREFERENCE_COLORS,
            colors_in_legend=[],
            x_lim=[0, EMPTY_X_MAX],
            y_title=" ",
            show_label=True,
            visible=False,  # shown for a DPO / ORPO run
            elem_id="preference-plot",
        ),
        label="preference_plot",
        x_title="plot_step",
    )
    samples_view = labels.add(
        gr.Dataframe(
            samples_table(None, DEFAULT_LANG),
            interactive=False,
            wrap=True,
            show_label=True,
            column_widths=["6%", "5%", "25%", "32%", "32%"],
            elem_id="samples",
        ),
        label="samples_table",
    )
    history = labels.add(
        # filled by the first tick of the timer, with the runs of whoever's page it is
        gr.Dataframe(table([], HISTORY_HEADERS, DEFAULT_LANG), interactive=False, wrap=True, show_label=True),
        label="history",
    )
    seen = gr.State(None)
    discard_ok = gr.Checkbox(True, visible=False)  # what the confirmation dialog answered

    form = dict(method=method, beta=beta, sft_weight=sft_weight, epochs=epochs, max_steps=max_steps, learning_rate=lr,
                rank=rank, alpha=alpha, dropout=dropout, batch_size=batch, grad_accum=accum, max_length=max_len,
                val_split=val, warmup_ratio=warmup,
                scheduler=scheduler, seed=seed, quantization=quant, gradient_checkpointing=checkpointing,
                skip_invalid=skip_invalid, samples=samples, sample_rows=sample_rows, eval_rows=eval_rows)  # fmt: skip
    hyper = [form[name] for name in HYPER]  # every form setting of TrainConfig has its component
    model_inputs = [lang, base, preset, rank, batch, max_len, quant, checkpointing]
    for trigger in (base.change, preset.change):
        trigger(on_model, model_inputs, [model_info, targets], api_visibility="private")
    estimate_inputs = [lang, base, preset, targets, rank, batch, max_len, quant, checkpointing]
    quant.change(checkpointing_for, quant, checkpointing, api_visibility="private")
    # the user's own targets are kept when a number, the memory settings or the language change
    for trigger in (rank.change, batch.change, max_len.change, quant.change, checkpointing.change, targets.input,
                    lang.change):  # fmt: skip
        trigger(on_estimate, estimate_inputs, model_info, api_visibility="private")
    refresh.click(refresh_bases, base, base, api_visibility="private")
    demo_btn.click(demo_settings, shared["loaded"], [*hyper, preset], api_visibility="private")
    saving = save_btn.click(on_save_settings, [lang, saved_name, base, preset, targets, *hyper],
                            [saved_status, saved_pick], api_name="save_settings")  # fmt: skip
    picking = saved_pick.input(on_pick_settings, [lang, saved_pick], [preset, targets, *hyper, saved_status],
                               api_visibility="private")  # fmt: skip
    deleting = saved_delete.click(on_delete_settings, [lang, saved_pick], [saved_status, saved_pick],
                                  api_visibility="private")  # fmt: skip
    for event in (saving, picking, deleting):
        keep_reason(event, markdown=[saved_status])
    timer = gr.Timer(TICK_ACTIVE_S)  # the first tick soon: a reload during a run shows it at once
    starting = start.click(
        on_start,
        [lang, shared["loaded"], base, task, preset, targets, *hyper, shared["mix"]],
        status,
        api_name="start_training",
    )
    # the run started here: follow it closely from now, not from the next idle tick (and the ticks know it,
    # so that a run that ends before the next one sees it running still slows the timer down again)
    starting.success(followed, seen, [timer, seen], api_visibility="private", queue=False, show_progress="hidden")
    for event in (
        starting,
        stop_save.click(stop_training, lang, status, api_name="stop_training"),
        stop_discard.click(
            discard_training, [lang, discard_ok], status, api_name="discard_training", js=CONFIRM_DISCARD_JS
        ),
    ):
        keep_reason(event, markdown=[status])
    # while a run is going the form shows its settings, read-only (after a reload too); the demo button waits
    shown_form = [base, task, preset, targets, *hyper, demo_btn]
    ticked = [progress, plot, pref_plot, samples_view, history, status, start, stop_save, stop_discard, seen,
              *shown_form, timer]  # fmt: skip
    timer.tick(poll, [lang, seen], ticked, api_visibility="private")
    gr.api(training_status, api_name="training_status")
    shared["train_base"] = base
    flip = gr.State(False)
    shared["train_open"] = (on_open, [lang, flip], [plot, pref_plot, flip])
    lang.change(on_open, [lang, flip], [plot, pref_plot, flip], api_visibility="private", show_progress="hidden")
    # one max length: the Dataset tab's token counts are the ones this training will have
    max_len.change(lambda value: value, max_len, shared["max_length"], api_visibility="private", queue=False,
                   show_progress="hidden")  # fmt: skip
    shared["max_length"].input(lambda value: value, shared["max_length"], max_len, api_visibility="private",
                               queue=False, show_progress="hidden")  # fmt: skip
    shared["saved_settings"] = (saved_choices, None, saved_pick)
    # for the page's load event (app.py): the first model's line, once the browser's language is known
    shared["train_on_load"] = (on_model, model_inputs, [model_info, targets])
