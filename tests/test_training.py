"""TrainingJob on the demo model: loss falls, only the adapter is saved, stop works, one job at a time."""

import gc
import hashlib
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import wait_for

from lora_core import adapters, estimate, models, runs, training
from lora_core.demo import PREFERENCE_SAMPLE, SAMPLE_DATASET
from lora_core.training import State, TrainConfig, TrainingError, TrainingJob

ALLOWED = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "training_meta.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "eval.json",  # the evaluation card the training writes after saving (never model weights)
}


@pytest.fixture(scope="module")
def home(demo_home):
    return demo_home


pytestmark = pytest.mark.usefixtures("in_demo_home")


def config(home: Path, **overrides) -> TrainConfig:
    values = dict(
        base=str(home / "Models" / "LLM" / "demo"),
        data=str(SAMPLE_DATASET),
        task="t",
        max_steps=12,
        learning_rate=2e-3,
        batch_size=8,
        dropout=0.0,
        max_length=128,
        scheduler="constant",
        warmup_ratio=0.0,
        # no samples during the run and no evaluation card after it (the card alone took 2.4 s after a 4-step run
        # on one thread): the tests of those ask for them (tests/test_sampling.py, tests/test_evaluation.py, and
        # here where named)
        samples=0,
        eval_rows=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_training_saves_only_a_small_adapter_whose_weights_changed(home):
    base_weights = home / "Models" / "LLM" / "demo" / "model.safetensors"
    before = sha(base_weights)
    snap = TrainingJob(config(home, task="small", val_split=0.2, eval_rows=4)).run()  # its card is a file too

    assert snap["state"] == State.COMPLETED, snap["error"]
    assert gc.isenabled()  # the collector, paused for the imports (lora_core/memory.py), is on again
    out = Path(snap["adapter_dir"])
    assert out.parent == home / "Models" / "LoRA" and out.name.startswith("small_")
    assert {p.name for p in out.iterdir()} <= ALLOWED
    assert {"adapter_config.json", "adapter_model.safetensors", "training_meta.json", "eval.json"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "adapter_model.safetensors").stat().st_size < 3 * 1024 * 1024  # MBs, never the 13 MB model
    # Readable like the JSON beside it (safetensors alone writes 0600), here and in the demo model's folder.
    for folder in (out, home / "Models" / "LLM" / "demo"):
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
        assert (
            len(set(modes.values())) == 1
            and modes["config.json" if "LLM" in str(folder) else "training_meta.json"] & 0o044
        ), modes

    # loss falls over the run
    losses = [loss for _, loss in snap["loss"]]
    assert len(losses) >= 10 and losses[-1] < losses[0] - 0.2

    # every LoRA B matrix moved away from its zero init; the base model's file is untouched
    weights = load_file(out / "adapter_model.safetensors")
    b_mats = [v for k, v in weights.items() if "lora_B" in k]
    assert b_mats and all(v.abs().max() > 0 for v in b_mats)
    assert not any("lora" not in k for k in weights)
    assert sha(base_weights) == before

    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["status"] == "completed"
    assert meta["base_fingerprint"] == adapters.base_fingerprint(home / "Models" / "LLM" / "demo")
    assert meta["dataset"]["sha256"] == hashlib.sha256(SAMPLE_DATASET.read_bytes()).hexdigest()
    assert meta["dataset"]["train_examples"] + meta["dataset"]["eval_examples"] == 48
    assert meta["prompt_format"] == "chat_template"
    assert sorted(meta["target_modules"]) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    # eval loss of the base before training and of the adapter after, both recorded; the adapter helped
    assert meta["eval_loss_before"] is not None and meta["eval_loss_after"] is not None
    assert meta["eval_loss_after"] < meta["eval_loss_before"]
    assert meta["eval_history"] and meta["loss_history"]

    # the checkpoints for resume live outside the adapter folder
    assert not list(out.rglob("checkpoint-*"))
    assert any(scan.path == str(out) and scan.valid for scan in adapters.scan())


@pytest.mark.slow
def test_adapter_changes_the_model_and_base_weights_stay(home):
    from lora_core.chat import load_model

    snap = TrainingJob(config(home, task="changes", max_steps=6)).run()
    base_dir = home / "Models" / "LLM" / "demo"
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    base = load_model(base_dir)
    tuned = load_model(base_dir, snap["adapter_dir"])
    with torch.no_grad():
        base_logits = base(ids).logits
        tuned_logits = tuned(ids).logits
        with tuned.disable_adapter():
            disabled = tuned(ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-4)
    assert torch.allclose(base_logits, disabled, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("save", [True, False])
def test_stop_ends_within_one_step_and_saves_or_discards(home, save):
    job = TrainingJob(config(home, task=f"stop{save}", max_steps=400)).start()
    assert wait_for(lambda: job.snapshot()["step"] >= 3), job.snapshot()
    step_at_stop = job.snapshot()["step"]
    job.stop(save=save)
    assert job.wait(60)
    snap = job.snapshot()
    assert snap["state"] == State.STOPPED
    assert snap["step"] <= step_at_stop + 1
    if save:
        meta = adapters.read_manifest(snap["adapter_dir"])
        assert meta.status == "stopped" and meta.steps == snap["step"]
    else:
        assert snap["adapter_dir"] is None
        assert not list((home / "Models" / "LoRA").glob("stopFalse_*"))
    assert training.active_job() is None


@pytest.mark.slow
def test_a_second_start_is_refused_while_one_runs(home):
    first = TrainingJob(config(home, task="first", max_steps=400)).start()
    try:
        with pytest.raises(TrainingError, match="already running: first") as err:
            TrainingJob(config(home, task="second")).start()
        assert err.value.code == "busy"
    finally:
        first.stop(save=False)
        first.wait(60)
    assert training.active_job() is None


@pytest.mark.slow
def test_crash_during_save_leaves_nothing_that_scan_calls_valid(home, monkeypatch):
    before = {a.path for a in adapters.scan() if a.valid}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(adapters, "verify_adapter", broken)
        snap = TrainingJob(config(home, task="crash", max_steps=2)).run()
    assert snap["state"] == State.FAILED and snap["error_code"] == "disk_full" and "disk is full" in snap["error"]
    assert {a.path for a in adapters.scan() if a.valid} == before
    assert not [p for p in (home / "Models" / "LoRA").iterdir() if p.name.startswith(".staging")]
    assert training.active_job() is None  # the lock was released


def test_stop_pressed_as_a_run_ends_leaves_its_end_as_it_is(home, tmp_path, monkeypatch):
    """Stop and the run's end may cross: a run that completes between Stop's check and its 'stopping' stays
    completed (it used to be left 'stopping', and its record later read 'interrupted')."""
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))  # its run records apart from the module's
    job = TrainingJob(config(home, task="crossed"))
    job.publish(state=State.RUNNING)
    flag = job._stop
    ends = job.publish

    class EndsFirst:  # the run completes just as Stop sets the flag
        def set(self):
            ends(state=State.COMPLETED)
            flag.set()

        def is_set(self):
            return flag.is_set()

    job._stop = EndsFirst()
    job.stop(save=True)
    assert job.snapshot()["state"] == State.COMPLETED and flag.is_set()
    running = TrainingJob(config(home, task="crossed"))
    running.publish(state=State.RUNNING)
    running.stop(save=False)  # while it runs, Stop is said at once
    assert running.snapshot()["state"] == State.STOPPING


