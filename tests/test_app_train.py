"""The Train tab: its handlers called directly (real trainings of the demo model, a few steps each), and the
running app through its API. Every test leaves no training running: the core allows one per process."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from tiny import followed_training, launched_app, release_training, wait_for

from lora_core import demo, estimate, models, training
from lora_core.training import State, TrainConfig, TrainingJob
from webui import dataset_tab, train_form, train_tab
from webui.i18n import LANGS, TEXT, t

DEMO = demo.DEMO_MODEL_NAME
ALL_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, install_demo) -> Path:
    root = tmp_path_factory.mktemp("home")
    install_demo(root / "Models" / "LLM" / DEMO)
    return root


@pytest.fixture(autouse=True)
def use_home(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))
    yield
    release_training()  # a failed test must not leave the process-wide lock taken
    assert training.active_job() is None
    train_tab._LAST.clear()


@pytest.fixture(scope="module")
def sample() -> dataset_tab.LoadedDataset:
    return dataset_tab.on_dataset("en", str(demo.SAMPLE_DATASET), "auto")[3]


def settings(**overrides) -> list:
    """The hyper-parameter inputs in the tab's order: the demo settings, short, without samples or an evaluation
    card unless asked (the test of a whole run asks)."""
    values = dict(zip(train_tab.HYPER, train_tab.demo_settings()[:-1], strict=True))
    values.update(max_steps=6, max_length=128, batch_size=8, warmup_ratio=0.0, samples=0, eval_rows=0)
    values.update(overrides)
    return [values[key] for key in train_tab.HYPER]


def running(job: TrainingJob) -> bool:
    snap = job.snapshot()
    return snap["state"] == State.RUNNING and snap["step"] >= 1


def rows(frame: pd.DataFrame) -> list[list]:
    return frame.values.tolist()


# ---------------------------------------------------------------------------------------------------------
# Before Start: the model line


@pytest.mark.parametrize("lang", LANGS)
def test_model_line_shows_architecture_targets_parameters_and_memory(lang: str) -> None:
    info, targets = train_tab.on_model(lang, DEMO, "attention", 16, 4, 256, "none", False)
    est = estimate.estimate(dataset_tab.resolve_base(DEMO), "attention", 16, 4, 256)
    assert est.target_modules == ["q_proj", "v_proj"] and est.lora_params > 0
    assert targets["choices"] == ALL_LINEAR and targets["value"] == ["q_proj", "v_proj"]
    assert info.startswith("**llama**")
    assert "`q_proj, v_proj`" in info
    assert f"{est.lora_params:,}" in info and f"{est.total_params:,}" in info
    assert f"{100 * est.lora_params / est.total_params:.2f}%" in info
    assert train_form._gb(est.memory_bytes) in info
    if lang == "en":
        assert "PEFT's own target modules for the llama architecture" in info
        assert "float32, no quantization" in info and "Memory needed: about" in info
    else:
        assert "PEFT 为 llama 架构给出的目标模块" in info and "预计内存：约" in info
        assert "PEFT's" not in info and "Memory" not in info  # not the core's English sentence

    info, targets = train_tab.on_model(lang, DEMO, "all-linear", 16, 4, 256, "none", False)
    assert targets["value"] == ALL_LINEAR
    assert t("reason_all-linear", lang, n=7) in info


@pytest.mark.parametrize("lang", LANGS)
def test_the_users_own_targets_are_estimated_and_kept(lang: str) -> None:
    preset_line = train_tab.on_estimate(lang, DEMO, "attention", ["q_proj", "v_proj"], 16, 4, 256, "none", False)
    assert (
        preset_line == train_tab.on_model(lang, DEMO, "attention", 16, 4, 256, "none", False)[0]
    )  # still the preset's
    mine = train_tab.on_estimate(lang, DEMO, "attention", ["o_proj", "q_proj", "v_proj"], 16, 4, 256, "none", False)
    est = estimate.estimate(dataset_tab.resolve_base(DEMO), "o_proj,q_proj,v_proj", 16, 4, 256)
    assert "`o_proj, q_proj, v_proj`" in mine and t("reason_user", lang) in mine
    assert f"{est.lora_params:,}" in mine
    # none chosen: the preset's; a number missing while the user types: a hint, not an error
    assert train_tab.on_estimate(lang, DEMO, "attention", [], 16, 4, 256, "none", False) == preset_line
    assert train_tab.on_estimate(lang, DEMO, "attention", None, None, 4, 256, "none", False) == t(
        "estimate_needs_numbers", lang
    )
    assert train_tab.on_model(lang, DEMO, "attention", 16, 4, 4, "none", False)[0] == t("estimate_needs_numbers", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_no_base_model_says_where_to_put_one(lang: str) -> None:
    info, targets = train_tab.on_model(lang, None, "attention", 16, 4, 256, "none", False)
    assert info == t("no_base", lang) and targets["value"] == []


def test_demo_settings_fill_the_demo_values() -> None:
    values = train_tab.demo_settings()
    named = dict(zip(train_tab.HYPER, values[:-1], strict=True))
    assert {k: named[k] for k in demo.DEMO_TRAINING if k != "targets"} == {
        k: v for k, v in demo.DEMO_TRAINING.items() if k != "targets"
    }
    assert values[-1] == demo.DEMO_TRAINING["targets"]
    if models.device_kind() == "cpu":
        assert named["quantization"] == "none"  # what the locked dropdown shows on a CPU
    assert named["gradient_checkpointing"] is (models.device_kind() == "cuda")


def test_gradient_checkpointing_is_ticked_by_default_on_cuda_only(monkeypatch) -> None:
    monkeypatch.setattr(models, "device_kind", lambda: "cpu")
    assert train_tab.checkpointing_default() is False
    assert train_tab.checkpointing_for("none") is False
    monkeypatch.setattr(models, "device_kind", lambda: "cuda")
    assert train_tab.checkpointing_default() is True  # 4-bit QLoRA by default there
    assert dict(zip(train_tab.HYPER, train_tab.demo_settings()[:-1], strict=False))["gradient_checkpointing"] is True
    # The box follows the quantization chosen: on for a 4- or 8-bit base, off for a 16-bit one.
    assert [train_tab.checkpointing_for(q) for q in ("auto", "4bit", "8bit", "none")] == [True, True, True, False]


def test_the_memory_estimate_follows_the_checkpointing_box() -> None:
    lines = {on: train_tab.on_estimate("en", DEMO, "attention", None, 16, 8, 1024, "none", on) for on in (0, 1)}
    units = {"GB": 1024, "MB": 1}
    memory = {
        on: float(m[1]) * units[m[2]]
        for on, m in ((on, re.search(r"about ([0-9.]+) (GB|MB)", line)) for on, line in lines.items())
    }
    assert memory[1] < memory[0], lines


# ---------------------------------------------------------------------------------------------------------
# Start refused, in the user's language, and nothing started


@pytest.mark.parametrize("lang", LANGS)
def test_start_without_a_dataset_is_refused(lang: str) -> None:
    with pytest.raises(gr.Error) as info:
        train_tab.on_start(lang, None, DEMO, "x", "attention", [], *settings())
    assert info.value.message == t("no_dataset", lang) and info.value.title == t("error_title", lang)
    assert training.active_job() is None


@pytest.mark.parametrize("name", ["../x", "/etc", "", None, f"Models/LLM/{DEMO}"])
@pytest.mark.parametrize("lang", LANGS)
def test_a_base_model_that_is_not_offered_is_refused(sample, name, lang: str) -> None:
    expected = {"en": f"'{name}' is not one of the models in Models/LLM/.", "zh": f"“{name}”不在可选列表中。"}
    with pytest.raises(gr.Error) as info:
        train_tab.on_start(lang, sample, name, "x", "attention", [], *settings())
    assert info.value.message == expected[lang] and info.value.title == {"en": "Error", "zh": "错误"}[lang]
    if name:  # an empty choice is "no model yet" for the model line
        with pytest.raises(gr.Error) as info:
            train_tab.on_model(lang, name, "attention", 16, 4, 256, "none", False)
        assert info.value.message == expected[lang]
    assert training.active_job() is None


@pytest.mark.parametrize(
    "override, en, zh",
    [
        (
            {"rank": None},
            "“LoRA rank r” needs a number (a whole number where it counts something); it is “None”.",
            "“LoRA 秩 r”需要填写数字（计数类设置需为整数），当前为“None”。",
        ),
        (
            {"learning_rate": 2.0},
            "“Learning rate” must be between 1e-08 and 0.5; it is 2.",
            "“学习率”必须在 1e-08 到 0.5 之间，当前为 2。",
        ),
        (
            {"val_split": 0.7},
            "“Validation split” must be between 0 and 0.49; it is 0.7.",
            "“验证集比例”必须在 0 到 0.49 之间，当前为 0.7。",
        ),
        (
            {"batch_size": 0},
            "“Batch size” must be between 1 and 1024; it is 0.",
            "“批大小”必须在 1 到 1024 之间，当前为 0。",
        ),
        # what broke the page for every visitor before: huge, infinite or negative numbers
        (
            {"epochs": 1e300},
            "“Epochs” must be between 0 and 1000; it is 1e+300.",
            "“训练轮数”必须在 0 到 1000 之间，当前为 1e+300。",
        ),
        (
            {"max_steps": 10**19},
            "“Max steps (0 = by epochs)” must be between 0 and 1000000; it is 1e+19.",
            "“最大步数（0 = 按轮数）”必须在 0 到 1000000 之间，当前为 1e+19。",
        ),
        (
            {"epochs": float("inf")},
            "“Epochs” needs a number (a whole number where it counts something); it is “inf”.",
            "“训练轮数”需要填写数字（计数类设置需为整数），当前为“inf”。",
        ),
        (
            {"seed": -1},
            "“Seed” must be between 0 and 4294967295; it is -1.",
            "“随机种子”必须在 0 到 4294967295 之间，当前为 -1。",
        ),
        (
            {"rank": 100000},
            "“LoRA rank r” must be between 1 and 1024; it is 100000.",
            "“LoRA 秩 r”必须在 1 到 1024 之间，当前为 100000。",
        ),
        (
            {"sample_rows": "1,2,3,4"},
            "Sample rows '1,2,3,4' is not a list of up to 3 row numbers like 3, 7.",
            "示例行“1,2,3,4”不是最多 3 个行号的列表（例如 3, 7）。",
        ),
        (
            {"sample_rows": "<b>2</b>"},
            "Sample rows '&lt;b&gt;2&lt;/b&gt;' is not a list of up to 3 row numbers like 3, 7.",
            "示例行“&lt;b&gt;2&lt;/b&gt;”不是最多 3 个行号的列表（例如 3, 7）。",
        ),
        (
            {"sample_rows": "49"},  # the sample data has 48 rows
            "Sample row 49 is not a usable row of 'demo_alpaca.json'.",
            "示例行 49 不是“demo_alpaca.json”中可用的行。",
        ),
        (
            {"eval_rows": -1},
            "“Evaluation rows after the run (0 = none)” must be between 0 and 1000; it is -1.",
            "“训练后评估的行数（0 = 不评估）”必须在 0 到 1000 之间，当前为 -1。",
        ),
    ],
)
@pytest.mark.parametrize("lang", LANGS)
def test_bad_settings_are_named_by_their_label(sample, override, en, zh, lang: str) -> None:
    with pytest.raises(gr.Error) as info:
        train_tab.on_start(lang, sample, DEMO, "x", "attention", [], *settings(**override))
    assert info.value.message == {"en": en, "zh": zh}[lang]
    assert training.active_job() is None


@pytest.mark.parametrize("lang", LANGS)
def test_a_dataset_with_invalid_rows_needs_skip_invalid(tmp_path: Path, lang: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "no answer"}\n', encoding="utf-8")
    loaded = dataset_tab.on_dataset(lang, str(path), "auto")[3]
    with pytest.raises(gr.Error) as info:
        train_tab.on_start(lang, loaded, DEMO, "x", "attention", [], *settings())
    message = info.value.message
    assert "bad.jsonl" in message and ("跳过无效行" in message if lang == "zh" else "1 of 2 rows" in message)
    assert training.active_job() is None


# ---------------------------------------------------------------------------------------------------------
# A training, followed as the timer follows it


def follow(lang: str = "en", timeout: float = 90.0) -> list[tuple]:
    """Poll like the timer until the current job has ended; every tick's outputs."""
    ticks, seen = [], None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = train_tab.poll(lang, seen)
        seen = out[9]
        ticks.append(out)
        if seen["state"] in {str(s) for s in training.FINAL_STATES}:
            return ticks
        time.sleep(0.1)
    raise AssertionError(f"the training did not end: {ticks[-1][0]}")


