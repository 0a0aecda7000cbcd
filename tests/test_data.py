"""lora_core.data: every format normalised exactly, every bad input refused or reported with its place."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lora_core.data import FORMATS, DatasetReport, Message, Record, detect_row_format, load_records
from lora_core.errors import DatasetError

BOM = b"\xef\xbb\xbf"


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def array(*rows: object) -> bytes:
    return json.dumps(list(rows), ensure_ascii=False, indent=1).encode("utf-8")


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SIMPLE_LORA_HOME with its model folders, also the working directory, so any write would show."""
    for sub in ("LLM", "LoRA"):
        (tmp_path / "home" / "Models" / sub).mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write(workspace: Path):
    def write(name: str, data: bytes) -> Path:
        path = workspace / "data" / name
        path.write_bytes(data)
        return path

    return write


@pytest.fixture
def load(workspace: Path):
    """load_records, checking that the whole workspace is byte-for-byte unchanged afterwards."""

    def load(path: Path, fmt: str = "auto", **kwargs) -> DatasetReport:
        before = snapshot(workspace)
        try:
            return load_records(path, fmt, **kwargs)
        finally:
            assert snapshot(workspace) == before, "the loader wrote something"

    return load


@pytest.fixture
def refused(load):
    """The DatasetError a load raises, after checking it is one located sentence about the file."""

    def refused(path: Path, code: str, fmt: str = "auto", **kwargs) -> DatasetError:
        with pytest.raises(DatasetError) as info:
            load(path, fmt, **kwargs)
        err = info.value
        assert err.code == code, err.message
        assert err.params["file"] == path.name
        assert f"'{path.name}'" in err.message
        assert "\n" not in err.message and "Traceback" not in err.message and str(path.parent) not in err.message
        return err

    return refused


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)


def system(text: str) -> Message:
    return Message("system", text)


# ---------------------------------------------------------------------------------------------------------
# Formats load and normalise exactly

ALPACA = [
    {"instruction": "Name the capital of France.", "input": "", "output": "Paris is the capital of France."},
    {"instruction": "Add the numbers.", "input": "12 and 30", "output": "12 + 30 = 42"},
    {"instruction": "  Keep  my spaces \n", "input": None, "output": " ok ", "system": "Be brief."},
    {
        "instruction": "用一句话介绍长城。",
        "output": "长城是中国古代修建的军事防御工程。",
        "system": "  ",
        "input": " \t",
    },
]
ALPACA_MESSAGES = [
    (user("Name the capital of France."), assistant("Paris is the capital of France.")),
    (user("Add the numbers.\n\n12 and 30"), assistant("12 + 30 = 42")),
    (system("Be brief."), user("  Keep  my spaces \n"), assistant(" ok ")),
    (user("用一句话介绍长城。"), assistant("长城是中国古代修建的军事防御工程。")),
]


def test_alpaca_normalises_with_and_without_input_and_system(write, load):
    data = array(*ALPACA)
    path = write("alpaca.json", data)
    report = load(path)
    assert report.format == "alpaca" and report.ok
    assert report.records == [Record(n, m) for n, m in enumerate(ALPACA_MESSAGES, start=1)]
    assert (report.name, report.path, report.sha256) == ("alpaca.json", str(path), hashlib.sha256(data).hexdigest())
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (4, 4, 0)
    assert report.usable() == report.records
    assert report.to_json() == {
        "file": "alpaca.json",
        "format": "alpaca",
        "rows": 4,
        "valid_rows": 4,
        "invalid_rows": 0,
        "valid": True,
        "errors": [],
    }


def test_sharegpt_multi_turn_with_system(write, load):
    turns = [
        {"from": "system", "value": "You are a helpful librarian."},
        {"from": "human", "value": "Do you have books about whales?"},
        {"from": "gpt", "value": "Yes, shelf 12 has three of them."},
        {"from": "user", "value": "And about sharks?"},
        {"from": "assistant", "value": "Shelf 13, next to the whales."},
    ]
    field_system = {"system": "Answer in French.", "conversations": turns[1:3], "id": 7}
    report = load(write("sharegpt.json", array({"conversations": turns}, field_system)))
    assert report.format == "sharegpt" and report.ok
    assert [r.messages for r in report.records] == [
        (
            system("You are a helpful librarian."),
            user("Do you have books about whales?"),
            assistant("Yes, shelf 12 has three of them."),
            user("And about sharks?"),
            assistant("Shelf 13, next to the whales."),
        ),
        (
            system("Answer in French."),
            user("Do you have books about whales?"),
            assistant("Yes, shelf 12 has three of them."),
        ),
    ]


