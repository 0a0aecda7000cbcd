"""Held-out evaluation: after the demo training the adapter answers the sample rows (its trained rows, said so) and
the base does not; with a validation split the rows are exactly the held-out ones; another dataset is "other". The
training evaluates its adapter itself (the card's file, listed in the manifest), the forgetting probe included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lora_core import adapters
from lora_core.demo import SAMPLE_DATASET
from lora_core.errors import SimpleLoraError, TrainingError
from lora_core.evaluation import EVAL_FILE, evaluate, probe_prompts, read_evaluation
from lora_core.manifest import META_NAME, read_manifest

pytestmark = pytest.mark.slow  # the demo training itself


@pytest.fixture(scope="module")
def trained(demo_home, demo_training) -> Path:
    """A copy of the session's demo training's adapter (tests/conftest.py), evaluated as that training ended."""
    return demo_training.copy_to(demo_home, "ev_" + demo_training.adapter.name.split("_", 1)[1])


def test_the_training_evaluated_its_adapter_and_listed_the_card_in_its_manifest(trained) -> None:
    card = read_evaluation(trained)
    assert card is not None and card.rows_kind == "trained" and len(card.rows) == 20  # eval_rows' default
    assert card.tuned["exact_match"] >= 0.8 and card.base["exact_match"] == 0.0
    # the probe ran: every general prompt answered by both (the demo base's answers are noise; the adapter's
    # are its training data's), each with its similarity, and the count of changed answers
    assert [p.id for p in card.probe] == [p["id"] for p in probe_prompts()]
    assert {p.lang for p in card.probe} == {"en", "zh"}
    assert all(0.0 <= p.similarity <= 1.0 and p.changed == (p.base.strip() != p.adapter.strip()) for p in card.probe)
    assert all(p.similarity == 1.0 for p in card.probe if not p.changed)
    listed = read_manifest(trained).evaluation
    assert listed["file"] == EVAL_FILE and listed["rows"] == 20 and listed["adapter"] == card.tuned
    assert listed["probe_total"] == 12 and listed["probe_changed"] == card.probe_changed
    assert listed["probe_right"] == [sum(p.base_right for p in card.probe), sum(p.adapter_right for p in card.probe)]
    best, worst = card.best_and_worst(3)
    assert len(best) == 3 and not {r.row for r in best} & {r.row for r in worst}
    assert min(r.adapter_scores["rouge_l"] for r in best) >= max(r.adapter_scores["rouge_l"] for r in worst)


def test_a_stopped_evaluation_writes_nothing_and_a_broken_card_is_named(trained, in_demo_home, tmp_path) -> None:
    import threading

    copy = shutil.copytree(trained, tmp_path / "LoRA" / "ev_stop")
    (copy / EVAL_FILE).unlink()
    stop = threading.Event()
    stop.set()
    base = in_demo_home / "Models" / "LLM" / "demo"
    assert evaluate(copy, SAMPLE_DATASET, base=base, stop=stop) is None
    assert not (copy / EVAL_FILE).exists() and read_evaluation(copy) is None
    (copy / EVAL_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(adapters.AdapterError) as err:
        read_evaluation(copy)
    assert "ev_stop" in err.value.message and "eval.json" in err.value.message


def test_the_demo_adapter_answers_its_trained_rows_and_the_base_does_not(trained, in_demo_home) -> None:
    result = evaluate(trained, SAMPLE_DATASET, limit=48, max_new_tokens=64)
    assert result.rows_kind == "trained" and len(result.rows) == 48  # no split: said to be trained rows
    assert result.tuned["exact_match"] >= 0.8 and result.base["exact_match"] == 0.0
    assert result.tuned["rouge_l"] > result.base["rouge_l"] and result.tuned["token_f1"] > result.base["token_f1"]
    assert result.tuned["eval_loss"] < result.base["eval_loss"]
    saved = json.loads((trained / EVAL_FILE).read_text(encoding="utf-8"))
    assert saved["tuned"] == result.tuned and len(saved["rows"]) == 48
    first = saved["rows"][0]
    assert set(first) >= {"row", "prompt", "reference", "base", "adapter", "base_scores", "adapter_scores"}
    adapters.verify_adapter(trained)  # the report beside it leaves the adapter usable


def test_with_a_validation_split_only_the_held_out_rows_are_scored(trained, in_demo_home, tmp_path) -> None:
    from lora_core.data import load_records
    from lora_core.masking import encode_records, split_dataset, to_dataset
    from lora_core.models import load_tokenizer

    copy = shutil.copytree(trained, tmp_path / "LoRA" / "ev_split")
    meta = copy / META_NAME
    manifest = json.loads(meta.read_text(encoding="utf-8"))
    manifest["hyperparameters"]["val_split"] = 0.25
    meta.write_text(json.dumps(manifest), encoding="utf-8")
    base = in_demo_home / "Models" / "LLM" / "demo"
    result = evaluate(copy, SAMPLE_DATASET, base=base, max_new_tokens=8)
    records = load_records(SAMPLE_DATASET).usable()
    examples, rows, _ = encode_records(records, load_tokenizer(base), manifest["hyperparameters"]["max_length"])
    _, held_out = split_dataset(to_dataset(examples, rows), 0.25, manifest["hyperparameters"]["seed"])
    assert result.rows_kind == "held_out" and [r.row for r in result.rows] == list(held_out["row"])
    assert len(result.rows) == 12


def test_another_dataset_is_other_rows_and_an_empty_one_is_refused(trained, in_demo_home, tmp_path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"instruction": "Say hi.", "output": "Hi."}\n', encoding="utf-8")
    result = evaluate(trained, other, max_new_tokens=8, save=False)
    assert result.rows_kind == "other" and [r.reference for r in result.rows] == ["Hi."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "", "output": ""}\n', encoding="utf-8")
    with pytest.raises(SimpleLoraError) as err:  # one sentence naming the file, nothing written
        evaluate(trained, bad, save=False)
    assert "bad.jsonl" in err.value.message
    with pytest.raises(TrainingError):
        evaluate(trained, other, limit=0, save=False)


def test_the_command_line_prints_the_summary(trained, in_demo_home, capsys) -> None:
    from lora_core.cli import main

    assert main(["evaluate", "--adapter", str(trained), "--data", str(SAMPLE_DATASET), "--limit", "4",
                 "--max-new-tokens", "48"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 4 and summary["rows_kind"] == "trained" and summary["adapter_scores"]["exact_match"] > 0