@pytest.mark.slow
def test_a_training_runs_to_completion_and_the_tab_shows_it(home: Path, sample) -> None:
    whole = settings(max_steps=8, val_split=0.25, samples=5, eval_rows=20)  # samples and the card: the defaults
    status = train_tab.on_start("en", sample, DEMO, "ui_done", "attention", [], *whole)
    assert status == "Training **ui_done** started."
    job = train_tab.current_job()
    assert job is not None and job.config.targets == "attention"  # no targets chosen: the preset's

    ticks = follow()
    progress, plot, _, samples, history, status, start, stop_save, stop_discard, seen, *form, tick = ticks[-1]
    # the timer: the running pace from the first tick of the run, slower once it has ended, said once each
    intervals = [t[-1].value for t in ticks if t[-1] != gr.skip()]
    assert intervals == [train_tab.TICK_ACTIVE_S, train_tab.TICK_IDLE_S] and tick.value == train_tab.TICK_IDLE_S
    names = ("base", "task", "preset", "targets", *train_tab.HYPER, "demo")
    editable = {name for name, part in zip(names, form, strict=True) if part["interactive"]}
    assert editable == set(names) - {"quantization"}  # the form is the user's again (no quantization on a CPU)
    assert plot["x_lim"] == [0, 8]  # the whole run's steps: the curve fills the plot as it goes
    plot = plot["value"]
    snap = job.snapshot()
    assert snap["state"] == State.COMPLETED and seen["state"] == "completed"
    adapter = Path(snap["adapter_dir"])
    assert adapter.parent == home / "Models" / "LoRA" and adapter.name.startswith("ui_done_")
    assert (adapter / "adapter_model.safetensors").is_file()

    # progress: step / total and epoch while running (ETA and tokens/s too), then where the adapter is
    texts = [tick[0] for tick in ticks]
    assert all(re.search(r"step \d+ / (\d+|\?) · epoch \d+\.\d\d", text) for text in texts[1:])
    assert any(" · ETA " in text and "tokens/s" in text for text in texts if ": running" in text)
    assert progress.startswith("**ui_done**: completed · step 8 / 8 · epoch ")
    assert f"Adapter saved in `Models/LoRA/{adapter.name}`. It is already listed in the Models tab" in progress
    assert "Eval loss: base " in progress  # a validation split was set
    # evaluated after the run (its held-out rows), said in the progress line and kept beside the adapter
    assert any("Evaluating the adapter" in text for text in texts)
    assert re.search(r"Evaluation \(held-out rows, \d+ rows\): exact match base 0\.00 → adapter \d\.\d\d, "
                     r"ROUGE-L .*general prompts: \d+ of 12 answers changed, right \d+ → \d+\.",
                     progress), progress  # fmt: skip
    assert (adapter / "eval.json").is_file() and snap["evaluation"]["rows_kind"] == "held_out"
    # samples: the first held-out row answered at up to 5 steps spread over the run (one skipped when samples took
    # more than their share of the time), always at its end; newest first
    assert list(samples.columns) == [t(k, "en") for k in train_tab.SAMPLE_HEADERS]
    sampled = rows(samples)
    held_out = snap["samples"][0]["row"]
    steps = [r[0] for r in sampled]
    assert steps[0] == 8 and set(steps) <= {8, 6, 5, 3, 2} and steps == sorted(steps, reverse=True)
    assert len(steps) >= 2 and {r[1] for r in sampled} == {held_out}
    evaluated = json.loads((adapter / "eval.json").read_text(encoding="utf-8"))
    assert held_out == min(r["row"] for r in evaluated["rows"])  # the first held-out row (all 12 were evaluated)
    assert sampled[0][4] == snap["samples"][-1]["answer"] and sampled[0][3] == snap["samples"][-1]["reference"]
    assert status == ""  # "started" has been said; the progress line says the rest

    # the plot: 8 train points (one per step) and the eval points, numbers on both axes
    assert list(plot.columns) == ["step", "loss", "series"]
    assert pd.api.types.is_integer_dtype(plot["step"]) and pd.api.types.is_float_dtype(plot["loss"])
    train_points = plot[plot["series"] == "train"]
    eval_points = plot[plot["series"] == "eval"]
    assert train_points["step"].tolist() == list(range(1, 9))
    assert train_points["loss"].tolist() == [loss for _, loss in snap["loss"]]
    assert len(eval_points) >= 2 and eval_points["loss"].notna().all()

    # the history lists the run; the buttons follow the state
    assert list(history.columns) == [t(k, "en") for k in train_tab.HISTORY_HEADERS]
    row = next(r for r in rows(history) if r[0] == snap["run"])
    assert row[1:5] == ["completed", "demo_alpaca.json", 8, f"{snap['loss'][-1][1]:.4f}"]
    assert row[6] == f"Models/LoRA/{adapter.name}"
    assert (start["interactive"], stop_save["interactive"], stop_discard["interactive"]) == (True, False, False)

    # the trainable parameters shown before Start are the ones PEFT trained
    est = estimate.estimate(dataset_tab.resolve_base(DEMO), "attention", 16, 8, 128)
    assert snap["detail"]["trainable_params"] == est.lora_params
    assert snap["detail"]["target_modules"] == ["q_proj", "v_proj"]

    # nothing new: nothing resent; another language: everything computed again
    again = train_tab.poll("en", seen)
    assert all(x == gr.skip() for x in again[1:9]) and again[-1] == gr.skip()
    zh = train_tab.poll("zh", seen)
    assert zh[0].startswith("**ui_done**：已完成 · 第 8 / 8 步") and "已出现在“模型”页" in zh[0]
    assert "评估（验证集中的行" in zh[0]
    assert list(zh[3].columns) == [t(k, "zh") for k in train_tab.SAMPLE_HEADERS]
    assert list(zh[4].columns) == [t(k, "zh") for k in train_tab.HISTORY_HEADERS]
    assert next(r for r in rows(zh[4]) if r[0] == snap["run"])[1] == "已完成"
    assert zh[5] == ""
    assert zh[2]["visible"] is False  # the preference plot is for DPO / ORPO runs

    # the API's view of the same run
    api = train_tab.training_status()
    json.dumps(api)  # JSON-able
    assert api["state"] == "completed" and api["step"] == api["total_steps"] == 8
    assert api["loss"] == snap["loss"] and api["adapter_dir"] == str(adapter) and api["error"] is None


