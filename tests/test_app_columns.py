"""The Dataset tab's Columns box, Hub fetch and mix, through their handlers: a table file waits for its mapping (the
guess preselected), is validated with it, keeps it with the upload and across a reload; a bad mapping or a hostile
column name is said as text; several datasets mixed become the Train tab's data."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from lora_core import demo, storage
from lora_core.config import TrainConfig
from webui import data_sources as ds
from webui import dataset_tab as tab


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def use_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))


def csv_file(tmp_path: Path, text: str, name: str = "qa.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def picks_of(views: tuple) -> list[str]:
    return [update["value"] for update in views[2:7]]


def test_a_csv_waits_for_its_mapping_with_the_guess_preselected_then_trains_with_it(tmp_path, home):
    path = csv_file(tmp_path, "question,answer,notes\nWho keeps the lighthouse?,Ada.,x\nWhat colour?,Teal.,y\n")
    summary, _, _, loaded, pending = tab.on_upload("en", path, "auto")
    assert loaded is None and pending["needs"] and pending["guess"] == "instruction=question,output=answer"
    assert "**qa.csv**: 2 rows in columns that are none of the three formats" in summary
    assert not Path(path).exists() or Path(path).parent == tmp_path  # stored under the app's own name
    stored = Path(pending["path"])
    assert stored.parent == home / "Uploads" and stored.suffix == ".csv"
    views = ds.columns_views(pending, "en")
    assert views[0]["visible"] is True
    assert picks_of(views) == ["question", "", "answer", "", ""]
    assert views[1].values.tolist()[0] == ["question", "Who keeps the lighthouse? | What colour?"]
    summary, _, preview, loaded = ds.on_columns("en", pending, *picks_of(views), "", "", "", "")
    assert loaded.report.columns == "instruction=question,output=answer" and loaded.report.ok
    assert summary.endswith(
        "all valid. Next: choose a base model and open the Train tab. Columns used: "
        "instruction=question,output=answer."
    )
    assert preview.values.tolist()[:2] == [[1, "user", "Who keeps the lighthouse?"], [1, "assistant", "Ada."]]
    assert storage.upload_meta(stored) == {"name": "qa.csv", "columns": "instruction=question,output=answer",
                                           "sheet": ""}  # fmt: skip
    config = TrainConfig(base="b", task="t", **loaded.config())
    assert (config.columns, config.format, config.data_name, config.data) == (
        "instruction=question,output=answer",
        "alpaca",
        "qa.csv",
        str(stored),
    )
    # a reload offers it again, with its mapping
    again = tab.on_last("en", "auto")[3]
    assert again.report.columns == loaded.report.columns and again.report.name == "qa.csv"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_mapping_that_leaves_no_output_is_one_sentence_and_keeps_the_file(tmp_path, lang):
    path = csv_file(tmp_path, "question,answer\nhi,yo\n")
    pending = tab.on_upload(lang, path, "auto")[4]
    with pytest.raises(gr.Error) as info:
        ds.on_columns(lang, pending, "question", "answer", "", "", "", "", "", "", "")
    assert info.value.__cause__.code == "columns_no_output"
    assert "\n" not in info.value.message and (lang == "en") == ("leaves no output" in info.value.message)
    with pytest.raises(gr.Error) as info:
        ds.on_columns(lang, pending, "question", "", "question", "", "", "", "", "", "")
    assert info.value.__cause__.code == "columns_twice"
    assert Path(pending["path"]).is_file()  # still there, to map again


def test_hostile_column_names_are_shown_as_text_and_mapped_as_given(tmp_path):
    hostile = "<img src=x onerror=alert(1)>"
    path = csv_file(tmp_path, f'"{hostile}",answer\n"**bold** [link](http://x)",ok\n')
    summary, *_, pending = tab.on_upload("en", path, "auto")
    assert "<img" not in summary and "&lt;img" in summary  # escaped in the Markdown
    with pytest.raises(gr.Error):  # '=' cannot be written in a mapping: refused, not misread
        ds.on_columns("en", pending, hostile, "", "answer", "", "", "", "", "", "")
    path = csv_file(tmp_path, '"<b>q</b>",answer\n"<script>alert(1)</script>",ok\n', "b.csv")
    pending = tab.on_upload("en", path, "auto")[4]
    loaded = ds.on_columns("en", pending, "<b>q</b>", "", "answer", "", "", "", "", "", "")[3]
    assert loaded.report.records[0].messages[0].content == "<script>alert(1)</script>"  # kept as the user's text


def test_a_workbook_offers_its_sheets(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["title"])
    book.active.append(["x"])
    sheet = book.create_sheet("QA")
    sheet.append(["prompt", "response"])
    sheet.append(["hi", "yo"])
    path = tmp_path / "book.xlsx"
    book.save(path)
    pending = tab.on_upload("en", str(path), "auto")[4]
    views = ds.columns_views(pending, "en")
    assert views[-1]["choices"] == ["Notes", "QA"] and views[-1]["visible"] is True and not pending["guess"]
    *_, pending = ds.on_sheet("en", "QA", "auto", pending)
    assert pending["sheet"] == "QA" and pending["guess"] == "instruction=prompt,output=response"


def test_two_datasets_mixed_become_the_train_tabs_data(tmp_path):
    first = tab.on_dataset("en", str(demo.SAMPLE_DATASET), "auto")[3]
    summary, _, _, loaded, mix, mix_summary, shown = ds.on_mix_add("en", first, [], 10, 1)
    assert len(mix) == 1 and loaded.sources and "the mix: 10 rows from 1 of your datasets" in mix_summary
    path = csv_file(tmp_path, "question,answer\nhi,yo\nhello,hey\n")
    pending = tab.on_upload("en", path, "auto")[4]
    second = ds.on_columns("en", pending, "question", "", "answer", "", "", "", "", "", "")[3]
    summary, _, _, loaded, mix, mix_summary, shown = ds.on_mix_add("en", second, mix, 0, 2)
    assert "the mix: 14 rows from 2 of your datasets" in mix_summary
    assert summary.startswith("**demo_alpaca.json + qa.csv**: mixed format, 14 rows, all valid")  # the same count
    assert shown.values.tolist() == [["demo_alpaca.json", 48, 10, 1.0, 10], ["qa.csv", 2, "–", 2.0, 4]]
    config = TrainConfig(base="b", task="t", **loaded.config())
    config.check()
    assert [s.columns for s in config.sources()] == ["", "instruction=question,output=answer"]
    assert [s.limit for s in config.sources()] == [10, 0]
    for limit, weight in ((-1, 1), (1.5, 1), (0, 0), (0, 1e9), ("x", 1)):
        with pytest.raises(gr.Error, match="row limit"):
            ds.on_mix_add("en", second, [], limit, weight)
    with pytest.raises(gr.Error, match="rows are all valid"):
        ds.on_mix_add("en", loaded, mix, 0, 1)  # the mix itself cannot join a mix
    assert ds.on_mix_clear("en")[3] is None


def test_a_hub_dataset_is_fetched_and_read_like_an_upload(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from hub_server import LocalHub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fetch is asked for
    rows = [{"query": "hi", "response": "yo"}, {"query": "hello", "response": "hey"}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with LocalHub() as hub:
        hub.add("acme/qa", {"data/train.jsonl": data}, repo_type="dataset")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        summary, _, _, loaded, pending = ds.on_fetch(
            "en", "acme/qa", "", "train", "", "auto", progress=lambda *a, **k: None
        )
        assert loaded is None and pending["guess"] == "instruction=query,output=response" and "acme/qa" in summary
        with pytest.raises(gr.Error, match="no dataset repository acme/missing"):
            ds.on_fetch("en", "acme/missing", "", "train", "main", "auto", progress=lambda *a, **k: None)
        with pytest.raises(gr.Error, match="not a repository id"):
            ds.on_fetch("en", "../../etc/passwd", "", "train", "", "auto", progress=lambda *a, **k: None)


def test_a_file_waiting_for_its_columns_says_so_in_the_other_language(tmp_path):
    path = csv_file(tmp_path, "问题,回答\n你好,您好\n")
    pending = tab.on_upload("en", path, "auto")[4]
    summary, _, _, *tokens, values = tab.on_language("zh", None, None, pending)
    assert summary.startswith("**qa.csv**：共 1 行") and "根据列名猜测" in summary
    assert values.columns.tolist() == ["列", "前几个值"] and values.values.tolist() == [
        ["问题", "你好"],
        ["回答", "您好"],
    ]


def test_a_conversation_column_with_its_own_turn_keys_is_mapped_in_the_page(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    dialog = [[{"speaker": "customer", "text": "hi"}, {"speaker": "bot", "text": "yo"}]] * 2
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"dialog": dialog}), path)
    pending = tab.on_upload("en", str(path), "auto")[4]
    views = ds.columns_views(pending, "en")
    assert picks_of(views) == ["", "", "", "", "dialog"] and list(views[7:11]) == [
        "speaker",
        "text",
        "customer",
        "bot",
    ]
    loaded = ds.on_columns("en", pending, *picks_of(views), *views[7:11])[3]
    assert loaded.report.ok and loaded.report.columns == (
        "conversation=dialog,role=speaker,content=text,user=customer,assistant=bot"
    )


def test_the_mapping_kept_with_an_upload_is_used_again_and_survives_a_format_change(tmp_path):
    text = "frage,antwort\nhi,yo\nhello,hey\n"
    pending = tab.on_upload("en", csv_file(tmp_path, text, "de.csv"), "auto")[4]
    assert pending["guess"] == ""  # German names: nothing guessed
    ds.on_columns("en", pending, "frage", "", "antwort", "", "", "", "", "", "")
    again = tmp_path / "again"
    again.mkdir()
    summary, _, _, loaded, pending = tab.on_upload("en", csv_file(again, text, "de.csv"), "auto")  # the same file
    assert loaded.report.columns == "instruction=frage,output=antwort" and "Columns used" in summary
    assert ds.columns_views(pending, "en")[2]["value"] == "frage"  # shown, to change
    *_, reread, _ = tab.on_format("en", "sharegpt", pending, loaded)  # the mapping makes the format
    assert reread.report.ok and reread.report.columns == loaded.report.columns
    *_, last, last_pending = tab.on_last("en", "auto")
    assert last.report.columns == loaded.report.columns and last_pending["path"] == loaded.path


def test_json_whose_rows_are_not_objects_is_refused_and_not_stored(tmp_path, home):
    path = tmp_path / "strings.json"
    path.write_text('["a", "b"]')
    before = sorted(p.name for p in (home / "Uploads").iterdir()) if (home / "Uploads").exists() else []
    with pytest.raises(gr.Error) as info:
        tab.on_upload("en", str(path), "auto")
    assert info.value.__cause__.code == "rows_not_objects"
    assert (sorted(p.name for p in (home / "Uploads").iterdir()) if (home / "Uploads").exists() else []) == before


@pytest.mark.slow
def test_an_api_client_maps_the_columns_of_the_file_it_validated(tmp_path):
    from gradio_client import handle_file
    from tiny import launched_app

    path = csv_file(tmp_path, "q,a\nhi,yo\n")
    with launched_app() as client:
        summary, _, _ = client.predict("en", handle_file(path), "auto", api_name="/validate_dataset")
        assert "none of the three formats" in summary
        summary, problems, preview = client.predict("en", instruction="q", output="a", api_name="/map_columns")
        assert "1 rows, all valid" in summary and "Columns used: instruction=q,output=a." in summary
        assert preview["data"][1] == [1, "assistant", "yo"]
        with pytest.raises(Exception, match="mapped twice"):
            client.predict("en", instruction="q", output="q", api_name="/map_columns")
