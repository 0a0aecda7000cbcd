"""The command line with any dataset file: ``validate`` / ``encode`` / ``evaluate`` take ``--columns`` and ``--sheet``,
``train`` takes ``--data`` again for a mix (each followed by its own options), ``fetch-dataset`` fetches a Hub
dataset's split; every refusal is one sentence on stderr and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import Cli

from lora_core.cli import build_parser


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    return Cli(tmp_path / "home", tmp_path / "cwd")


def qa_csv(folder: Path, name: str = "qa.csv", text: str = "Question;Answer\nhi;yo\nhello;hey\n") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_maps_a_csv_by_its_names_and_says_so(cli, tmp_path):
    result = cli.in_process("validate", qa_csv(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["valid_rows"], report["columns"], report["columns_guessed"]) == (
        2, "instruction=Question,output=Answer", True)  # fmt: skip
    assert "qa.csv: columns mapped by their names: instruction=Question,output=Answer" in result.stderr


def test_validate_takes_columns_and_a_sheet(cli, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["q", "a"])
    book.active.append(["hi", "yo"])
    second = book.create_sheet("Two")
    second.append(["ask", "say", "ctx"])
    second.append(["hi", "yo", "x"])
    path = tmp_path / "book.xlsx"
    book.save(path)
    result = cli.in_process("validate", path, "--sheet", "Two", "--columns", "instruction=ask,output=say,input=ctx")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["sheet"], report["columns"], report["columns_guessed"]) == (
        "Two", "instruction=ask,input=ctx,output=say", False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--columns", "instruction=Question,output=Question"], "The column 'Question' is mapped twice"),
        (["--columns", "instruction=Question"], "The column mapping leaves no output"),
        (["--columns", "instruction=Question,output=nope"], "File 'qa.csv' has no column 'nope'"),
        (["--sheet", "Two"], "A sheet ('Two') was chosen, but 'qa.csv' is not an Excel workbook."),
    ],
)
def test_bad_columns_are_one_sentence_and_exit_1(cli, tmp_path, args, says):
    path = qa_csv(tmp_path)
    line, result = cli.refused("validate", path, *args, in_process=True)
    assert says in line
    assert json.loads(result.stdout)["valid"] is False


def test_a_ragged_csv_is_named_by_its_line(cli, tmp_path):
    path = qa_csv(tmp_path, "ragged.csv", "question,answer\nhi,yo\nhello,hey,extra\n")
    line, _ = cli.refused("validate", path, in_process=True)
    assert line == "File 'ragged.csv' has 3 cells in the row at line 3, but its header has 2 columns."


def test_train_takes_several_datasets_each_with_its_own_options():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    args = train.parse_args(["--base", "b", "--task", "t", "--data", "a.csv", "--columns", "instruction=q,output=a",
                             "--limit", "100", "--data", "b.jsonl", "--weight", "2"])  # fmt: skip
    assert args.data == "a.csv"
    assert args.sources == [{"path": "a.csv", "columns": "instruction=q,output=a", "limit": 100},
                            {"path": "b.jsonl", "weight": 2.0}]  # fmt: skip
    for bad in (["--columns", "x=y", "--data", "a"], ["--data", "a", "--limit", "1", "--limit", "2"]):
        with pytest.raises(SystemExit):
            train.parse_args(["--base", "b", "--task", "t", *bad])


def test_train_refuses_a_bad_mix_before_any_run(cli, tmp_path):
    path = qa_csv(tmp_path)
    line, _ = cli.refused("train", "--base", tmp_path, "--task", "t", "--data", path, "--weight", "0",
                          in_process=True)  # fmt: skip
    assert line == "The setting weight must be between 0 (excluded) and 100; it is 0.0."
    line, _ = cli.refused("train", "--base", tmp_path, "--task", "t", "--data", path, "--columns", "output=Answer",
                          in_process=True)  # fmt: skip
    assert "no instruction" in line


def test_fetch_dataset_stores_a_hub_split(cli, monkeypatch):
    import huggingface_hub.constants
    from hub_server import LocalHub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fetch is asked for
    rows = [{"prompt": "hi", "completion": "yo"}]
    with LocalHub() as hub:
        hub.add("acme/chat", {"train.jsonl": json.dumps(rows[0]).encode() + b"\n"}, repo_type="dataset")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = cli.in_process("fetch-dataset", "acme/chat")
        assert result.returncode == 0, result.stderr
        stored = Path(result.stdout.strip())
        assert stored.parent == cli.home / "Uploads" and stored.read_text().strip() == json.dumps(rows[0])
        assert "acme/chat: 1 rows of train.jsonl" in result.stderr
        validated = cli.in_process("validate", stored)
        assert json.loads(validated.stdout)["columns"] == "instruction=prompt,output=completion"
        line, _ = cli.refused("fetch-dataset", "acme/nothing", in_process=True)
        assert line == "There is no dataset repository acme/nothing (or no such revision) on the Hub."


@pytest.mark.slow
def test_train_on_a_csv_says_the_guessed_mapping_and_records_it(demo_home, tmp_path):
    cli = Cli(demo_home, tmp_path)
    data = qa_csv(tmp_path, text="question,answer\n" + "hi,yo\nhello,hey\n" * 4)
    base = demo_home / "Models" / "LLM" / "demo"
    result = cli.in_process("train", "--base", base, "--data", data, "--task", "csv_cli", "--max-steps", "1",
                            "--eval-rows", "0", "--samples", "0", "--max-length", "64")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "qa.csv: columns mapped by their names: instruction=question,output=answer" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("[completed] step 1/1")  # its end, however short
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    manifest = json.loads((Path(summary["adapter_dir"]) / "training_meta.json").read_text(encoding="utf-8"))
    assert manifest["dataset"]["columns"] == "instruction=question,output=answer"
    assert manifest["dataset"]["parts"][0]["columns_guessed"] is True