@pytest.mark.slow
@pytest.mark.parametrize("save", [True, False])
def test_stop_and_save_or_discard_and_one_training_at_a_time(home: Path, sample, save: bool) -> None:
    task = f"ui_stop_{'save' if save else 'discard'}"
    train_tab.on_start("en", sample, DEMO, task, "attention", [], *settings(max_steps=400))
    job = train_tab.current_job()
    assert wait_for(lambda: running(job)), job.snapshot()

    progress, _, _, _, _, _, start, stop_save, stop_discard, _, *form, tick = train_tab.poll("en", None)
    assert tick.value == train_tab.TICK_ACTIVE_S  # a page opened during a run follows it closely
    assert f"**{task}**: running · step " in progress and " / 400 · epoch " in progress
    assert re.search(r"Dataset: \*\*demo_alpaca.json\*\*, 48 rows, sha256 `[0-9a-f]{12}…`", progress), progress
    # a page opened now (a reload) shows the running job's settings, read-only, not the form's defaults
    shown = dict(zip(("base", "task", "preset", "targets", *train_tab.HYPER, "demo"), form, strict=True))
    assert not any(part["interactive"] for part in shown.values())
    assert (shown["base"]["value"], shown["task"]["value"], shown["max_steps"]["value"]) == (DEMO, task, 400)
    assert shown["batch_size"]["value"] == job.config.batch_size and shown["preset"]["value"] == "attention"
    assert (start["interactive"], stop_save["interactive"], stop_discard["interactive"]) == (False, True, True)
    history = train_tab.history_table("en")
    assert next(r for r in rows(history) if r[0] == job.run_id)[1:5] == ["running", "demo_alpaca.json", "", ""]

    for lang, busy in [("en", f"A training is already running: {task}."), ("zh", f"已有训练在运行：{task}。")]:
        with pytest.raises(gr.Error) as info:
            train_tab.on_start(lang, sample, DEMO, "other", "attention", [], *settings())
        assert info.value.message == busy
    assert train_tab.current_job() is job

    lang = "en" if save else "zh"
    assert train_tab.on_stop(lang, save) == t("stopping_save" if save else "stopping_discard", lang)
    ticks = follow(lang)
    snap = job.snapshot()
    assert snap["state"] == State.STOPPED and snap["step"] < 400
    progress, history = ticks[-1][0], ticks[-1][4]
    row = next(r for r in rows(history) if r[0] == job.run_id)
    if save:
        adapter = Path(snap["adapter_dir"])
        assert json.loads((adapter / "training_meta.json").read_text())["status"] == "stopped"
        assert progress.startswith(f"**{task}**: stopped · step {snap['step']} / 400")
        assert f"Adapter saved in `Models/LoRA/{adapter.name}`" in progress and row[6] == f"Models/LoRA/{adapter.name}"
    else:
        assert snap["adapter_dir"] is None
        assert not list((home / "Models" / "LoRA").glob(f"{task}_*"))
        assert progress.startswith(f"**{task}**：已停止") and progress.endswith("已停止，未保存任何内容。")
        assert row[1] == "已停止" and row[6] == "未保存"
    assert training.active_job() is None
    assert train_tab.on_stop("en", True) == "No training is running."


