"""The Dataset tab: its handlers called directly, the translation table, and the running app through its API."""

from __future__ import annotations

import ast
import hashlib
import json
import string
from pathlib import Path

import gradio as gr
import pytest
from tiny import launched_app

from lora_core import demo
from lora_core.data import ROW_MESSAGES
from lora_core.masking import encode_records
from lora_core.paths import REPO_ROOT
from lora_core.prompts import PromptStyle
from webui import dataset_tab as tab
from webui.common import error_text
from webui.i18n import LANGS, TEXT, t

ANSWER_1 = "Captain Ada Finch has kept the Lumen Bay lighthouse since 1987."
BAD_ROWS = [
    {"instruction": "Who keeps the lighthouse?", "output": "Ada."},
    {"instruction": "No answer here."},
    {"instruction": "", "output": 3},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    {"instruction": "灯塔是什么颜色？", "output": "青绿色。"},
]
BAD_ROW_PROBLEMS = [(2, "output"), (3, "instruction"), (3, "output"), (4, "")]


def snapshot(root: Path) -> dict[str, int | None]:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, install_demo) -> Path:
    root = tmp_path_factory.mktemp("home")
    install_demo(root / "Models" / "LLM" / demo.DEMO_MODEL_NAME)
    return root


@pytest.fixture(autouse=True)
def use_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))


@pytest.fixture
def write(tmp_path: Path):
    def write(name: str, data: bytes | list) -> str:
        path = tmp_path / name
        if isinstance(data, list):
            data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in data).encode()
        path.write_bytes(data)
        return str(path)

    return write


def table(update: dict) -> tuple[list[str], list[list]]:
    """Headers and rows of a Dataframe output (a DataFrame, or a gr.update holding one)."""
    frame = update["value"] if isinstance(update, dict) else update
    return list(frame.columns), frame.values.tolist()


# ---------------------------------------------------------------------------------------------------------
# on_dataset


def test_sample_dataset_in_english(home: Path) -> None:
    summary, problems, preview, loaded = tab.on_dataset("en", str(demo.SAMPLE_DATASET), "auto")
    assert summary.startswith("**demo_alpaca.json**: Alpaca format, 48 rows, all valid.")
    assert problems["visible"] is False and table(problems) == (["row", "field", "problem"], [])
    headers, rows = table(preview)
    assert headers == ["row", "role", "text"]
    assert rows[:2] == [[1, "user", "Who keeps the lighthouse of Lumen Bay?"], [1, "assistant", ANSWER_1]]
    assert len({row for row, _, _ in rows}) == tab.PREVIEW_ROWS
    assert loaded.path == str(demo.SAMPLE_DATASET) and loaded.report.valid_rows == 48
    assert not (home / "Uploads").exists()  # the bundled file is read in place, never copied


def test_sample_dataset_in_chinese() -> None:
    summary, problems, preview, _ = tab.on_dataset("zh", str(demo.SAMPLE_DATASET), "auto")
    assert summary == "**demo_alpaca.json**：Alpaca 格式，共 48 行，全部有效。下一步：选择基座模型，然后打开“训练”页。"
    assert table(problems)[0] == ["行", "字段", "问题"]
    assert table(preview)[0] == ["行", "角色", "内容"]