@pytest.mark.slow
def test_stop_during_loading_saves_nothing(home):
    job = TrainingJob(config(home, task="early"))
    job.stop(save=True)  # pressed before the model is loaded
    snap = job.run()
    assert snap["state"] == State.STOPPED and snap["adapter_dir"] is None


@pytest.mark.slow
def test_bad_settings_and_inputs_fail_with_a_clear_sentence(home):
    with pytest.raises(TrainingError, match="learning_rate"):
        TrainingJob(config(home, learning_rate=-1))
    snap = TrainingJob(config(home, task="nodata", data=str(home / "missing.json"))).run()
    assert snap["state"] == State.FAILED and "missing.json" in snap["error"]
    snap = TrainingJob(config(home, task="cpu4bit", quantization="4bit")).run()
    if models.device_kind() == "cpu":
        assert snap["state"] == State.FAILED and snap["error_code"] == "quantization_needs_cuda"


def test_history_lists_runs_and_marks_dead_ones_interrupted(home):
    run_dir = home / "Runs" / "ghost_20250101_000000"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run": run_dir.name, "state": "running", "pid": 2**22 + 7}))
    done = home / "Runs" / "done_20250101_000000"
    done.mkdir(parents=True)
    (done / "run.json").write_text(json.dumps({"run": done.name, "state": "completed", "pid": 2**22 + 7}))
    listed = {r["run"]: r for r in runs.list_runs()}
    assert listed["ghost_20250101_000000"]["state"] == "interrupted"
    # listing only shows it; the repair is its own step
    assert json.loads((run_dir / "run.json").read_text())["state"] == "running"
    assert runs.reconcile_runs() == 1
    assert json.loads((run_dir / "run.json").read_text())["state"] == "interrupted"
    assert any(r["state"] == "completed" for r in listed.values())