@pytest.mark.slow
@pytest.mark.skipif(models.device_kind() == "cuda", reason="4-bit works on CUDA")
def test_a_failed_training_is_explained_in_the_users_language(home: Path) -> None:
    config = TrainConfig(
        base=str(home / "Models" / "LLM" / DEMO), data=str(demo.SAMPLE_DATASET), task="ui_4bit", quantization="4bit"
    )
    snap = TrainingJob(config).run()
    assert snap["state"] == State.FAILED and snap["error_params"] == {"quantization": "4bit"}
    assert train_tab.progress_text(snap, "zh").endswith("训练失败：4bit 量化需要 CUDA GPU；在 CPU 上以 float32 训练。")
    assert train_tab.progress_text(snap, "en").endswith(f"Training failed: {snap['error']}")
    row = next(r for r in train_tab.history_rows("zh") if r[0] == snap["run"])
    assert row[1] == "失败" and row[6].startswith("4bit 量化需要 CUDA GPU")


def test_a_start_from_this_page_follows_the_run_closely_until_a_tick_sees_it_ended() -> None:
    """Start sets the timer to the running pace and tells the ticks so: a run that ended before the next tick (a
    refusal in its thread, a run of a step) still slows the timer down again."""
    timer, seen = train_tab.followed({"run": None, "state": None, "lang": "en", "tick": train_tab.TICK_IDLE_S})
    assert timer.value == seen["tick"] == train_tab.TICK_ACTIVE_S and seen["lang"] == "en"
    assert train_tab.poll("en", seen)[-1].value == train_tab.TICK_IDLE_S  # nothing runs: every few seconds again


