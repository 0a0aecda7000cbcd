"""``python -m lora_core``, run as a user runs it: a subprocess, offline, with its own SIMPLE_LORA_HOME.

Bad input must end with exit 1, one sentence on stderr, no traceback, and nothing written under the home.
The one-test-per-class-of-bad-input tables call the same ``main()`` in this process (a subprocess costs seconds
of imports each); every command and a sample of each table also runs as a real subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_core import cli as lora_cli
from lora_core.demo import DEMO_MODEL_NAME, SAMPLE_DATASET
from lora_core.masking import IGNORE_INDEX
from lora_core.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # subprocesses that import torch and transformers: a few seconds each

IM_END = "<|im_end|>"


class Cli:
    """Runs the command line in a scratch working directory, with SIMPLE_LORA_HOME set to ``home``."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home, self.cwd = home, cwd
        self.env = {
            **os.environ,
            "SIMPLE_LORA_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lora_core", *map(str, args)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def in_process(self, *args: str | Path) -> subprocess.CompletedProcess:
        """The same command through ``lora_core.cli.main`` in this process: an uncaught exception fails the test."""
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            mp.setenv("SIMPLE_LORA_HOME", str(self.home))
            mp.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            mp.chdir(self.cwd)
            try:
                code = lora_cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse
                code = exc.code
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def refused(self, *args: str | Path, in_process: bool = False) -> tuple[str, subprocess.CompletedProcess]:
        """Run a command that must be refused; returns its one stderr line after the common checks."""
        before = snapshot(self.home), snapshot(self.cwd)
        result = self.in_process(*args) if in_process else self(*args)
        assert (snapshot(self.home), snapshot(self.cwd)) == before, "a refused command wrote something"
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        return lines[0], result


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``, with size and modification time for files."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, subprocess.CompletedProcess]:
    """One demo model for the module, built by the command line itself into an empty home."""
    root = tmp_path_factory.mktemp("cli")
    (root / "home").mkdir()
    (root / "cwd").mkdir()
    cli = Cli(root / "home", root / "cwd")
    return cli, cli("demo-model")


@pytest.fixture(scope="module")
def cli(built) -> Cli:
    return built[0]


@pytest.fixture(scope="module")
def base(cli: Cli) -> Path:
    return cli.home / "Models" / "LLM" / DEMO_MODEL_NAME


@pytest.fixture(scope="module")
def tokenizer(base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base), local_files_only=True)


@pytest.fixture
def write(tmp_path: Path):
    """Write a data file outside the home, so the home snapshot only shows what the command wrote."""

    def write(name: str, data: bytes | str | list) -> Path:
        path = tmp_path / name
        if isinstance(data, list):
            data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in data)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    return write


def jsonl_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


# ---------------------------------------------------------------------------------------------------------
# demo-model


def test_demo_model_prints_its_path(built, base: Path) -> None:
    cli, result = built
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{base}\n"
    assert "Traceback" not in result.stderr
    assert (base / "config.json").is_file() and (base / "model.safetensors").is_file()
    assert sorted(p.name for p in (cli.home / "Models" / "LLM").iterdir()) == [DEMO_MODEL_NAME]
    assert snapshot(cli.cwd) == {}

    before = snapshot(cli.home)
    again = cli.in_process("demo-model")
    assert (again.returncode, again.stdout) == (0, f"{base}\n")
    assert snapshot(cli.home) == before  # already there: not rebuilt


def test_demo_model_refuses_a_folder_that_is_not_a_model(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "keep.txt").write_text("mine")
    line, result = cli.refused("demo-model", "--out", tmp_path / "docs", in_process=True)
    assert str(tmp_path / "docs") in line and "not a model folder" in line
    assert result.stdout == ""
    assert [p.name for p in (tmp_path / "docs").iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------------------------------------------------
# validate


def test_validate_the_sample_dataset(cli: Cli) -> None:
    result = cli("validate", SAMPLE_DATASET)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "file": SAMPLE_DATASET.name,
        "format": "alpaca",
        "rows": 48,
        "valid_rows": 48,
        "invalid_rows": 0,
        "valid": True,
        "errors": [],
    }