def test_openai_messages(write, load):
    rows = [
        {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]},
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "3+3?"},
                {"role": "assistant", "content": "6"},
            ]
        },
    ]
    report = load(write("chat.jsonl", jsonl(*rows)))
    assert report.format == "messages" and report.ok
    assert [r.messages for r in report.records] == [
        (user("Say hi."), assistant("Hi there!")),
        (system("Be terse."), user("2+2?"), assistant("4"), user("3+3?"), assistant("6")),
    ]


@pytest.mark.parametrize(
    "name, data",
    [
        ("jsonl_named.json", jsonl(*ALPACA)),
        ("array_named.jsonl", array(*ALPACA)),
        ("one_line_array.jsonl", json.dumps(ALPACA).encode()),
        ("crlf_blank_lines.txt", b"\r\n" + jsonl(*ALPACA[:2]).replace(b"\n", b"\r\n\r\n") + jsonl(*ALPACA[2:])),
        ("bom_array.json", BOM + array(*ALPACA)),
        ("bom_jsonl.jsonl", BOM + jsonl(*ALPACA)),
        ("no_final_newline.jsonl", jsonl(*ALPACA).rstrip(b"\n")),
    ],
)
def test_container_is_decided_by_content(write, load, name, data):
    report = load(write(name, data))
    assert report.ok and report.format == "alpaca"
    assert report.records == [Record(n, m) for n, m in enumerate(ALPACA_MESSAGES, start=1)]
    assert report.sha256 == hashlib.sha256(data).hexdigest()  # of the bytes as stored, BOM included


def test_single_line_object_is_one_row(write, load):
    report = load(write("one.json", json.dumps(ALPACA[1]).encode()))
    assert report.records == [Record(1, ALPACA_MESSAGES[1])]


def test_multi_line_rows_that_are_each_valid_json_lines(write, load):
    report = load(write("lines.json", b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}'))
    assert report.total_rows == 2 and report.ok


def test_auto_takes_the_majority_format_and_flags_other_rows(write, load):
    conv = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    report = load(write("mixed.jsonl", jsonl(conv, ALPACA[0], ALPACA[1])))
    assert report.format == "alpaca"
    assert [(p.row, p.field, p.code) for p in report.problems] == [(1, "", "mixed_format")]
    assert report.problems[0].message == "Row 1: the row is in ShareGPT format but the file is in Alpaca format."
    assert report.problems[0].params == {"row": 1, "field": "", "found": "sharegpt", "expected": "alpaca"} | {
        "found_name": "ShareGPT",
        "expected_name": "Alpaca",
    }
    tie = load(write("tie.jsonl", jsonl(conv, ALPACA[0])))
    assert tie.format == "sharegpt" and [(p.row, p.code) for p in tie.problems] == [(2, "mixed_format")]


def test_explicit_format_validates_against_that_format_only(write, load):
    report = load(write("alpaca.json", array(ALPACA[0])), "sharegpt")
    assert report.format == "sharegpt"
    assert [(p.row, p.field, p.code) for p in report.problems] == [(1, "conversations", "missing_field")]
    report = load(write("chat.jsonl", jsonl({"messages": []})), "alpaca")
    assert [(p.field, p.code) for p in report.problems] == [
        ("instruction", "missing_field"),
        ("output", "missing_field"),
    ]
    assert load(write("ok.jsonl", jsonl(*ALPACA)), " Alpaca ").records[1].messages == ALPACA_MESSAGES[1]


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"instruction": "a", "output": "b"}, "alpaca"),
        ({"output": "b"}, "alpaca"),
        ({"conversations": []}, "sharegpt"),
        ({"messages": None, "instruction": "x"}, "messages"),
        ({"prompt": "x", "answer": "y"}, None),
        ({}, None),
        ([{"instruction": "a"}], None),
        ("text", None),
        (None, None),
    ],
)
def test_detect_row_format(row, expected):
    assert detect_row_format(row) == expected
    assert expected is None or expected in FORMATS


# ---------------------------------------------------------------------------------------------------------
# File-level problems: one located sentence, raised