def test_before_any_training_the_plot_is_empty_but_typed() -> None:
    progress, plot, pref, samples, history, *_, tick = train_tab.poll("zh", None)
    assert tick.value == train_tab.TICK_IDLE_S > train_tab.TICK_ACTIVE_S  # nothing to follow: a slower timer
    assert pref["visible"] is False and sorted(pref["value"]["series"]) == ["accuracy", "signal"]
    assert plot["x_lim"] == [0, train_tab.EMPTY_X_MAX]
    plot = plot["value"]
    assert progress == "本次启动后还没有训练。"
    assert plot["loss"].isna().all() and sorted(plot["series"]) == ["eval", "train"]
    assert pd.api.types.is_integer_dtype(plot["step"]) and pd.api.types.is_float_dtype(plot["loss"])
    assert list(history.columns) == [t(k, "zh") for k in train_tab.HISTORY_HEADERS]
    assert samples.empty and list(samples.columns) == [t(k, "zh") for k in train_tab.SAMPLE_HEADERS]


# ---------------------------------------------------------------------------------------------------------
# The translation table: the keys the tab builds at run time


def test_every_computed_key_of_the_tab_is_translated() -> None:
    keys = {f"state_{state}" for state in State}
    keys |= {f"reason_{source}" for source in ("all-linear", "peft", "remote-code", "scan", "default", "user")}
    keys |= {"reason_default_missing", "quant_name_none_cpu", "quant_name_none_cuda", "quant_name_4bit"}
    keys |= {"quant_name_8bit", *train_tab.HISTORY_HEADERS, *train_tab.HYPER}
    assert sorted(k for k in keys if set(TEXT.get(k, {})) != set(LANGS)) == []