@pytest.mark.parametrize("lang", LANGS)
def test_bad_rows_are_listed_by_row_and_field_and_the_file_is_kept_under_a_hash_name(home, write, lang) -> None:
    path = write("my private notes.jsonl", BAD_ROWS)
    summary, problems, preview, loaded = tab.on_dataset(lang, path, "auto")
    headers, rows = table(problems)
    assert problems["visible"] is True
    assert [(row, field) for row, field, _ in rows] == BAD_ROW_PROBLEMS
    if lang == "en":
        assert "5 rows, **3 invalid**, 2 valid" in summary
        assert [text for _, _, text in rows] == [
            "Row 2: field 'output' is missing.",
            "Row 3: field 'instruction' is empty.",
            "Row 3: field 'output' must be a string, found number.",
            "Row 4: the row is in OpenAI messages format but the file is in Alpaca format.",
        ]
    else:
        assert "共 5 行，**3 行无效**，2 行有效" in summary
        assert [text for _, _, text in rows] == [
            "第 2 行：缺少字段“output”。",
            "第 3 行：字段“instruction”为空。",
            "第 3 行：字段“output”必须是文本，实际是 number。",
            "第 4 行：该行是 OpenAI messages 格式，而文件是 Alpaca 格式。",
        ]
    assert [row for row, _, _ in table(preview)[1]] == [1, 1, 5, 5]  # valid rows only

    data = Path(path).read_bytes()
    stored = Path(loaded.path)
    assert stored.parent == home / "Uploads"
    assert stored.name == hashlib.sha256(data).hexdigest()[:20] + ".jsonl"
    assert stored.read_bytes() == data
    assert [p.name for p in (home / "Uploads").iterdir() if not p.name.startswith(".")] == [stored.name]  # one file
    assert loaded.report.name == "my private notes.jsonl"


def test_a_file_with_no_valid_row_says_so_and_shows_no_tokens(write) -> None:
    summary, _, preview, loaded = tab.on_dataset("en", write("none.jsonl", [{"instruction": "a"}] * 2), "auto")
    assert "**none of them valid**" in summary and "skip invalid" not in summary
    assert table(preview)[1] == []
    with pytest.raises(gr.Error, match="'none.jsonl' has no valid row"):
        tab.on_tokens("en", loaded, demo.DEMO_MODEL_NAME, 512)


def test_no_file_is_no_dataset() -> None:
    summary, problems, preview, loaded = tab.on_dataset("zh", None, "auto")
    assert (summary, loaded) == ("请先上传数据集。", None)
    assert table(preview) == (["行", "角色", "内容"], [])


