"""The reliability catalogue, in-process: every bad input, hostile name, hostile model folder and fault gets one
clear answer, writes nothing it should not and loses nothing. (Killed processes, the served app's routes and the
load test are in test_reliability_processes.py; dataset files are catalogued in test_data.py.)"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import threading
from pathlib import Path

import gradio as gr
import pytest
from tiny import release_training, wait_for

from lora_core import adapters, data, paths, runs, training
from lora_core.chat import ChatEngine
from lora_core.demo import SAMPLE_DATASET
from lora_core.errors import ModelError, PathError, SimpleLoraError
from lora_core.masking import encode_records
from lora_core.models import list_base_models, load_base_model, load_tokenizer
from lora_core.targets import targets_for_folder
from lora_core.training import State, TrainConfig, TrainingJob
from webui import dataset_tab, models_tab, train_tab

ROOT = Path(__file__).resolve().parent.parent


SLOW_FIXTURES = ("earlier_adapter",)  # it trains (conftest marks its tests slow)


@pytest.fixture(scope="module")
def home(demo_home):
    return demo_home


pytestmark = pytest.mark.usefixtures("in_demo_home")


@pytest.fixture(autouse=True)
def _release():
    yield
    release_training()  # a failed test must not leave the process-wide lock taken


def config(home: Path, **overrides) -> TrainConfig:
    values = dict(
        base=str(home / "Models" / "LLM" / "demo"), data=str(SAMPLE_DATASET), task="rel", max_steps=4,
        learning_rate=2e-3, batch_size=8, dropout=0.0, max_length=64, scheduler="constant", warmup_ratio=0.0,
        samples=0, eval_rows=0,  # neither samples nor an evaluation card: tests of those ask for them
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256: what "nothing lost, nothing changed" is checked against."""
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def adapters_named(home: Path, prefix: str) -> list[str]:
    """Every entry of Models/LoRA/ (hidden staging folders included) whose name holds ``prefix``."""
    lora = home / "Models" / "LoRA"
    return sorted(p.name for p in lora.iterdir() if prefix in p.name) if lora.is_dir() else []