GOOD = {"instruction": "Who keeps the lighthouse?", "output": "Captain Ada Finch."}
ANSWER = {"role": "assistant", "content": "Hello."}
GOOD_CHAT = {"messages": [{"role": "user", "content": "Hi"}, ANSWER]}


@pytest.mark.parametrize(
    "rows, errors",
    [
        ([GOOD, {"instruction": "No answer."}], [(2, "output", "missing_field")]),
        ([GOOD, GOOD, {"instruction": "  ", "output": "x"}], [(3, "instruction", "empty_field")]),
        ([{"instruction": "Sum?", "output": 42}, GOOD], [(1, "output", "not_string")]),
        ([GOOD, ["not", "an", "object"]], [(2, "", "not_object")]),
        ([GOOD, {"question": "?", "answer": "!"}], [(2, "", "unknown_format")]),
        ([GOOD, GOOD, GOOD_CHAT], [(3, "", "mixed_format")]),
        (
            [GOOD_CHAT, {"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Beep."}]}],
            [(2, "messages[1].role", "unknown_role")],
        ),
        (
            [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, ANSWER]}, GOOD_CHAT],
            [(1, "messages[1].role", "not_alternating")],
        ),
        (
            [GOOD_CHAT, {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]}],
            [(2, "messages[1].content", "not_string")],
        ),
        (
            [{"conversations": [{"from": "human", "value": "a"}]}, {"conversations": "a, b"}],
            [(1, "conversations", "no_assistant"), (2, "conversations", "not_list")],
        ),
    ],
    ids=[
        "missing",
        "empty",
        "not-string",
        "not-object",
        "unknown-format",
        "mixed",
        "role",
        "alternation",
        "null",
        "sharegpt",
    ],
)
def test_validate_names_every_bad_row_and_field(cli: Cli, write, rows: list, errors: list) -> None:
    path = write("rows.jsonl", rows)
    line, result = cli.refused("validate", path, in_process=True)
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["file"] == "rows.jsonl"
    assert (report["rows"], report["invalid_rows"]) == (len(rows), len(errors))
    assert [(e["row"], e["field"], e["code"]) for e in report["errors"]] == errors
    for row, field, _ in errors:
        message = next(e["message"] for e in report["errors"] if e["row"] == row)
        assert message.startswith(f"Row {row}: ") and (f"field '{field}'" in message if field else True)
    row, field, _ = errors[0]
    assert line.startswith(f"Row {row}: ") and (f"field '{field}'" in line or not field)
    assert line == report["errors"][0]["message"] + (
        f" (and {len(errors) - 1} more problem)" if len(errors) > 1 else ""
    )


def test_validate_reports_all_problems_in_one_pass(cli: Cli, write) -> None:
    rows = [GOOD, {"instruction": "a"}, {"instruction": "", "output": 3}, GOOD]
    line, result = cli.refused("validate", write("many.jsonl", rows))
    report = json.loads(result.stdout)
    assert (report["valid_rows"], report["invalid_rows"]) == (2, 2)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, "output"), (3, "instruction"), (3, "output")]
    assert line.startswith("Row 2: field 'output' is missing") and "2 more problems" in line


