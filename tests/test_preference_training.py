"""DPO and ORPO on the demo model: the bundled preference sample is learned by DPO (the chosen answer becomes the
more likely one, and the greedy answer; ORPO's learning, with the same checks, is in the browser test that trains
it: tests/test_browser.py), the run stops, saves and is scanned like an instruction run, and a method that does
not fit the rows is refused before any work."""

import json
from pathlib import Path

import pytest
from tiny import wait_for

from lora_core import adapters, training
from lora_core.demo import DEMO_PREFERENCE, PREFERENCE_SAMPLE, SAMPLE_DATASET
from lora_core.evaluation import pair_logps, preference_accuracy
from lora_core.training import State, TrainConfig, TrainingJob

pytestmark = pytest.mark.usefixtures("in_demo_home")


def config(home: Path, **overrides) -> TrainConfig:
    values = dict(base=str(home / "Models" / "LLM" / "demo"), data=str(PREFERENCE_SAMPLE), task="pref",
                  **{**DEMO_PREFERENCE, "samples": 0, "eval_rows": 24})  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.slow
def test_the_demo_model_learns_to_prefer_the_chosen_answers(demo_home):
    """DPO with the demo settings. (ORPO, the demo settings' method, is learned in the browser, with the same checks:
    tests/test_browser.py, ``test_preference_pairs_are_shown_trained_with_orpo_and_compared``.)"""
    method = "dpo"
    snap = TrainingJob(config(demo_home, method=method, task=method)).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    folder = Path(snap["adapter_dir"])
    card = snap["evaluation"]
    # the preference accuracy of the 24 pairs it trained on: about chance before, nearly all after
    assert card["rows_kind"] == "trained" and card["preference"]["pairs"] == 24
    assert 0.25 <= card["preference"]["base"] <= 0.75
    assert card["preference"]["adapter"] >= 0.9
    assert card["adapter"]["exact_match"] >= 0.5  # its greedy answer is the chosen one on most
    manifest = adapters.read_manifest(folder)
    assert manifest.method == method and manifest.hyperparameters["beta"] == DEMO_PREFERENCE["beta"]
    assert manifest.dataset.format == "preference" and manifest.dataset.train_examples == 24
    accuracy = [value for _, value in manifest.preference_history["accuracy"]]
    assert accuracy[-1] >= 0.9 and accuracy[-1] > accuracy[0]
    assert manifest.preference_history["margin"][-1][1] > 0
    assert {p.name for p in folder.iterdir()} <= {"adapter_config.json", "adapter_model.safetensors", "eval.json",
        "training_meta.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}  # fmt: skip
    assert str(folder) in {str(a.path) for a in adapters.scan() if a.valid}


@pytest.mark.slow
def test_the_reference_is_the_base_with_the_adapter_disabled(demo_home):
    """DPO's reference log-probabilities are the base model's (the adapter disabled): at the first step, before any
    update, the policy is the reference, so its reward margin is exactly zero; no copy of the adapter is kept."""
    from lora_core.chat import ChatEngine
    from lora_core.data import load_records
    from lora_core.pairs import encode_pairs

    snap = TrainingJob(config(demo_home, method="dpo", task="ref", max_steps=6, eval_rows=0)).run()
    assert snap["preference"]["margin"][0] == [1, pytest.approx(0.0, abs=1e-6)]
    assert snap["preference"]["margin"][-1][1] != pytest.approx(0.0, abs=1e-6)
    assert not (Path(snap["adapter_dir"]) / "ref").exists()
    engine = ChatEngine()
    engine.load_base(demo_home / "Models" / "LLM" / "demo")
    try:
        records = load_records(PREFERENCE_SAMPLE).records[:6]
        pairs = encode_pairs(records, engine.tokenizer, 256)[0]
        bare = pair_logps(engine.model, pairs)
        engine.activate(snap["adapter_dir"])
        with engine._adapter_mode(None):
            disabled = pair_logps(engine.model, pairs)
        with engine._adapter_mode(engine.active):
            tuned = pair_logps(engine.model, pairs)
    finally:
        engine.unload()

    def flat(logps):
        return [x for pair in logps for x in pair]

    assert flat(disabled) == pytest.approx(flat(bare), abs=1e-4)
    assert flat(tuned) != pytest.approx(flat(bare), abs=1e-3)
    assert preference_accuracy(bare) is not None


@pytest.mark.slow
def test_stop_saves_a_stopped_preference_adapter(demo_home):
    job = TrainingJob(config(demo_home, method="dpo", task="stopdpo", max_steps=400, eval_rows=0)).start()
    assert wait_for(lambda: job.snapshot()["step"] >= 2), job.snapshot()
    job.stop(save=True)
    assert job.wait(60)
    snap = job.snapshot()
    assert snap["state"] == State.STOPPED and snap["step"] < 400
    manifest = adapters.read_manifest(snap["adapter_dir"])
    assert manifest.status == "stopped" and manifest.method == "dpo" and manifest.steps == snap["step"]
    assert training.active_job() is None


def test_a_method_that_does_not_fit_the_rows_is_refused_naming_the_file(demo_home):
    snap = TrainingJob(config(demo_home, method="sft", task="sftpairs")).run()
    assert snap["state"] == State.FAILED and snap["error_code"] == "pairs_need_method"
    assert "demo_preference.json holds preference pairs" in snap["error"]
    snap = TrainingJob(config(demo_home, method="dpo", task="dporows", data=str(SAMPLE_DATASET))).run()
    assert snap["state"] == State.FAILED and snap["error_code"] == "needs_pairs"
    assert "demo_alpaca.json holds instruction rows" in snap["error"]
    assert not list((demo_home / "Models" / "LoRA").glob("sftpairs_*"))
    assert not list((demo_home / "Models" / "LoRA").glob("dporows_*"))


def test_method_and_beta_are_checked_like_every_setting(demo_home):
    from lora_core.errors import TrainingError

    with pytest.raises(TrainingError) as err:
        TrainingJob(config(demo_home, method="ppo"))
    assert err.value.code == "setting_choice" and "method" in err.value.message
    for beta in (0.0, -1.0, float("nan"), 11.0):
        with pytest.raises(TrainingError, match="beta"):
            TrainingJob(config(demo_home, beta=beta))
    with pytest.raises(TrainingError, match="sft_weight"):
        TrainingJob(config(demo_home, sft_weight=-0.5))


def test_the_bundled_preference_sample_is_valid_bilingual_and_balanced():
    from lora_core.data import load_records

    report = load_records(PREFERENCE_SAMPLE)
    assert report.ok and report.format == "preference" and report.valid_rows == 24
    rows = json.loads(PREFERENCE_SAMPLE.read_text(encoding="utf-8"))
    chinese = [r for r in rows if any("\u4e00" <= ch <= "\u9fff" for ch in r["prompt"])]
    assert len(chinese) == 12
    assert len({r["prompt"] for r in rows}) == 24  # (that the base prefers neither side: the training test above)


@pytest.mark.slow
def test_with_a_validation_split_the_card_scores_the_held_out_pairs(demo_home):
    from lora_core.data import load_records
    from lora_core.masking import split_dataset
    from lora_core.models import load_tokenizer
    from lora_core.pairs import encode_pairs, to_pair_dataset

    snap = TrainingJob(config(demo_home, method="orpo", task="heldout", val_split=0.25, max_steps=4)).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    assert snap["eval_loss_before"] is not None and snap["eval_loss_after"] is not None
    card = snap["evaluation"]
    assert card["rows_kind"] == "held_out" and card["preference"]["pairs"] == 6
    tokenizer = load_tokenizer(demo_home / "Models" / "LLM" / "demo")
    pairs, rows, _ = encode_pairs(load_records(PREFERENCE_SAMPLE).records, tokenizer, DEMO_PREFERENCE["max_length"])
    train_set, held_out = split_dataset(to_pair_dataset(pairs, rows), 0.25, DEMO_PREFERENCE.get("seed", 42))
    scored = json.loads((Path(snap["adapter_dir"]) / "eval.json").read_text(encoding="utf-8"))["rows"]
    assert sorted(r["row"] for r in scored) == sorted(held_out["row"])
    assert not set(held_out["row"]) & set(train_set["row"])


@pytest.mark.slow
def test_the_reference_of_a_pair_is_computed_once_and_kept(demo_home, monkeypatch):
    """Three epochs of DPO over the 24 pairs (3 batches each): the reference runs for the first epoch's batches
    only, and the run's losses are those of a run that computes the reference at every step (TRL's own way), up
    to float rounding (a pair's reference computed in another batch)."""
    from lora_core import preference_trainer

    passes = []
    compute = preference_trainer.PreferenceTrainer.compute_ref_log_probs

    def counted(self, model, inputs):
        passes.append(inputs["input_ids"].shape[0] // 2)
        return compute(self, model, inputs)

    monkeypatch.setattr(preference_trainer.PreferenceTrainer, "compute_ref_log_probs", counted)
    settings = dict(method="dpo", max_steps=9, eval_rows=0)
    kept = TrainingJob(config(demo_home, task="kept", **settings)).run()
    assert kept["state"] == State.COMPLETED, kept["error"]
    assert sum(passes) == 24 and len(passes) == 3, passes  # every pair once, in the first epoch's batches

    passes.clear()
    real = preference_trainer.PreferenceTrainer._compute_loss
    monkeypatch.setattr(preference_trainer.PreferenceTrainer, "reference", None)
    monkeypatch.setattr(preference_trainer.PreferenceTrainer, "_compute_loss",
                        lambda self, model, inputs, outputs: super(preference_trainer.PreferenceTrainer, self)
                        ._compute_loss(model, inputs, outputs))  # fmt: skip
    every = TrainingJob(config(demo_home, task="every", **settings)).run()
    assert every["state"] == State.COMPLETED and passes == [], every["error"]  # TRL's inline reference
    assert [s for s, _ in kept["loss"]] == [s for s, _ in every["loss"]] == list(range(1, 10))
    assert [v for _, v in kept["loss"]] == pytest.approx([v for _, v in every["loss"]], abs=1e-4)
    margins = [[v for _, v in run["preference"]["margin"]] for run in (kept, every)]
    assert margins[0] == pytest.approx(margins[1], abs=1e-4) and max(map(abs, margins[0])) > 0.1
    assert real is not preference_trainer.PreferenceTrainer._compute_loss


def test_a_pair_is_known_by_its_tokens_and_where_its_answers_begin():
    """The kept reference's key: the same pair padded otherwise in another batch is the same pair; the same tokens
    split otherwise into prompt and answers, or the answers swapped, are another pair."""
    import torch

    from lora_core.preference_trainer import pair_keys

    def batch(pairs, width):  # TRL's layout: [chosen..., rejected...], padded on the right with 0
        rows = [c for c, _ in pairs] + [r for _, r in pairs]
        ids = torch.tensor([t + [0] * (width - len(t)) for t, _ in rows])
        mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t, _ in rows])
        completion = torch.tensor([a + [0] * (width - len(a)) for _, a in rows])
        return {"input_ids": ids, "attention_mask": mask, "completion_mask": completion}

    a = (([5, 6, 7], [0, 0, 1]), ([5, 6, 8], [0, 0, 1]))  # prompt [5, 6], answers [7] / [8]
    b = (([5, 6, 7], [0, 1, 1]), ([5, 6, 8], [0, 1, 1]))  # prompt [5], answers [6, 7] / [6, 8]
    other = (([9, 9, 9, 9], [0, 0, 1, 1]), ([9, 9, 8], [0, 0, 1]))
    first, second = pair_keys(batch([a, b], 3)), pair_keys(batch([other, a], 6))
    assert len(first) == 2 and first[0] != first[1]  # the same tokens, split otherwise
    assert second[1] == first[0]  # the same pair in another batch, padded to another width
    assert pair_keys(batch([(a[1], a[0])], 3))[0] != first[0]  # chosen and rejected swapped