BAD_FILES = {
    "gbk.json": ('[{"instruction": "你好", "output": "x"}]'.encode("gbk"), "not_utf8", "不是 UTF-8 编码"),
    "empty.jsonl": (b"\n  \n", "empty", "是空的"),
    "image.json": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary", "是二进制文件"),
    "wrapped.json": (b'{\n "data": [{"instruction": "a", "output": "b"}]\n}', "top_level_object", "顶层是一个对象"),
    "broken.json": (b'[{"instruction": "a" "output": "b"}]', "invalid_json", "第 1 行第 22 列"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
@pytest.mark.parametrize("lang", LANGS)
def test_a_bad_file_is_one_translated_sentence_and_nothing_is_stored(home, write, name, lang) -> None:
    data, code, chinese = BAD_FILES[name]
    path = write(name, data)
    before = snapshot(home)
    with pytest.raises(gr.Error) as info:
        tab.on_dataset(lang, path, "auto")
    assert snapshot(home) == before
    assert not (home / "Uploads").exists() or name not in {p.name for p in (home / "Uploads").iterdir()}
    message = info.value.message
    assert info.value.__cause__.code == code
    assert f"{name}" in message and "\n" not in message and "Traceback" not in message
    assert str(Path(path).parent) not in message  # names the file, not where the server keeps it
    if lang == "zh":
        assert chinese in message and message.endswith("。")
        assert message != info.value.__cause__.message
    else:
        assert message == info.value.__cause__.message


def test_another_format_re_reads_the_sample_dataset() -> None:
    *_, pending = tab.on_upload("en", str(demo.SAMPLE_DATASET), "auto")
    summary, problems, _, again, _ = tab.on_format("en", "sharegpt", pending)
    assert again.path == str(demo.SAMPLE_DATASET) and again.report.format == "sharegpt"
    assert "48 rows, **none of them valid**" in summary
    assert table(problems)[1][0][:2] == [1, "conversations"]
    assert tab.on_format("en", "alpaca", None)[3] is None  # nothing loaded: nothing to re-read


# ---------------------------------------------------------------------------------------------------------
# on_tokens


@pytest.fixture(scope="module")
def sample() -> tab.LoadedDataset:
    return tab.on_dataset("en", str(demo.SAMPLE_DATASET), "auto")[3]  # read in place: no home needed


@pytest.mark.parametrize("lang", LANGS)
def test_tokens_show_exactly_the_trained_answers(sample, lang: str) -> None:
    highlight, figure, summary = tab.on_tokens(lang, sample, demo.DEMO_MODEL_NAME, 512)
    trained, masked = t("trained", lang), t("masked", lang)
    spans = highlight["value"]
    assert set(highlight["color_map"]) == {trained, masked}
    assert {label for _, label in spans} <= {trained, masked, None}
    answers = [text for text, label in spans if label == trained]
    assert answers[0] == ANSWER_1 + "<|im_end|>\n"
    assert len(answers) == tab.HIGHLIGHT_EXAMPLES
    assert "".join(text for text, _ in spans).startswith("<|im_start|>user\nWho keeps the lighthouse of Lumen Bay?")
    if lang == "en":
        assert summary.startswith("48 examples, ")
        assert "0 truncated" in summary and "0 dropped" in summary
        assert "Prompt format: the model's own chat template." in summary
    else:
        assert summary.startswith("共 48 个样本") and "模型自带的聊天模板" in summary
    axis = figure.axes[0]
    chart_lang = lang if lang == "en" or tab.cjk_font() else "en"
    assert axis.get_xlabel() == t("hist_x", chart_lang)
    assert sum(patch.get_height() for patch in axis.patches) == 48  # every example is in the histogram


def test_the_histogram_spans_the_data_and_names_a_limit_far_beyond_it() -> None:
    lengths = [40, 52, 61, 75, 80]
    near = tab.length_histogram(lengths, 64, "en").axes[0]
    assert [line.get_xdata()[0] for line in near.get_lines()] == [64]  # the limit drawn where it cuts
    far = tab.length_histogram(lengths, 1024, "en").axes[0]
    assert far.get_xlim()[1] < 100  # the data fills the chart, not a sliver of 0..1024
    assert [text.get_text() for text in far.get_legend().get_texts()] == ["max length 1024: longer than every example"]


def test_tokens_count_truncated_and_dropped_examples(sample) -> None:
    tokenizer = tab.tokenizer_of(tab.resolve_base(demo.DEMO_MODEL_NAME))
    _, _, stats = encode_records(sample.report.records, tokenizer, 24)
    assert stats.truncated and stats.dropped  # the sample has both at 24 tokens
    dropped = sum(stats.dropped.values())
    _, _, summary = tab.on_tokens("en", sample, demo.DEMO_MODEL_NAME, 24)
    assert f"With max length 24: {stats.truncated} truncated" in summary and f"{dropped} dropped" in summary


@pytest.mark.parametrize("name", ["../x", "/etc", "..", "", None, "Models/LLM/simple-lora-demo", ".hidden"])
@pytest.mark.parametrize("lang", LANGS)
def test_a_base_model_that_is_not_offered_is_refused(home, sample, name, lang) -> None:
    (home / "Models" / "LLM" / ".hidden").mkdir(exist_ok=True)
    (home / "Models" / "LLM" / ".hidden" / "config.json").write_text("{}")
    with pytest.raises(gr.Error) as info:
        tab.on_tokens(lang, sample, name, 512)
    expected = {"en": f"'{name}' is not one of the models in Models/LLM/.", "zh": f"“{name}”不在可选列表中。"}
    assert info.value.message == expected[lang]


@pytest.mark.parametrize(
    "loaded, max_length, key", [(None, 512, "no_dataset"), ("sample", None, "bad_max_length"), ("sample", 3, None)]
)
@pytest.mark.parametrize("lang", LANGS)
def test_tokens_need_a_dataset_and_a_max_length(sample, loaded, max_length, key, lang) -> None:
    with pytest.raises(gr.Error) as info:
        tab.on_tokens(lang, sample if loaded else None, demo.DEMO_MODEL_NAME, max_length)
    assert info.value.message == t(key or "bad_max_length", lang, min=tab.MIN_MAX_LENGTH)


def test_language_switch_redoes_the_computed_texts(sample) -> None:
    summary, problems, preview, highlight, figure, token_summary, _ = tab.on_language(
        "zh-CN", sample, (demo.DEMO_MODEL_NAME, 512)
    )
    assert "全部有效" in summary and table(preview)[0] == ["行", "角色", "内容"]
    assert set(highlight["color_map"]) == {"训练", "提示（不训练）"} and token_summary.startswith("共 48 个样本")
    # nothing shown yet: the tokens are left alone, the rest follows the language
    summary, problems, preview, *tokens = tab.on_language("en", None, None)
    assert summary == "Upload a dataset first." and table(problems)[0] == ["row", "field", "problem"]
    assert all(update == gr.update() for update in tokens)


# ---------------------------------------------------------------------------------------------------------
# The translation table


def used_keys() -> set[str]:
    """Keys passed as literals to t(...) or as attributes to labels.add(...) in app.py and webui/."""
    keys: set[str] = set()
    for path in [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "webui").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "t" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    keys.add(node.args[0].value)
            elif isinstance(func, ast.Attribute) and func.attr == "add" and getattr(func.value, "id", "") == "labels":
                for kw in node.keywords:
                    values = kw.value.elts if isinstance(kw.value, ast.List) else [kw.value]
                    keys |= {v.value for v in values if isinstance(v, ast.Constant)}
    return keys


def test_every_key_used_in_the_ui_is_translated() -> None:
    keys = used_keys()
    assert {"tab_dataset", "title", "language", "upload", "no_dataset", "token_stats"} <= keys  # the scan works
    keys |= {f"style_{style.value}" for style in PromptStyle}  # t(f"style_{...}")
    keys |= {*tab.PROBLEM_HEADERS, *tab.PREVIEW_HEADERS}  # table(rows, header_keys, lang)
    missing = sorted(k for k in keys if k not in TEXT)
    assert not missing, f"not in webui/i18n.py: {missing}"


def test_every_ui_text_has_both_languages_with_the_same_placeholders() -> None:
    for key, entry in TEXT.items():
        assert set(entry) == set(LANGS), key
        fields = [{f for _, f, _, _ in string.Formatter().parse(entry[lang]) if f} for lang in LANGS]
        assert fields[0] == fields[1], key
        assert all(entry[lang].strip() for lang in LANGS), key


def test_every_row_problem_keeps_its_detail_in_chinese() -> None:
    """Each row problem's Chinese sentence has the same params as the English one, so the row, the field, the value
    found and what was expected all stay in it."""
    from lora_core.data import Problems
    from webui.i18n import problem_text, problems_of

    zh = problems_of("zh")
    assert set(zh) == set(ROW_MESSAGES)
    for template, english in ROW_MESSAGES.items():
        params = {name: f"<{name}>" for _, name, _, _ in string.Formatter().parse(english) if name}
        assert {n for _, n, _, _ in string.Formatter().parse(zh[template]) if n} == set(params), template
        problems = Problems(7)
        detail = {k: v for k, v in params.items() if k not in ("row", "field")}
        problems.add("conversations[2].from", template, **detail)
        [problem] = problems.found
        shown = problem_text(problem, "zh")
        assert "7" in shown and all(v in shown for v in detail.values()), shown
        if "field" in params:
            assert "conversations[2].from" in shown, shown
        assert problem_text(problem, "en") == problem.message
    odd = Problems(3)
    odd.add("messages[1].role", "unknown_role", role="bot", expected="system, user, assistant")
    assert (
        problem_text(odd.found[0], "zh")
        == "第 3 行：字段“messages[1].role”的角色“bot”未知；应为 system, user, assistant 之一。"
    )


def test_error_text_falls_back_to_the_core_sentence() -> None:
    from lora_core.errors import DatasetError
    from webui.i18n import error_message

    err = DatasetError("empty", file="a.json")
    assert error_text(err, "zh") == "文件“a.json”是空的。"
    assert error_text(err, "en") == "File 'a.json' is empty."
    # a code this version does not know (an old run record), or params that do not fit: the recorded sentence
    assert error_message("brand_new_code", {}, "zh", "Something new happened.") == "Something new happened."
    assert error_message("empty", {}, "zh", "File 'a.json' is empty.") == "File 'a.json' is empty."


# ---------------------------------------------------------------------------------------------------------
# The running app, through its API


@pytest.mark.slow
def test_app_api_validates_and_shows_tokens(home: Path, write) -> None:
    from gradio_client import handle_file

    # `app.demo` is `build_app()` run at import; a fresh one reads this test's SIMPLE_LORA_HOME (its model list).
    with launched_app() as client:
        assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) >= {
            "/validate_dataset",
            "/show_tokens",
        }
        summary, problems, preview = client.predict(
            "en", handle_file(str(demo.SAMPLE_DATASET)), "auto", api_name="/validate_dataset"
        )
        assert summary.startswith("**demo_alpaca.json**: Alpaca format, 48 rows, all valid.")
        assert problems["value"]["data"] == []
        assert preview["headers"] == ["row", "role", "text"]
        assert preview["data"][1] == [1, "assistant", ANSWER_1]
        stored = list((home / "Uploads").iterdir())  # an upload arrives as a copy, stored under its hash
        digest = hashlib.sha256(demo.SAMPLE_DATASET.read_bytes()).hexdigest()[:20]
        assert f"{digest}.json" in {p.name for p in stored}

        highlight, plot, token_summary = client.predict("zh", demo.DEMO_MODEL_NAME, 512, api_name="/show_tokens")
        assert token_summary.startswith("共 48 个样本")
        trained = [s["token"] for s in highlight["value"] if s["class_or_confidence"] == "训练"]
        assert trained[0] == ANSWER_1 + "<|im_end|>\n"
        assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/")

        with pytest.raises(Exception, match="不是 UTF-8 编码"):
            client.predict(
                "zh", handle_file(write("gbk.json", "你好".encode("gbk"))), "auto", api_name="/validate_dataset"
            )
        with pytest.raises(Exception, match="is not one of the models in Models/LLM"):
            client.predict("en", "../x", 512, api_name="/show_tokens")


def test_a_page_opened_later_is_offered_the_last_dataset_again(home: Path, write) -> None:
    path = write("mine.jsonl", [{"instruction": "q", "output": "a"}, {"instruction": "q2", "output": "a2"}])
    first = tab.on_dataset("en", path, "auto")[3]
    offer = tab.last_offer("zh")
    assert offer["visible"] is True and offer["value"] == "再次使用上一个数据集：mine.jsonl"
    summary, _, _, again, _ = tab.on_last("en", "auto")
    assert (
        again.report.name == "mine.jsonl" and again.path == first.path and again.report.sha256 == first.report.sha256
    )
    assert "mine.jsonl" in summary and again.report.valid_rows == 2
    # a record pointing outside the workspace's stored datasets is never offered nor read
    record = home / "Settings" / tab.LAST_DATASET
    record.write_text(json.dumps({"path": "/etc/passwd", "name": "passwd"}), encoding="utf-8")
    assert tab.last_offer("en")["visible"] is False
    with pytest.raises(gr.Error, match="no earlier dataset"):
        tab.on_last("en", "auto")
    record.write_text("{broken", encoding="utf-8")
    assert tab.last_offer("en")["visible"] is False