def gbk_file() -> bytes:
    return b'[\n {"instruction": "' + "长城".encode("gbk") + b'", "output": "x"}\n]'


UTF16_TEXT = '[{"instruction": "a", "output": "b"}]'


@pytest.mark.parametrize(
    "name, data, code, says, params",
    [
        ("empty.json", b"", "empty", "is empty", {}),
        ("blank.jsonl", b" \n\t\r\n\n", "empty", "is empty", {}),
        ("bom_only.json", BOM + b"\n ", "empty", "is empty", {}),
        ("picture.json", b'[{"a": 1}]\n\x89PNG\x00\x01', "binary", "line 2, column 5", {"line": 2, "column": 5}),
        ("gbk.json", gbk_file(), "not_utf8", "byte 0xB3 at line 2, column 19", {"line": 2, "column": 19}),
        (
            "latin1.jsonl",
            b'{"instruction": "caf\xe9", "output": "x"}',
            "not_utf8",
            "line 1, column 21",
            {"byte": "0xE9"},
        ),
        ("utf16.json", UTF16_TEXT.encode("utf-16"), "utf16", "UTF-16", {"line": 1, "column": 1}),
        ("utf16be.json", UTF16_TEXT.encode("utf-16-be"), "utf16", "UTF-16", {"line": 1, "column": 1}),
        ("utf16le.jsonl", UTF16_TEXT.encode("utf-16-le"), "utf16", "UTF-16", {"line": 1, "column": 2}),
        (
            "comma.json",
            b'[\n {"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}\n]',
            "invalid_json",
            "expecting ',' delimiter at line 3, column 2",
            {"line": 3, "column": 2},
        ),
        (
            "line.jsonl",
            b'{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": }\n',
            "invalid_json",
            "not valid JSON Lines: expecting value at line 3, column 32",
            {"line": 3, "column": 32},
        ),
        (
            "unterminated.json",
            b'[{"instruction": "a", "output": "b}]',
            "invalid_json",
            "unterminated string starting at line 1, column 33",  # not "starting at at line"
            {"line": 1, "column": 33},
        ),
        (
            "pretty_broken.json",
            b'{\n  "instruction": "a",\n  "output": "b",,\n}',
            "invalid_json",
            "line 3, column 17",
            {"line": 3, "column": 17},
        ),
        (
            "nan.json",
            b'[{"instruction": "NaN, Infinity", "output": "b"},\n {"instruction": "a", "output": NaN}]',
            "json_constant",
            "contains NaN at line 2, column 33",
            {"line": 2, "column": 33, "constant": "NaN"},
        ),
        (
            "inf.jsonl",
            b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b", "score": Infinity}',
            "json_constant",
            "contains Infinity at line 2, column 46",
            {"line": 2, "column": 46},
        ),
        ("neg_inf.jsonl", b'{"output": -Infinity}', "json_constant", "contains -Infinity at line 1, column 12", {}),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "too_deep", "too deeply", {}),
        ("deep.jsonl", jsonl(ALPACA[0]) + b"[" * 100_000 + b"]" * 100_000, "too_deep", "at line 2", {"line": 2}),
        (
            "wrapped.json",
            b'{\n "data": [\n  {"instruction": "a", "output": "b"}\n ]\n}',
            "top_level_object",
            "expected a list of rows",
            {"keys": ["data"]},
        ),
        (
            "wrapped_line.json",
            b'{"data": [{"instruction": "a", "output": "b"}]}',
            "top_level_object",
            "top-level object (keys: data), expected a list of rows",
            {},
        ),
        ("pretty_row.json", b'{\n "instruction": "a",\n "output": "b"\n}\n', "top_level_object", "list of rows", {}),
        ("number.json", b"42\n", "top_level_scalar", "a single number value, expected a list of rows", {}),
        ("string.json", b'"rows"', "top_level_scalar", "single string value", {"found": "string"}),
        ("null.json", b"null", "top_level_scalar", "single null value", {}),
        ("empty_array.json", b"[ ]", "no_rows", "contains no rows", {}),
        (
            "prompts.jsonl",
            jsonl({"title": "x", "body": "y"}, {"q": 1}),  # no column name says instruction and output
            "unknown_format",
            "has no row in a known format (expected Alpaca 'instruction' + 'output', ShareGPT 'conversations', "
            "OpenAI 'messages' or preference pairs 'prompt' + 'chosen' + 'rejected'); row 1 has keys title, body.",
            {},
        ),
        ("strings.json", b'["a", "b"]', "rows_not_objects", "row 1 is a string", {}),
    ],
)
def test_file_level_problem_is_refused_with_its_place(write, refused, name, data, code, says, params):
    err = refused(write(name, data), code)
    assert says in err.message
    assert err.params.items() >= params.items()