BAD_FILES = {
    "empty": ("empty.json", b"", "empty", ["'empty.json'", "empty"]),
    "blank": ("blank.jsonl", b"  \n\n \t\n", "empty", ["'blank.jsonl'", "empty"]),
    "binary": (
        "image.json",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "binary",
        ["'image.json'", "binary", "line 3, column 1"],
    ),
    "gbk": (
        "gbk.json",
        '[{"instruction": "你好", "output": "x"}]'.encode("gbk"),
        "not_utf8",
        ["'gbk.json'", "UTF-8", "line 1, column 19"],
    ),
    "utf16": ("utf16.json", json.dumps([GOOD]).encode("utf-16"), "utf16", ["'utf16.json'", "UTF-16"]),
    "object": (
        "wrapped.json",
        json.dumps({"data": [GOOD, GOOD]}, indent=1).encode(),
        "top_level_object",
        ["'wrapped.json'", "top-level object", "data"],
    ),
    "scalar": ("number.json", b"42\n", "top_level_scalar", ["'number.json'", "single number"]),
    "json": (
        "broken.json",
        b'[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]',
        "invalid_json",
        ["'broken.json'", "line 2, column 22"],
    ),
    "jsonl": (
        "broken.jsonl",
        (json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n" + '{"instruction": "x", output: 1}\n').encode(),
        "invalid_json",
        ["'broken.jsonl'", "JSON Lines", "line 3, column 22"],
    ),
    "unknown": ("unknown.jsonl", b'{"q": 1}\n{"q": 2}\n', "unknown_format", ["'unknown.jsonl'", "row 1"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_validate_refuses_a_bad_file_in_one_located_sentence(cli: Cli, write, case: str) -> None:
    name, data, code, fragments = BAD_FILES[case]
    line, result = cli.refused("validate", write(name, data), in_process=case != "gbk")
    for fragment in fragments:
        assert fragment in line
    assert line.endswith(".")
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["error"] == {"code": code, "message": line}


def test_validate_refuses_a_missing_file_and_a_folder(cli: Cli, tmp_path: Path) -> None:
    line, _ = cli.refused("validate", tmp_path / "nowhere.json")
    assert line == "File 'nowhere.json' does not exist."
    line, _ = cli.refused("validate", tmp_path, in_process=True)
    assert f"'{tmp_path.name}' is a folder" in line


def test_validate_with_a_forced_format(cli: Cli, write) -> None:
    path = write("chat.jsonl", [GOOD_CHAT, GOOD_CHAT])
    assert cli.in_process("validate", path, "--format", "messages").returncode == 0
    line, result = cli.refused("validate", path, "--format", "alpaca", in_process=True)
    assert [e["field"] for e in json.loads(result.stdout)["errors"]] == ["instruction", "output"] * 2
    assert line.startswith("Row 1: field 'instruction' is missing")


# ---------------------------------------------------------------------------------------------------------
# encode


def trained_text(tokenizer, example: dict) -> str:
    return tokenizer.decode(
        [i for i, label in zip(example["input_ids"], example["labels"], strict=True) if label >= 0]
    )


def test_encode_trains_only_the_answers(cli: Cli, base: Path, tokenizer) -> None:
    before = snapshot(cli.home)
    result = cli("encode", SAMPLE_DATASET, "--base", base, "--limit", "5")
    assert result.returncode == 0, result.stderr
    assert snapshot(cli.home) == before  # encode only reads
    examples = jsonl_lines(result.stdout)
    answers = [row["output"] for row in json.loads(SAMPLE_DATASET.read_text(encoding="utf-8"))]
    assert [e["row"] for e in examples] == [1, 2, 3, 4, 5]
    for example in examples:
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) == len(labels) > 0
        assert all(label in (IGNORE_INDEX, i) for i, label in zip(ids, labels, strict=True))
        assert trained_text(tokenizer, example) == answers[example["row"] - 1] + IM_END + "\n"
        first = next(n for n, label in enumerate(labels) if label != IGNORE_INDEX)
        assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        assert answers[example["row"] - 1] not in tokenizer.decode(ids[:first])
    assert result.stderr.strip().splitlines() == [
        "encoded 5 of 5 rows (max length 512): 0 truncated, 0 dropped with nothing left to train"
    ]


def test_encode_max_length_truncates_the_prompt_and_drops_what_has_nothing_left(
    cli: Cli, base: Path, tokenizer, write
) -> None:
    rows = [
        {"instruction": "Who keeps the lighthouse?", "output": "Ada."},
        {"instruction": "lighthouse " * 60 + "?", "output": "Ada Finch."},  # long prompt: cut from the start
        {"instruction": "Who?", "output": "lighthouse " * 60},  # the answer alone is too long: dropped
    ]
    result = cli.in_process("encode", write("long.jsonl", rows), "--base", base, "--max-length", "40")
    assert result.returncode == 0, result.stderr
    examples = jsonl_lines(result.stdout)
    assert [e["row"] for e in examples] == [1, 2]
    assert len(examples[0]["input_ids"]) < 40 and len(examples[1]["input_ids"]) == 40
    assert trained_text(tokenizer, examples[1]) == "Ada Finch." + IM_END + "\n"
    assert not tokenizer.decode(examples[1]["input_ids"]).startswith("<|im_start|>")  # the oldest tokens went
    assert result.stderr.strip().splitlines() == [
        "encoded 2 of 3 rows (max length 40): 1 truncated, 1 dropped with nothing left to train"
    ]


def test_encode_refuses_invalid_rows_unless_told_to_skip_them(cli: Cli, base: Path, write) -> None:
    rows = [GOOD, {"instruction": "No answer."}, GOOD, {"output": "No question."}]
    path = write("some_bad.jsonl", rows)
    line, result = cli.refused("encode", path, "--base", base)
    assert result.stdout == ""
    assert "2 of 4 rows in 'some_bad.jsonl' are invalid" in line and "Row 2: field 'output'" in line

    result = cli.in_process("encode", path, "--base", base, "--skip-invalid")
    assert result.returncode == 0, result.stderr
    assert [e["row"] for e in jsonl_lines(result.stdout)] == [1, 3]
    assert "encoded 2 of 2 rows" in result.stderr


def test_encode_refuses_a_bad_file(cli: Cli, base: Path, write) -> None:
    line, result = cli.refused("encode", write("gbk.jsonl", "你好".encode("gbk")), "--base", base, in_process=True)
    assert "'gbk.jsonl' is not UTF-8" in line and result.stdout == ""


def test_bad_numbers_are_usage_errors(cli: Cli, base: Path) -> None:
    result = cli.in_process("encode", SAMPLE_DATASET, "--base", base, "--max-length", "0")
    assert result.returncode == 2 and result.stdout == ""
    assert "positive whole number" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------------------
# targets


def test_targets_of_the_demo_model(cli: Cli, base: Path) -> None:
    result = cli("targets", "--base", base)
    assert result.returncode == 0, result.stderr
    attention = json.loads(result.stdout)
    assert (attention["model_type"], attention["target_modules"], attention["source"]) == (
        "llama",
        ["q_proj", "v_proj"],
        "peft",
    )
    assert attention["reason"]

    result = cli.in_process("targets", "--base", base, "--preset", "all-linear")
    assert result.returncode == 0, result.stderr
    linear = json.loads(result.stdout)
    projections = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert (linear["model_type"], linear["source"]) == ("llama", "all-linear")
    assert sorted(linear["target_modules"]) == projections
    assert "lm_head" not in linear["target_modules"]


@pytest.mark.parametrize("command", ["targets", "encode"])
def test_a_missing_or_model_less_base_is_one_sentence(cli: Cli, tmp_path: Path, command: str) -> None:
    args = [SAMPLE_DATASET] if command == "encode" else []
    missing = tmp_path / "no-such-model"
    line, result = cli.refused(command, *args, "--base", missing)
    assert line == f"The model folder {missing} does not exist."
    assert result.stdout == ""

    (tmp_path / "empty-folder").mkdir()
    line, _ = cli.refused(command, *args, "--base", tmp_path / "empty-folder", in_process=True)
    assert "no config.json" in line and "empty-folder" in line


def test_gradient_checkpointing_flag_is_unset_on_or_off() -> None:
    from lora_core.cli import build_parser

    base = ["train", "--base", "b", "--data", "d", "--task", "t"]
    parse = build_parser().parse_args
    assert parse(base).gradient_checkpointing is None  # the core decides: on for 4-bit CUDA
    assert parse([*base, "--gradient-checkpointing"]).gradient_checkpointing is True
    assert parse([*base, "--no-gradient-checkpointing"]).gradient_checkpointing is False


def test_train_help_shows_the_defaults(capsys) -> None:
    from lora_core.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (
        ("--epochs", "3.0"),
        ("--learning-rate", "0.0002"),
        ("--rank", "16"),
        ("--targets", "all-linear"),
    ):
        assert re.search(rf"{flag} \S+ [^()]*\(default: {re.escape(default)}\)", text), flag
