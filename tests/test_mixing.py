"""Several datasets in one training: each with a row limit and a weight, rows numbered across the mix, repeats only
among the training rows, and the manifest naming each part with its sha256, mapping and rows used."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lora_core import adapters
from lora_core.config import TrainConfig
from lora_core.errors import DatasetError, TrainingError
from lora_core.mixing import DataSource, load_mix, repeat_rows
from lora_core.training import State, TrainingJob


def write_alpaca(path: Path, n: int, word: str) -> Path:
    path.write_text("\n".join(json.dumps({"instruction": f"{word} {i}", "output": f"{word} answer {i}"})
                              for i in range(1, n + 1)) + "\n")  # fmt: skip
    return path


def write_csv(path: Path, n: int) -> Path:
    path.write_text("question,answer\n" + "".join(f"what is {i}?,it is {i}\n" for i in range(1, n + 1)))
    return path


def test_limits_weights_and_rows_numbered_across_the_mix(tmp_path):
    a = write_alpaca(tmp_path / "a.jsonl", 10, "alpha")
    b = write_csv(tmp_path / "b.csv", 6)
    mix = load_mix([DataSource(str(a), limit=4), DataSource(str(b), weight=2.0)], seed=1)
    assert [r.row for r in mix.report.records] == [1, 2, 3, 4, 11, 12, 13, 14, 15, 16]
    assert mix.report.records[4].messages[0].content == "what is 1?"  # row 11 is b's row 1
    assert mix.copies == {row: 2 for row in range(11, 17)}
    assert [(p["name"], p["rows_chosen"], p["rows_used"], p["columns"]) for p in mix.parts] == [
        ("a.jsonl", 4, 4, ""),
        ("b.csv", 6, 12, "instruction=question,output=answer"),
    ]
    assert mix.parts[1]["sha256"] == hashlib.sha256(b.read_bytes()).hexdigest()


def test_a_weight_below_one_takes_a_seeded_share(tmp_path):
    a = write_alpaca(tmp_path / "a.jsonl", 10, "alpha")
    b = write_alpaca(tmp_path / "b.jsonl", 10, "beta")
    first = load_mix([DataSource(str(a), weight=0.5), DataSource(str(b), weight=1.5)], seed=3)
    again = load_mix([DataSource(str(a), weight=0.5), DataSource(str(b), weight=1.5)], seed=3)
    assert [r.row for r in first.report.records] == [r.row for r in again.report.records]
    assert [p["rows_used"] for p in first.parts] == [5, 15]
    assert len([r for r in first.report.records if r.row <= 10]) == 5
    assert sorted(first.copies.values()) == [2] * 5  # half of the second copy's rows used twice


def test_repeats_are_applied_to_the_training_rows_only():
    from datasets import Dataset

    train = Dataset.from_dict({"row": [1, 2, 3]})
    assert list(repeat_rows(train, {2: 3})["row"]) == [1, 2, 2, 2, 3]


def test_bad_mix_entries_are_refused_in_one_sentence(tmp_path):
    a = write_alpaca(tmp_path / "a.jsonl", 3, "alpha")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(a.read_bytes())
    with pytest.raises(TrainingError, match="copy.jsonl is in the mix already \\(as a.jsonl\\); give it a weight"):
        load_mix([DataSource(str(a)), DataSource(str(copy))], seed=1)  # its copies would straddle the split
    for entry, code in [
        ({"path": str(a), "weight": 0}, "setting_range"),
        ({"path": str(a), "weight": float("nan")}, "setting_range"),
        ({"path": str(a), "limit": -1}, "setting_range"),
        ({"path": str(a), "rm": "-rf"}, "bad_mix_entry"),
        ({"file": str(a)}, "bad_mix_entry"),
        ("a.jsonl", "bad_mix_entry"),
    ]:
        with pytest.raises(TrainingError) as info:
            TrainConfig(base="b", data=str(a), task="t", datasets=[entry]).check()
        assert info.value.code == code, entry
    with pytest.raises(TrainingError, match="at most 16"):
        TrainConfig(base="b", data=str(a), task="t", datasets=[{"path": str(a)}] * 17).check()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": ""}\n{"instruction": "y", "output": "z"}\n')
    with pytest.raises(DatasetError, match="invalid"):  # a part with invalid rows, as one dataset
        load_mix([DataSource(str(a)), DataSource(str(bad))], seed=1)
    assert load_mix([DataSource(str(a)), DataSource(str(bad))], seed=1, skip_invalid=True).parts[1]["rows_used"] == 1


@pytest.mark.slow
@pytest.mark.usefixtures("in_demo_home")
def test_a_training_on_a_mapped_csv_and_a_mix_records_every_part(demo_home, tmp_path):
    a = write_alpaca(tmp_path / "a.jsonl", 12, "alpha")
    b = write_csv(tmp_path / "b.csv", 8)
    settings = dict(base=str(demo_home / "Models" / "LLM" / "demo"), max_steps=2, batch_size=4, max_length=64,
                    eval_rows=0, samples=0)  # fmt: skip
    snap = TrainingJob(TrainConfig(data=str(b), task="csv", **settings)).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    manifest = adapters.read_manifest(snap["adapter_dir"])
    assert manifest.dataset.columns == "instruction=question,output=answer" and manifest.dataset.format == "alpaca"
    sources = [{"path": str(a), "limit": 5}, {"path": str(b), "weight": 2.0}]
    snap = TrainingJob(TrainConfig(data=str(a), task="mix", datasets=sources, val_split=0.2, **settings)).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    manifest = adapters.read_manifest(snap["adapter_dir"])
    parts = manifest.dataset.parts
    assert [(p["name"], p["rows_used"], p["sha256"]) for p in parts] == [
        ("a.jsonl", 5, hashlib.sha256(a.read_bytes()).hexdigest()),
        ("b.csv", 16, hashlib.sha256(b.read_bytes()).hexdigest()),
    ]
    assert manifest.dataset.name == "a.jsonl + b.csv"
    # 13 rows, 3 held out (20%, rounded); the training rows of b are used twice
    assert manifest.dataset.eval_examples == 3 and manifest.dataset.train_examples > 10
    assert str(tmp_path) not in json.dumps(manifest.to_json())  # no path of this machine in the manifest