@pytest.mark.slow
def test_progress_is_published_while_training(home, monkeypatch):
    writes = []
    monkeypatch.setattr(
        training, "write_run", lambda folder, record: writes.append(record) or runs.write_run(folder, record)
    )
    job = TrainingJob(config(home, task="events", max_steps=10, eval_rows=4)).start()
    seen = []
    while not job.wait(0.05):
        seen.append(job.snapshot())
    final = job.snapshot()
    assert final["state"] == State.COMPLETED
    assert {s["state"] for s in seen} >= {State.RUNNING}
    assert final["total_steps"] == 10 and final["step"] == 10
    assert final["tokens_per_s"] > 0 and final["detail"]["trainable_params"] > 0
    assert len(final["loss"]) == 10  # logged every step: a 10-step run still draws a curve
    assert threading.active_count() >= 1
    # the run record is not rewritten at every step (at most every RECORD_EVERY_S for the losses), but every state
    # is written and the last record holds the whole curve
    assert len(writes) < final["step"] and writes[-1]["state"] == "completed"
    assert [w["state"] for w in writes[:2]] == ["loading", "running"]
    # the whole curve is written when the training ends, before the evaluation and the save (a crash there keeps it)
    assert any(w["state"] == "running" and w["loss"] == final["loss"] for w in writes)
    record = next(r for r in runs.list_runs() if r["run"] == final["run"])
    assert record["loss"] == final["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_torchrun_with_two_processes_writes_exactly_one_adapter(home, tmp_path, method):
    import os
    import subprocess
    import sys

    env = dict(os.environ, SIMPLE_LORA_HOME=str(tmp_path), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    (tmp_path / "Models" / "LLM").mkdir(parents=True)
    (tmp_path / "Models" / "LLM" / "demo").symlink_to(home / "Models" / "LLM" / "demo")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
        "-m", "lora_core", "train", "--base", str(tmp_path / "Models" / "LLM" / "demo"),
        "--data", str(SAMPLE_DATASET if method == "sft" else PREFERENCE_SAMPLE), "--method", method,
        "--task", "ddp", "--max-steps", "4", "--batch-size", "2", "--max-length", "96",
    ]  # fmt: skip
    if method == "dpo":  # the samples and the card after the run, on the first process only: the SFT run has them
        cmd += ["--samples", "0", "--eval-rows", "0"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, result.stdout
    summary = json.loads(summaries[0])
    assert summary["status"] == "completed" and summary["steps"] == 4
    folders = [p for p in (tmp_path / "Models" / "LoRA").iterdir()]
    assert [p.name for p in folders] == [Path(summary["adapter_dir"]).name]
    manifest = adapters.read_manifest(folders[0])
    assert manifest.status == "completed" and manifest.method == method
    assert len(list((tmp_path / "Runs").iterdir())) == 1
    assert (folders[0] / "eval.json").is_file() == (method == "sft")  # the card, written by the first process


@pytest.mark.slow
def test_resume_continues_a_stopped_run_from_its_checkpoint(home):
    job = TrainingJob(config(home, task="resumable", max_steps=40)).start()
    assert wait_for(lambda: job.snapshot()["step"] >= 3)
    job.stop(save=True)
    job.wait(60)
    stopped_at = job.snapshot()["step"]
    assert list((home / "Runs" / job.run_id / "checkpoints").glob(f"checkpoint-{stopped_at}"))

    snap = TrainingJob(config(home, task="resumable", max_steps=40, resume=True)).run()
    assert snap["state"] == State.COMPLETED and snap["step"] == 40
    assert snap["loss"][0][0] > stopped_at  # it went on from the checkpoint, not from step 1
    with pytest.raises(TrainingError, match="no checkpoint|There is no checkpoint"):
        raise_if_failed(TrainingJob(config(home, task="never_ran", resume=True)).run())


def raise_if_failed(snap):
    if snap["state"] == State.FAILED:
        raise TrainingError(snap["error_code"], **snap["error_params"])


@pytest.mark.slow
def test_two_runs_of_one_task_in_the_same_second_get_their_own_names(home):
    first, second = TrainingJob(config(home, task="twice")), TrainingJob(config(home, task="twice"))
    assert first.run_id != second.run_id and second.run_id.startswith(first.run_id.rsplit("_", 2)[0])


@pytest.mark.slow
def test_gradient_checkpointing_is_on_by_default_for_a_quantized_base_on_cuda_only(home, monkeypatch):
    unset = config(home)
    assert unset.gradient_checkpointing is None
    assert unset.checkpointing("4bit", "cuda") and unset.checkpointing("8bit", "cuda")
    assert not unset.checkpointing("none", "cuda") and not unset.checkpointing("none", "cpu")
    assert not config(home, gradient_checkpointing=False).checkpointing("4bit", "cuda")
    assert config(home, gradient_checkpointing=True).checkpointing("none", "cpu")
    # The memory estimate follows the same rule.
    monkeypatch.setattr(models, "device_kind", lambda: "cuda")
    base = home / "Models" / "LLM" / "demo"
    assert estimate.estimate(base).memory_bytes < estimate.estimate(base, gradient_checkpointing=False).memory_bytes
    monkeypatch.undo()
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))
    # On this CPU: off when unset, on when asked, and the Trainer is told.
    told = {}
    real = TrainingJob._trainer

    def spy(self, *args, **kwargs):
        trainer = real(self, *args, **kwargs)
        told[self.config.task] = trainer.args.activation_checkpointing
        return trainer

    monkeypatch.setattr(TrainingJob, "_trainer", spy)
    for task, value in (("ckpt_unset", None), ("ckpt_on", True)):
        job = TrainingJob(config(home, task=task, max_steps=2, quantization="none", gradient_checkpointing=value))
        snap = job.run()
        assert snap["state"] == State.COMPLETED, snap
        assert snap["detail"]["gradient_checkpointing"] is told[task] is (value is True)
        meta = json.loads((Path(snap["adapter_dir"]) / "training_meta.json").read_text(encoding="utf-8"))
        assert meta["hyperparameters"]["gradient_checkpointing"] is (value is True)  # resolved, never null