def test_missing_file_and_folder(workspace, refused):
    assert refused(workspace / "data" / "nope.json", "file_missing").message == "File 'nope.json' does not exist."
    assert refused(workspace / "data", "not_a_file").message == "'data' is a folder, not a dataset file."


def test_larger_than_max_bytes(write, load, refused):
    data = array(*ALPACA)
    path = write("big.json", data)
    err = refused(path, "too_large", max_bytes=100)
    assert err.params["size"] == len(data) and err.params["max_bytes"] == 100
    assert "larger than the 100 bytes limit" in err.message
    assert load(path, max_bytes=len(data)).ok


def test_unknown_format_option(write, refused):
    err = refused(write("a.json", array(*ALPACA)), "bad_format_option", fmt="yaml")
    assert "Unknown dataset format 'yaml'" in err.message and err.params["expected"] == ["auto", *FORMATS]


# ---------------------------------------------------------------------------------------------------------
# Row-level problems: every one reported with row and field, the file still loads

GOOD = {
    "alpaca": ALPACA[0],
    "sharegpt": {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    "messages": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
}


def conv(*turns: tuple[str, object], **extra: object) -> dict:
    return {"conversations": [{"from": role, "value": value} for role, value in turns], **extra}


def chat(*turns: tuple[str, object]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


@pytest.mark.parametrize(
    "fmt, bad_row, expected, says",
    [
        (
            "alpaca",
            {"instruction": "c", "input": ""},
            [("output", "missing_field")],
            "Row 2: field 'output' is missing.",
        ),
        (
            "alpaca",
            {"instruction": " \n ", "output": "b"},
            [("instruction", "empty_field")],
            "field 'instruction' is empty",
        ),
        ("alpaca", {"instruction": "a", "output": ["b"]}, [("output", "not_string")], "must be a string, found list"),
        (
            "alpaca",
            {"instruction": 1, "input": 2, "output": None, "system": False},
            [
                ("instruction", "not_string"),
                ("input", "not_string"),
                ("output", "not_string"),
                ("system", "not_string"),
            ],
            "Row 2: field 'system' must be a string, found boolean.",
        ),
        ("alpaca", {"instruction": "", "output": ""}, [("instruction", "empty_field"), ("output", "empty_field")], ""),
        (
            "sharegpt",
            {"conversations": "hi"},
            [("conversations", "not_list")],
            "must be a list of turns, found string",
        ),
        ("sharegpt", {"conversations": []}, [("conversations", "empty_field")], "field 'conversations' is empty"),
        (
            "sharegpt",
            conv(("human", "q"), ("bot", "a")),
            [("conversations[1].from", "unknown_role")],
            "Row 2: field 'conversations[1].from' has unknown role 'bot'; "
            "expected one of human, user, gpt, assistant, system.",
        ),
        (
            "sharegpt",
            conv(("gpt", "a")),
            [("conversations[0].from", "not_alternating")],
            "has role assistant where role user was expected",
        ),
        (
            "sharegpt",
            conv(("human", "q"), ("human", "q2"), ("gpt", "a")),
            [("conversations[1].from", "not_alternating")],
            "field 'conversations[1].from' has role user where role assistant was expected",
        ),
        (
            "sharegpt",
            conv(("human", "q"), ("gpt", "a"), ("human", "q2")),
            [("conversations[2].from", "last_not_assistant")],
            "must end with an assistant turn",
        ),
        (
            "sharegpt",
            conv(("human", "q")),
            [("conversations", "no_assistant")],
            "'conversations' has no assistant turn",
        ),
        (
            "sharegpt",
            conv(("human", "q"), ("gpt", "a"), ("system", "s"), ("human", "q2"), ("gpt", "a2")),
            [("conversations[2].from", "system_not_first")],
            "only allowed as the first turn",
        ),
        (
            "sharegpt",
            conv(("system", "s"), ("human", "q"), ("gpt", "a"), system="top"),
            [("conversations[0].from", "system_not_first")],
            "already has a 'system' field",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "human"}, {"from": "gpt", "value": "  "}]},
            [("conversations[0].value", "missing_field"), ("conversations[1].value", "empty_field")],
            "field 'conversations[0].value' is missing",
        ),
        (
            "sharegpt",
            {"conversations": ["hi", {"from": "gpt", "value": "a"}]},
            [("conversations[0]", "not_object")],
            "field 'conversations[0]' must be an object, found string",
        ),
        ("sharegpt", conv(("human", "q"), ("gpt", "a"), system=5), [("system", "not_string")], "found number"),
        ("messages", chat(("tool", "x"), ("assistant", "a")), [("messages[0].role", "unknown_role")], "role 'tool'"),
        ("messages", chat(("user", "q"), ("assistant", 5)), [("messages[1].content", "not_string")], "found number"),
        (
            "messages",
            chat(("user", "q"), ("assistant", "a"), ("system", "s")),
            [("messages[2].role", "system_not_first"), ("messages[2].role", "last_not_assistant")],
            "is the last turn and is a system turn",
        ),
        ("messages", chat(("system", "s")), [("messages", "no_assistant")], "has no assistant turn"),
        (
            "messages",
            {"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]},
            [("messages[0].role", "missing_field")],
            "field 'messages[0].role' is missing",
        ),
        ("alpaca", GOOD["sharegpt"], [("", "mixed_format")], "Row 2: the row is in ShareGPT format"),
        ("alpaca", None, [("", "not_object")], "Row 2: the row must be an object with fields, found null."),
        ("alpaca", [ALPACA[0]], [("", "not_object")], "found list"),
        ("alpaca", "text", [("", "not_object")], "found string"),
        (
            "alpaca",
            {"prompt": "x", "answer": "y"},
            [("", "unknown_format")],
            "Row 2: its fields ('prompt', 'answer') match no known format; expected Alpaca 'instruction' + 'output', "
            "ShareGPT 'conversations', OpenAI 'messages' or preference pairs 'prompt' + 'chosen' + 'rejected'.",
        ),
    ],
)
def test_row_problem_is_reported_with_row_and_field(write, load, fmt, bad_row, expected, says):
    report = load(write("rows.jsonl", jsonl(GOOD[fmt], bad_row)))
    assert report.format == fmt
    assert [(p.field, p.code) for p in report.problems] == expected
    for p in report.problems:
        assert p.row == 2 and p.params["row"] == 2 and p.params["field"] == p.field
        assert p.message.startswith("Row 2: ") and (f"field '{p.field}'" in p.message) == bool(p.field)
    assert says in " ".join(p.message for p in report.problems)
    assert (report.total_rows, report.valid_rows, report.invalid_rows, report.ok) == (2, 1, 1, False)
    assert report.to_json()["errors"] == [
        {"row": 2, "field": p.field, "code": p.code, "message": p.message} for p in report.problems
    ]

    with pytest.raises(DatasetError) as info:
        report.usable()
    assert info.value.code == "invalid_rows" and info.value.params["invalid_rows"] == 1
    assert info.value.message == f"1 of 2 rows in 'rows.jsonl' are invalid; first: {report.problems[0].message}"
    assert [r.row for r in report.usable(skip_invalid=True)] == [1]


def test_invalid_rows_counts_rows_not_problems(write, load):
    rows = [{"instruction": "", "output": ""}, ALPACA[1], {"instruction": 1}, ALPACA[2], {"output": "x"}]
    report = load(write("some_bad.json", array(*rows)))
    assert (report.total_rows, report.valid_rows, report.invalid_rows, len(report.problems)) == (5, 2, 3, 5)
    assert [r.row for r in report.usable(skip_invalid=True)] == [2, 4]
    assert report.to_json()["valid"] is False and report.to_json()["invalid_rows"] == 3


def test_no_valid_rows_is_refused_even_when_skipping(write, load):
    report = load(write("all_bad.jsonl", jsonl({"instruction": "a"}, {"output": "b"})))
    for skip in (False, True):
        with pytest.raises(DatasetError) as info:
            report.usable(skip_invalid=skip)
        assert info.value.code == ("no_valid_rows" if skip else "invalid_rows")
        assert "'all_bad.jsonl'" in info.value.message