# ---------------------------------------------------------------------------------------------------------
# The running app, through its API


@pytest.mark.slow
def test_app_api_starts_follows_and_stops_a_training(home: Path) -> None:
    from gradio_client import handle_file

    with launched_app() as client:
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert {"/start_training", "/stop_training", "/discard_training", "/training_status"} <= set(endpoints)

        with pytest.raises(Exception, match="Upload a dataset first"):  # this session has no dataset yet
            client.predict("en", DEMO, "api_run", "attention", [], *settings(), api_name="/start_training")

        client.predict("en", handle_file(str(demo.SAMPLE_DATASET)), "auto", api_name="/validate_dataset")
        started = client.predict(
            "en", DEMO, "api_run", "attention", ["q_proj", "v_proj"], *settings(max_steps=5),
            api_name="/start_training",
        )  # fmt: skip
        assert started == "Training **api_run** started."
        status = followed_training(client, 90)
        assert status["state"] == "completed", status["error"]
        assert status["task"] == "api_run" and status["step"] == status["total_steps"] == 5
        assert [step for step, _ in status["loss"]] == [1, 2, 3, 4, 5]
        assert Path(status["adapter_dir"]).parent == home / "Models" / "LoRA"
        assert client.predict("zh", api_name="/stop_training") == "当前没有正在运行的训练。"

        with pytest.raises(Exception, match="is not one of the models in Models/LLM"):
            client.predict("en", "../x", "api_bad", "attention", [], *settings(), api_name="/start_training")
        job = training.active_job()
        if job is not None:
            job.stop(save=False)
            job.wait(60)