@pytest.fixture(scope="module")
def earlier_adapter(home):
    """An adapter trained before the faults below: none of them may touch it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMPLE_LORA_HOME", str(home))
        job = TrainingJob(config(home, task="earlier"))
        job.run()
    assert job.snapshot()["state"] == State.COMPLETED
    return Path(job.snapshot()["adapter_dir"])


# ---------------------------------------------------------------------------------------------------------
# Datasets the file catalogue (test_data.py) does not reach: sizes and lengths


def test_one_huge_row_is_read_and_previewed_cut(tmp_path):
    answer = "lumen " * 5_000_000  # 30 MB in one row
    path = tmp_path / "huge.json"
    path.write_text(json.dumps([{"instruction": "Say it", "output": answer}]), encoding="utf-8")
    report = data.load_records(path, max_bytes=dataset_tab.MAX_UPLOAD_BYTES)
    assert report.valid_rows == 1 and report.records[0].messages[-1].content == answer
    _, _, preview = dataset_tab.report_views(report, "en")
    cell = preview[1][2]
    assert len(cell) < 3000 and cell.endswith(f"(+{len(answer) - dataset_tab.PREVIEW_CHARS:,})")


def test_a_file_over_the_upload_cap_is_refused_and_not_stored(home, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_tab, "MAX_UPLOAD_BYTES", 1024)
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"instruction": "a", "output": "b" * 2000}) + "\n", encoding="utf-8")
    before = tree(home / "Uploads")
    with pytest.raises(gr.Error, match="big.jsonl.*upload limit|big.jsonl.*larger"):
        dataset_tab.on_dataset("en", str(path), "auto")
    assert tree(home / "Uploads") == before


@pytest.mark.slow
def test_a_dataset_whose_every_example_is_too_long_is_refused_before_training(home, tmp_path):
    rows = [{"instruction": f"Tell story {i}", "output": "the harbour lights " * 200} for i in range(10)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    tokenizer = load_tokenizer(home / "Models" / "LLM" / "demo")
    examples, _, stats = encode_records(data.load_records(path).records, tokenizer, 64)
    # Cut from the prompt side, no reply keeps its question, and a reply is never trained without it.
    assert examples == [] and stats.dropped["nothing_to_train"] == stats.total == 10
    job = TrainingJob(config(home, task="too_long", data=str(path)))
    job.run()
    snap = job.snapshot()
    assert snap["state"] == State.FAILED and snap["error_code"] == "nothing_to_train" and snap["step"] == 0
    assert "max length 64" in snap["error"] and "最大长度 64" in train_tab.progress_text(snap, "zh")
    assert adapters_named(home, "too_long") == []


# ---------------------------------------------------------------------------------------------------------
# Names and paths

HOSTILE_NAMES = [
    "../../etc/passwd", "/etc/passwd", "..\\..\\windows\\system32", "a\x00b", "$(rm -rf ~); `id` | tee x && y",
    "x" * 300, "CON", "nul.txt", "COM1", " .hidden ", "名字/../../逃逸", "a:b*c?d\"e<f>g|h",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_task_name_becomes_a_plain_folder_inside_models_lora(home, name):
    safe = paths.safe_name(name)
    assert re.fullmatch(r"[\w\-.]{1,64}", safe) and not safe.startswith(".")
    assert safe.split(".")[0].lower() not in {"con", "nul", "com1"}
    folder = adapters.unique_dir(paths.lora_dir(), adapters.run_name(name))
    assert folder.parent == (home / "Models" / "LoRA").resolve()


@pytest.mark.parametrize("name", ["", "../", "///", "\x00", "..."])
def test_a_name_with_nothing_usable_is_refused(name):
    with pytest.raises(PathError, match="no usable characters"):
        paths.safe_name(name)


def test_the_same_task_twice_in_one_second_gets_two_folders_and_never_overwrites(home, earlier_adapter):
    first, second = runs.unique_run_id("twice"), runs.unique_run_id("twice")
    assert first != second and second.endswith("_2")
    before = tree(earlier_adapter)
    with pytest.raises(adapters.AdapterError, match="already exists"):
        adapters.save_adapter(None, None, {}, earlier_adapter)
    assert tree(earlier_adapter) == before


def test_no_code_path_hands_anything_to_a_shell():
    sources = [ROOT / "app.py", *(ROOT / "lora_core").glob("*.py"), *(ROOT / "webui").glob("*.py")]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert not re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.", text), source.name


@pytest.fixture()
def link_out(home, tmp_path):
    """A model folder outside Models/ and a symlink to it inside Models/LLM/."""
    outside = tmp_path / "outside_model"
    shutil.copytree(home / "Models" / "LLM" / "demo", outside)
    link = home / "Models" / "LLM" / "linked"
    link.symlink_to(outside, target_is_directory=True)
    yield link
    link.unlink()


@pytest.mark.parametrize("value", ["/etc", "../", "../../etc/passwd", "demo/../..", "linked", "", None])
def test_a_base_model_value_outside_the_offered_ones_is_refused(link_out, value):
    assert "linked" not in dataset_tab.base_model_choices()  # a link out of Models/LLM/ is not even offered
    assert [p.name for p in list_base_models()] == ["demo"]
    with pytest.raises(PathError):
        dataset_tab.resolve_base(value)


@pytest.mark.parametrize("value", ["../LLM/demo", "/etc", "..", ".staging", "demo/../../..", "missing"])
def test_an_adapter_value_outside_models_lora_is_refused(value, earlier_adapter):
    with pytest.raises(adapters.AdapterError, match="no adapter named"):
        adapters.adapter_path(value)
    with pytest.raises(gr.Error):
        models_tab.on_activate("en", value)


# ---------------------------------------------------------------------------------------------------------
# Hostile or broken model folders


@pytest.fixture()
def models(home, tmp_path):
    """Broken copies of the demo model; ``marker`` is written if any code or pickle from them ever runs."""
    marker = tmp_path / "code_ran"
    llm = home / "Models" / "LLM"
    made = []

    def copy(name: str) -> Path:
        dest = llm / name
        shutil.copytree(llm / "demo", dest)
        made.append(dest)
        return dest

    custom = copy("custom_code")
    cfg = json.loads((custom / "config.json").read_text())
    cfg.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.Evil"})
    (custom / "config.json").write_text(json.dumps(cfg))
    (custom / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('custom code ran')\n")

    pickled = copy("pickle_only")
    (pickled / "model.safetensors").unlink()

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))

    no_tokenizer = copy("no_tokenizer")
    for tokenizer_file in no_tokenizer.glob("tokenizer*"):
        tokenizer_file.unlink()
    yield {"custom": custom, "pickled": pickled, "no_tokenizer": no_tokenizer, "marker": marker}
    for folder in made:
        shutil.rmtree(folder)


def every_loader(folder: Path, targets: bool = True) -> list[SimpleLoraError]:
    """What each way of using a base model says about ``folder``: targets (config only), chat, training."""
    said = []
    uses = [lambda: ChatEngine().load_base(folder), lambda: load_base_model(folder, "none", "cpu")]
    for use in [lambda: targets_for_folder(folder)] * targets + uses:
        with pytest.raises(SimpleLoraError) as caught:
            use()
        said.append(caught.value)
    return said


def test_a_model_with_custom_code_and_no_opt_in_runs_no_code(models):
    for error in every_loader(models["custom"]):
        assert error.code == "remote_code_required" and "trust_remote_code" in error.message
        assert "\n" not in error.message
    assert not models["marker"].exists()


def test_pickle_only_weights_are_never_unpickled(models):
    errors = every_loader(models["pickled"], targets=False)  # the targets come from the config alone
    assert {e.code for e in errors} == {"model_pickle_only"}
    assert "pytorch_model.bin" in errors[0].message and "\n" not in errors[0].message
    assert not models["marker"].exists()


def test_a_missing_tokenizer_is_one_sentence(models):
    with pytest.raises(ModelError, match=r"has no tokenizer \(tokenizer.json or tokenizer_config.json\)\.$"):
        load_tokenizer(models["no_tokenizer"])
    with pytest.raises(SimpleLoraError, match="has no tokenizer"):
        ChatEngine().load_base(models["no_tokenizer"])


def test_a_hub_id_instead_of_a_folder_never_touches_the_network(monkeypatch):
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even when the hub is not switched off
    for hub_id in ("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.2-1B"):
        with pytest.raises(ModelError, match=f"The model folder {hub_id} does not exist"):
            targets_for_folder(hub_id)
        with pytest.raises(ModelError, match="does not exist"):
            ChatEngine().load_base(hub_id)
        with pytest.raises(ModelError, match="does not exist"):
            load_tokenizer(hub_id)
    assert attempts == []


def test_a_truncated_adapter_is_listed_invalid_and_refused(home, earlier_adapter):
    broken = home / "Models" / "LoRA" / "truncated_copy"
    shutil.copytree(earlier_adapter, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    try:
        info = next(a for a in adapters.scan() if a.name == "truncated_copy")
        assert not info.valid and info.reason_code == "adapter_corrupt"
        with pytest.raises(gr.Error, match="truncated_copy"):
            models_tab.on_activate("en", "truncated_copy")
    finally:
        shutil.rmtree(broken)


# ---------------------------------------------------------------------------------------------------------
# Faults during a training


@pytest.mark.slow
def test_a_full_disk_while_saving_fails_the_run_with_that_reason_and_leaves_nothing(
    home, monkeypatch, earlier_adapter
):
    before = tree(earlier_adapter)

    def disk_full(folder, manifest):
        path = folder / adapters.META_NAME
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(adapters, "write_manifest", disk_full)
    job = TrainingJob(config(home, task="diskfull"))
    job.run()
    snap = job.snapshot()
    assert snap["state"] == State.FAILED and snap["error_code"] == "disk_full"
    assert "disk is full" in snap["error"] and snap["adapter_dir"] is None
    assert train_tab.progress_text(snap, "zh").endswith("磁盘已满，请释放空间后重新训练。")
    assert adapters_named(home, "diskfull") == []  # no adapter, no staging folder
    assert training.active_job() is None and tree(earlier_adapter) == before
    record = json.loads((home / "Runs" / job.run_id / "run.json").read_text())
    assert record["state"] == "failed" and record["error_code"] == "disk_full"


@pytest.mark.slow
def test_out_of_memory_in_a_step_fails_the_run_releases_the_lock_and_the_next_one_runs(home, monkeypatch):
    import torch
    from transformers import Trainer

    real_step = Trainer.training_step
    calls = []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", step)
    job = TrainingJob(config(home, task="oom"))
    job.run()
    snap = job.snapshot()
    assert snap["state"] == State.FAILED and snap["error_code"] == "out_of_memory"
    assert snap["error"].startswith("Out of memory: lower the batch size")
    assert training.active_job() is None
    monkeypatch.setattr(Trainer, "training_step", real_step)
    after = TrainingJob(config(home, task="after_oom")).start()
    assert after.wait(120) and after.snapshot()["state"] == State.COMPLETED


@pytest.mark.slow
def test_stop_twice_stops_once_and_keeps_one_adapter(home):
    job = TrainingJob(config(home, task="twice_stop", max_steps=400)).start()
    assert wait_for(lambda: job.snapshot()["step"] >= 1, 120)
    job.stop()
    job.stop()
    assert job.wait(120)
    snap = job.snapshot()
    assert snap["state"] == State.STOPPED and snap["step"] < 400
    assert adapters_named(home, "twice_stop") == [Path(snap["adapter_dir"]).name]
    assert json.loads((Path(snap["adapter_dir"]) / adapters.META_NAME).read_text())["status"] == "stopped"


@pytest.mark.slow
def test_stop_while_loading_ends_without_training_or_an_adapter(home):
    job = TrainingJob(config(home, task="stop_loading", max_steps=400))
    job.start()
    job.stop()  # at once: the job is still queued or loading the model
    assert job.wait(120)
    snap = job.snapshot()
    assert snap["state"] == State.STOPPED and snap["step"] == 0 and snap["adapter_dir"] is None
    assert training.active_job() is None


@pytest.mark.slow
def test_stop_during_save_and_start_during_save(home, monkeypatch):
    """Stop pressed while the adapter is being saved changes nothing; a start meanwhile is refused (one at a time)
    and works once the save is over."""
    saving, release = threading.Event(), threading.Event()
    real = adapters.save_adapter

    def slow_save(*args, **kwargs):
        saving.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(adapters, "save_adapter", slow_save)
    job = TrainingJob(config(home, task="slow_save")).start()
    assert saving.wait(120)
    job.stop(save=False)  # too late to discard: the training is over and its adapter is being written
    with pytest.raises(training.TrainingError, match="already running: slow_save"):
        TrainingJob(config(home, task="meanwhile")).start()
    release.set()
    assert job.wait(60)
    snap = job.snapshot()
    assert snap["state"] == State.COMPLETED and adapters.verify_adapter(snap["adapter_dir"])
    monkeypatch.setattr(adapters, "save_adapter", real)
    later = TrainingJob(config(home, task="meanwhile")).start()
    assert later.wait(120) and later.snapshot()["state"] == State.COMPLETED


def test_a_corrupt_run_record_is_kept_aside_and_rebuilt_from_the_folders(home, earlier_adapter):
    run_dir = home / "Runs" / earlier_adapter.name
    record = run_dir / "run.json"
    original = json.loads(record.read_text())
    record.write_text('{"run": "earlier", "state": "comp', encoding="utf-8")  # cut short by a crash
    listed = next(r for r in runs.list_runs() if r["run"] == earlier_adapter.name)
    assert listed["state"] == "completed" and listed["rebuilt"] is True
    assert listed["adapter_dir"] == str(earlier_adapter) and listed["task"] == original["task"]
    assert not (run_dir / "run.json.corrupt").exists()  # listing changes nothing; the repair is its own step
    assert runs.reconcile_runs() == 1
    assert (run_dir / "run.json.corrupt").read_text() == '{"run": "earlier", "state": "comp'
    assert json.loads(record.read_text())["state"] == "completed"  # written back: read normally from now on
    assert earlier_adapter.name in [row[0] for row in train_tab.history_table("en").values.tolist()]


def test_a_corrupt_record_of_a_run_with_only_checkpoints_becomes_interrupted(home):
    run_dir = home / "Runs" / "crashed_20260101_120000"
    (run_dir / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (run_dir / "run.json").write_bytes(b"\x00\xff garbage")
    listed = next(r for r in runs.list_runs() if r["run"] == run_dir.name)
    assert listed["state"] == "interrupted" and listed["task"] == "crashed"
    assert listed["started_at"] == "2026-01-01T12:00:00"
    shutil.rmtree(run_dir)


# ---------------------------------------------------------------------------------------------------------
# Concurrency


@pytest.mark.slow
def test_two_starts_at_once_exactly_one_runs(home):
    barrier = threading.Barrier(2)
    outcomes: list = []

    def start(task: str) -> None:
        job = TrainingJob(config(home, task=task))
        barrier.wait()
        try:
            outcomes.append(job.start())
        except training.TrainingError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=start, args=(f"race{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [o for o in outcomes if isinstance(o, TrainingJob)]
    refused = [o for o in outcomes if isinstance(o, training.TrainingError)]
    assert len(started) == 1 and len(refused) == 1 and refused[0].code == "busy"
    assert started[0].wait(120) and started[0].snapshot()["state"] == State.COMPLETED


@pytest.mark.slow
def test_chat_answers_while_a_training_runs_on_cpu(home, earlier_adapter):
    job = TrainingJob(config(home, task="busy_cpu", max_steps=400)).start()
    try:
        assert wait_for(lambda: job.snapshot()["step"] >= 1, 120)
        chat = ChatEngine()
        chat.load_base(home / "Models" / "LLM" / "demo")
        chat.activate(earlier_adapter)
        reply = chat.generate([{"role": "user", "content": "Who keeps the lighthouse of Lumen Bay?"}])
        assert isinstance(reply, str) and job.snapshot()["state"] == State.RUNNING
    finally:
        job.stop(save=False)
        job.wait(120)


# ---------------------------------------------------------------------------------------------------------
# Sharing: markup in the chat is text (the browser test shows that it is not run)


@pytest.mark.parametrize(
    "text",
    [
        '<img src=x onerror="alert(1)"><script>alert(2)</script>',
        "a &lt; b & c &amp;amp; d &#60; <b>bold</b>",
        "code `<b>x</b>` and\n```html\n<script>x</script>\n```\nafter <i>",
        "unclosed ```<b>",
        "",
    ],
)
def test_chat_markup_is_escaped_outside_code_and_given_back_exactly(text):
    from webui.chat_tab import shown, unshown

    display = shown(text)
    assert unshown(display) == text
    outside_code = re.sub(r"```.*?(```|$)|`[^`\n]*`", "", display, flags=re.DOTALL)
    assert "<" not in outside_code and ">" not in outside_code
    assert "`<b>x</b>`" in shown("code `<b>x</b>`")  # Markdown shows code as it is


def test_a_state_change_is_in_the_run_history_before_a_page_can_see_it(home, monkeypatch):
    """The Train tab redraws the history (read from the run records) when a tick sees the run's state change: the
    record must already say that state, or the history keeps showing "running" for a finished run."""
    job = TrainingJob(config(home, task="record_first"))
    written: list[tuple[str, str]] = []  # (state written, state the job showed while it was written)
    real_write = training.write_run

    def write_run(run_dir, record):
        written.append((record["state"], str(job.snapshot()["state"])))
        real_write(run_dir, record)

    monkeypatch.setattr(training, "write_run", write_run)
    runs.claim(job)  # the process's training, as start() makes it
    try:
        for state in (State.LOADING, State.RUNNING, State.COMPLETED):
            before = str(job.snapshot()["state"])
            job.publish(state=state)
            assert written[-1] == (str(state), before)  # on disk first, shown after
            assert job.snapshot()["state"] == state
            shown = next(run for run in runs.list_runs() if run["run"] == job.run_id)
            assert shown["state"] == str(state)
        job.stop()  # after the end, Stop changes nothing, on disk or in memory
        assert job.snapshot()["state"] == State.COMPLETED and len(written) == 3
    finally:
        runs.release(job)


FIRST_IMPORTS_IN_THREADS = """
import sys, threading
from lora_core import models, targets

models.before_threads()  # what app.py does before serving, and TrainingJob.start before its thread
failed = []


def run(job):
    try:
        job()
    except Exception as exc:
        failed.append(repr(exc))


jobs = [lambda: models.load_tokenizer(sys.argv[1]), lambda: targets.targets_for_folder(sys.argv[1]),
        lambda: __import__("peft")]
threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(failed)
"""


def test_three_handlers_first_to_need_transformers_at_once_each_get_it(home):
    """A page's first Show tokens beside the model list's targets and a chat's first load: three threads meet
    transformers' first import at once. Without ``before_threads`` this failed in 4 runs of 4 ("cannot import name
    'CONFIG_MAPPING' from 'transformers'", an Error on the page); with it each gets what it asked for."""
    import subprocess
    import sys

    base = home / "Models" / "LLM" / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", FIRST_IMPORTS_IN_THREADS, str(base)], capture_output=True,
                         text=True, timeout=120, env=env, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout
