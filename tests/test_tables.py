"""Any dataset file a user holds: CSV / TSV, Parquet, Excel and JSON with other keys, their columns mapped (guessed
from the names, or given), then the same row checks and the same trained tokens as the three formats; and each
refusal in one sentence naming the file and the line, sheet or column at fault."""

from __future__ import annotations

import json
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny import ID, WORD_TEMPLATE, ids, word_tokenizer

from lora_core import columns
from lora_core.data import Message, load_records
from lora_core.errors import DatasetError
from lora_core.masking import encode_records

M = -100
END = ID["<|end|>"]


def user_reply(prompt: str, reply: str, system: str = "") -> tuple[Message, ...]:
    head = (Message("system", system),) if system else ()
    return (*head, Message("user", prompt), Message("assistant", reply))


def rows_of(report) -> list[tuple[int, tuple[Message, ...]]]:
    return [(r.row, r.messages) for r in report.records]


def encoded(report) -> list[tuple[list[int], list[int]]]:
    examples, _, _ = encode_records(report.records, word_tokenizer(template=WORD_TEMPLATE), 256)
    return [(e.input_ids, e.labels) for e in examples]


def refused(path, code: str, **kwargs) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_records(path, **kwargs)
    err = info.value
    assert err.code == code, err.message
    assert err.message.count(". ") == 0 and "\n" not in err.message and "Traceback" not in err.message
    return err


# --- each file type, hand-written, mapped and encoded ---------------------------------------------------------------


def test_a_csv_with_a_bom_quoted_new_lines_and_semicolons_is_mapped_by_its_names(tmp_path):
    path = tmp_path / "qa.csv"
    text = 'question;answer\n"hello\nworld";"hi there"\nhello;"hi ""more"""\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    report = load_records(path)
    assert (report.kind, report.format, report.guessed) == ("csv", "alpaca", True)
    assert report.columns == "instruction=question,output=answer"
    assert rows_of(report) == [(1, user_reply("hello\nworld", "hi there")), (2, user_reply("hello", 'hi "more"'))]
    # the question is the prompt (masked), the answer and its end of turn are trained
    prompt = ids("<|user|> hello world <|end|> <|assistant|>")
    assert encoded(report)[0] == (prompt + ids("hi there <|end|>"), [M] * len(prompt) + ids("hi there") + [END])


def test_a_tsv_with_the_alpaca_columns_needs_no_mapping(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("instruction\tinput\toutput\tsystem\nhello\tworld\thi\tbe brief\nhello\t\tok\t\n")
    report = load_records(path)
    assert (report.kind, report.format, report.columns) == ("csv", "alpaca", "")
    assert rows_of(report) == [(1, user_reply("hello\n\nworld", "hi", "be brief")), (2, user_reply("hello", "ok"))]
    ids_, labels = encoded(report)[1]
    assert [i for i, label in zip(ids_, labels, strict=True) if label != M] == ids("ok <|end|>")


def test_a_parquet_conversation_column_of_role_structs_is_a_conversation(tmp_path):
    path = tmp_path / "chat.parquet"
    dialog = [
        [{"speaker": "customer", "text": "hello"}, {"speaker": "bot", "text": "hi"},
         {"speaker": "customer", "text": "more"}, {"speaker": "bot", "text": "ok"}],
        [{"speaker": "customer", "text": "hello world"}, {"speaker": "bot", "text": "hi there"}],
    ]  # fmt: skip
    pq.write_table(pa.table({"dialog": dialog, "id": [7, 8]}), path)
    report = load_records(path)
    assert report.kind == "parquet" and report.format == "messages"
    assert report.columns == "conversation=dialog,role=speaker,content=text,user=customer,assistant=bot"
    assert rows_of(report)[0] == (1, (Message("user", "hello"), Message("assistant", "hi"), Message("user", "more"),
                                      Message("assistant", "ok")))  # fmt: skip
    ids_, labels = encoded(report)[0]
    assert [i for i, label in zip(ids_, labels, strict=True) if label != M] == ids("hi <|end|> ok <|end|>")


def test_an_excel_workbook_reads_its_first_sheet_or_the_one_chosen(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Notes"
    notes.append(["title", "body"])
    notes.append(["hello", "world"])
    qa = book.create_sheet("QA")
    qa.append(["问题", "回答", None])
    qa.append(["hello", 42, None])
    qa.append([None, None, None])  # a blank row is skipped
    qa.append(["hello world", "hi there", None])
    path = tmp_path / "book.xlsx"
    book.save(path)
    err = refused(path, "needs_columns")
    assert "'book.xlsx'" in err.message and "title, body" in err.message
    report = load_records(path, sheet="QA")
    assert (report.kind, report.sheet, report.columns) == ("excel", "QA", "instruction=问题,output=回答")
    assert rows_of(report) == [(1, user_reply("hello", "42")), (2, user_reply("hello world", "hi there"))]
    prompt = ids("<|user|> hello world <|end|> <|assistant|>")
    assert encoded(report)[1] == (prompt + ids("hi there <|end|>"), [M] * len(prompt) + ids("hi there") + [END])
    assert refused(path, "excel_no_sheet", sheet="Sheet9").params["sheets"] == ["Notes", "QA"]


def test_a_jsonl_with_question_answer_keys_is_mapped_and_names_its_own_keys_in_problems(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "hello", "answer": "hi"}) + "\n" + json.dumps({"question": "hello",
                    "answer": " "}) + "\n")  # fmt: skip
    report = load_records(path)
    assert report.columns == "instruction=question,output=answer"
    assert rows_of(report) == [(1, user_reply("hello", "hi"))]
    prompt = ids("<|user|> hello <|end|> <|assistant|>")
    assert encoded(report) == [(prompt + ids("hi <|end|>"), [M] * len(prompt) + ids("hi") + [END])]
    assert [(p.row, p.field, p.message) for p in report.problems] == [(2, "answer", "Row 2: field 'answer' is empty.")]


def test_a_mapping_given_takes_the_columns_it_names(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("q,a,sys,notes\nhello,hi,be brief,x\n")
    refused(path, "needs_columns")  # nothing in the names says which is which
    report = load_records(path, columns="instruction=q, output=a, system=sys")
    assert rows_of(report) == [(1, user_reply("hello", "hi", "be brief"))] and not report.guessed
    assert report.to_json()["columns"] == "instruction=q,output=a,system=sys"


def test_a_conversation_written_as_json_text_in_a_csv_cell_with_a_system_column(tmp_path):
    path = tmp_path / "chat.csv"
    turns = json.dumps([{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi"}])
    path.write_text('sys,chat\n"be brief","' + turns.replace('"', '""') + '"\n')
    report = load_records(path, columns="conversation=chat,system=sys")
    assert rows_of(report) == [(1, user_reply("hello", "hi", "be brief"))]
    bad = tmp_path / "bad_chat.csv"
    bad.write_text('chat\n"' + json.dumps([{"from": "human", "value": "hello"}, {"from": "robot", "value": "x"}])
                   .replace('"', '""') + '"\n')  # fmt: skip
    problems = load_records(bad, columns="conversation=chat").problems
    assert [(p.field, p.code) for p in problems] == [("chat[1].from", "unknown_role")]


def test_guesses_from_names_in_english_and_chinese():
    assert columns.guess(["Prompt", "Response"], []) == columns.ColumnMap(instruction="Prompt", output="Response")
    assert columns.guess(["query", "response"], []).spec() == "instruction=query,output=response"
    assert columns.guess(["input", "target"], []).spec() == "instruction=input,output=target"
    assert columns.guess(["指令", "输入", "输出"], []).spec() == "instruction=指令,input=输入,output=输出"
    assert columns.guess(["title", "body"], []) is None


# --- bad input: one sentence naming the file and the place, and nothing written -----------------------------------


def test_a_ragged_csv_row_is_named_by_its_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('question,answer\nhello,"hi\nthere"\nhello,hi,extra\n')
    err = refused(path, "csv_ragged")
    assert err.params == {"file": "ragged.csv", "line": 4, "found": 3, "expected": 2}
    assert err.message == "File 'ragged.csv' has 3 cells in the row at line 4, but its header has 2 columns."


@pytest.mark.parametrize(
    ("spec", "code", "says"),
    [
        ("instruction=question,output=question", "columns_twice", "'question' is mapped twice, to instruction and to"),
        ("instruction=question,input=answer", "columns_no_output", "leaves no output"),
        ("instruction=question,instruction=answer", "columns_key_twice", "gives 'instruction' twice"),
        ("question=answer", "columns_bad", "'question=answer'"),
        (
            "instruction=question,output=answr",
            "columns_missing",
            "no column 'answr'; its columns are question, answer",
        ),
        ("conversation=question,output=answer", "columns_mixed", "not both"),
    ],
)
def test_a_bad_mapping_is_refused_naming_its_part(tmp_path, spec, code, says):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nhello,hi\n")
    assert says in refused(path, code, columns=spec).message


def test_a_truncated_parquet_file_is_refused(tmp_path):
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"question": ["hello"] * 50, "answer": ["hi"] * 50}), whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[:-40])
    assert "'cut.parquet' cannot be read as Parquet" in refused(cut, "parquet_unreadable").message


def test_an_xlsx_that_is_a_zip_of_something_else_and_an_old_xls_are_refused(tmp_path):
    fake = tmp_path / "fake.xlsx"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("photos/cat.jpg", b"\xff\xd8\xff")
    assert "a zip of photos/cat.jpg" in refused(fake, "not_excel").message
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))
    assert "save it as .xlsx or CSV" in refused(old, "excel_old").message
    text = tmp_path / "text.xlsx"
    text.write_text("question,answer\n")
    refused(text, "not_excel")


def test_a_column_name_twice_and_a_zip_bomb_are_refused(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("question,answer,question\nhello,hi,x\n")
    assert refused(dup, "duplicate_column").params == {"file": "dup.csv", "column": "question", "first": 1,
                                                       "second": 3, "line": 1}  # fmt: skip
    bomb = tmp_path / "big.parquet"
    pq.write_table(pa.table({"question": ["hello " * 2000] * 200, "answer": ["hi"] * 200}), bomb,
                   compression="zstd")  # fmt: skip
    assert bomb.stat().st_size < 100_000
    refused(bomb, "unpacks_too_large", max_bytes=100_000)


def test_hostile_cells_are_kept_as_text(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('question,answer\n"<script>alert(1)</script>","=cmd|\' /C calc\'!A0"\n')
    report = load_records(path)
    assert rows_of(report) == [(1, user_reply("<script>alert(1)</script>", "=cmd|' /C calc'!A0"))]


def test_a_workbook_skips_an_empty_first_sheet_and_a_chart_sheet(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    from openpyxl.chart import BarChart, Reference

    book.active.title = "Cover"
    data = book.create_sheet("Data")
    data.append(["question", "answer"])
    data.append(["hello", None])  # an empty cell: an empty field, as in a CSV
    chart = BarChart()
    chart.add_data(Reference(data, min_col=1, min_row=1, max_row=2))
    book.create_chartsheet("Chart", 0).add_chart(chart)
    path = tmp_path / "book.xlsx"
    book.save(path)
    report = load_records(path)
    assert report.sheet == "Data" and report.columns == "instruction=question,output=answer"
    assert [(p.field, p.message) for p in report.problems] == [("answer", "Row 1: field 'answer' is empty.")]


def test_odd_cells_never_crash_the_reader(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text('chat,q\n"' + "[" * 100_000 + '",x\n', encoding="utf-8")
    problems = load_records(path, columns="conversation=chat").problems
    assert [(p.field, p.code) for p in problems] == [("chat", "not_list")]
    crafted = tmp_path / "crafted.csv"  # csv.Sniffer's regular expressions take minutes on this
    crafted.write_text('question,answer\n"",' * 100 + '"' * 100 + "0" + '"' * 100 + "0\n")
    with pytest.raises(DatasetError):
        load_records(crafted)


def test_numbers_and_nulls_in_parquet_cells_read_as_a_spreadsheet_shows_them(tmp_path):
    path = tmp_path / "nums.parquet"
    pq.write_table(pa.table({"question": ["hello", "hello"], "answer": [42.0, None]}), path)
    report = load_records(path)
    assert rows_of(report) == [(1, user_reply("hello", "42"))]
    assert [(p.row, p.code) for p in report.problems] == [(2, "empty_field")]