def test_opening_the_tab_redraws_the_plot_with_a_changed_property():
    from webui import train_tab

    first, first_pref, flip = train_tab.on_open("en", False)
    second, second_pref, flop = train_tab.on_open("en", flip)
    assert flip is True and flop is False
    assert first["x_title"] != second["x_title"]  # the browser redraws only on a changed property
    assert second["x_title"].rstrip("\u200b") == first["x_title"]
    assert first_pref["x_title"] == first["x_title"] and second_pref["x_title"] == second["x_title"]
    assert list(first["value"].columns) == ["step", "loss", "series"]
    assert list(first_pref["value"].columns) == ["step", "value", "series"]


def test_the_start_endpoint_names_every_setting_in_the_tabs_order():
    import inspect

    names = list(inspect.signature(train_tab.on_start).parameters)
    assert names[names.index("targets") + 1 : -1] == list(train_tab.HYPER)  # API clients pass them by name
    assert names[-1] == "mix"  # the page's state (the Dataset tab's mix), never an API parameter


@pytest.mark.slow
def test_unchanged_detected_targets_are_recorded_as_the_preset(home: Path) -> None:
    base = home / "Models" / "LLM" / DEMO
    assert train_tab._targets_spec(base, "all-linear", list(reversed(ALL_LINEAR))) == "all-linear"
    assert train_tab._targets_spec(base, "attention", ["q_proj", "v_proj"]) == "attention"  # PEFT's llama default
    assert train_tab._targets_spec(base, "all-linear", ["q_proj", "v_proj"]) == "q_proj,v_proj"
    assert train_tab._targets_spec(base, "nonsense", []) == "all-linear"


def test_settings_are_saved_under_a_name_and_loaded_back_checked(home: Path) -> None:
    from lora_core import saved_settings

    message, picker = train_tab.on_save_settings("en", " short run ", DEMO, "attention", [],
                                                 *settings(max_steps=12, learning_rate=0.001))  # fmt: skip
    assert "short run" in message and picker["value"] == "short run"
    assert saved_settings.store_path().is_file() and saved_settings.store_path().is_relative_to(home)
    out = train_tab.on_pick_settings("zh", "short run")
    preset, targets, *values, status = out
    shown = dict(zip(train_tab.HYPER, (v["value"] for v in values), strict=True))
    assert preset["value"] == "attention" and shown["max_steps"] == 12 and shown["learning_rate"] == 0.001
    assert status == "已将设置 **short run** 载入表单。"
    # custom targets come back as the modules
    train_tab.on_save_settings("en", "mlp", DEMO, "all-linear", ["up_proj", "down_proj"], *settings())
    assert sorted(train_tab.on_pick_settings("en", "mlp")[1]["value"]) == ["down_proj", "up_proj"]
    # what Start refuses is refused here too, by the field's label, and nothing is written
    before = saved_settings.store_path().read_bytes()
    with pytest.raises(gr.Error, match="between 1 and 1024"):
        train_tab.on_save_settings("en", "huge", DEMO, "attention", [], *settings(rank=5000))
    with pytest.raises(gr.Error, match="1 到 64 个字符"):
        train_tab.on_save_settings("zh", "x" * 65, DEMO, "attention", [], *settings())
    with pytest.raises(gr.Error, match="no saved settings named &lt;b&gt;"):  # shown as text
        train_tab.on_pick_settings("en", "<b>")
    assert saved_settings.store_path().read_bytes() == before
    # a hand-edited store: a bad entry is left out, a broken file set aside
    raw = json.loads(before)
    raw["edited"] = {"epochs": "many"}
    saved_settings.store_path().write_text(json.dumps(raw), encoding="utf-8")
    assert set(saved_settings.load_all()) == {"short run", "mlp"}
    saved_settings.store_path().write_text("{not json", encoding="utf-8")
    assert saved_settings.load_all() == {}
    assert saved_settings.store_path().with_suffix(".json.corrupt").read_text(encoding="utf-8") == "{not json"
    saved_settings.store_path().write_bytes(before)
    train_tab.on_delete_settings("en", "mlp")
    assert set(saved_settings.load_all()) == {"short run"}


def test_the_loss_axis_keeps_a_single_point_inside_the_plot() -> None:
    from webui.train_view import y_range

    assert y_range(None) is None and y_range({"loss": [], "eval_loss": []}) is None
    low, high = y_range({"loss": [[1, 2.5]], "eval_loss": []})
    assert low < 2.5 < high  # one point: its tick is not on the plot's edge
    assert y_range({"loss": [[1, 2.5], [2, 1.2], [3, 0.4]], "eval_loss": [[3, 0.9]]}) == [low, high]  # all run long
