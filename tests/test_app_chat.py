"""The Models and Chat tabs, through their handlers and through the launched app's API."""

import copy
import inspect
import shutil

import gradio as gr
import pandas as pd
import pytest
from tiny import launched_app

from lora_core import assistants
from lora_core.data import load_records
from lora_core.demo import SAMPLE_DATASET, sample_rows
from lora_core.sessions import unload_all
from webui import chat_sessions, chat_tab, models_tab
from webui.dataset_tab import LoadedDataset
from webui.i18n import LANGS, TEXT

QUESTION = sample_rows()[0]["instruction"]
ANSWER = sample_rows()[0]["output"]


@pytest.fixture(scope="module")
def home(module_home, install_demo, demo_training):
    root = module_home
    install_demo(root / "Models" / "LLM" / "demo")
    # the session's demo training (tests/conftest.py): the adapter answers the sample questions
    demo_training.copy_to(root, "tab_" + demo_training.adapter.name.split("_", 1)[1])
    (root / "Models" / "LoRA" / "broken").mkdir()
    yield root
    unload_all()
    chat_sessions.drop(None)


@pytest.fixture(scope="module")
def adapter_name(home):
    return next(p.name for p in (home / "Models" / "LoRA").iterdir() if p.name.startswith("tab_"))


@pytest.fixture
def copy_of(home, adapter_name):
    """A second usable adapter (a copy), removed again after the test."""
    made = []

    def copy(name):
        shutil.copytree(home / "Models" / "LoRA" / adapter_name, home / "Models" / "LoRA" / name)
        made.append(home / "Models" / "LoRA" / name)
        return name

    yield copy
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


pytestmark = pytest.mark.slow  # every test here chats with the adapter of the full demo training (20 s)

GEN = ("", 0.0, 1.0, 48, 1.0)  # system, temperature, top_p, max new tokens, repetition penalty


def chat(lang, message, history=(), system=""):
    """Every step the chat streams: (history, cleared message box, prompt text)."""
    return [copy.deepcopy(step) for step in chat_tab.respond(lang, message, list(history), system, *GEN[1:])]


def test_scan_lists_valid_and_invalid_folders_in_both_languages(home, adapter_name):
    frame, choice, status = models_tab.on_scan("en", None)
    assert set(frame["adapter"]) == {adapter_name, "broken"}
    broken = frame[frame["adapter"] == "broken"].iloc[0]
    assert broken["valid"] == "invalid: broken has no adapter_config.json."  # why, without scrolling to the right
    assert list(frame.columns[:2]) == ["adapter", "valid"]
    assert broken["size"] == "0 B" and frame[frame["adapter"] == adapter_name].iloc[0]["size"].endswith(" MB")
    # an invalid folder can be chosen (to be deleted), marked; a usable one is chosen first
    assert sorted(choice["choices"]) == sorted([(adapter_name, adapter_name), ("broken (invalid)", "broken")])
    assert choice["value"] == adapter_name
    assert status == "Models/LoRA/: 1 usable, 1 invalid (folders: 2)."
    frame_zh, choice_zh, status_zh = models_tab.on_scan("zh", "broken")
    assert list(frame_zh.columns[:2]) == ["适配器", "有效性"] and choice_zh["value"] == "broken"
    assert frame_zh[frame_zh["适配器"] == "broken"].iloc[0]["有效性"] == "无效：broken 缺少 adapter_config.json。"
    assert ("broken (无效)", "broken") in choice_zh["choices"]
    assert status_zh == "Models/LoRA/ 中共 2 个文件夹：1 个可用，1 个无效。"


def test_language_switch_redoes_the_table_and_the_status_lines(home, adapter_name):
    models_tab.on_activate("en", adapter_name)
    frame, choice, scanned, status = models_tab.on_language("zh", adapter_name)
    assert "适配器" in frame.columns and scanned.startswith("Models/LoRA/ 中共") and status.startswith("对话使用")
    assert choice["value"] == adapter_name
    replay = chat_tab.replay_frame([[1, "q", "a", "a", "✓", "b"]], "en")
    adapter, status, renamed = chat_tab.on_language("zh", chat_tab.NO_ADAPTER, replay)
    assert adapter["choices"][0] == ("无（仅基座）", "") and status.startswith("对话使用")
    assert list(renamed.columns) == ["行", "提示", "参考答案", "适配器", "一致", "基座"]
    assert renamed.iloc[0].tolist() == [1, "q", "a", "a", "✓", "b"]
    *_, untouched = chat_tab.on_language("en", None, pd.DataFrame({"1": [], "2": [], "3": []}))
    assert untouched == gr.update()


def test_activate_chat_and_compare(home, adapter_name):
    status = models_tab.on_activate("en", adapter_name)
    assert "demo" in status and adapter_name in status
    steps = chat("en", QUESTION)
    assert len(steps) > 2  # streamed: the question at once, then the reply piece by piece
    assert steps[0][0][-1] == {"role": "assistant", "content": ""}
    history, cleared, prompt = steps[-1]
    assert history[-1] == {"role": "assistant", "content": ANSWER}
    assert cleared == "" and QUESTION in prompt and prompt.endswith("<|im_start|>assistant\n")
    base_reply, adapter_reply = chat_tab.on_compare("en", QUESTION, *GEN)
    assert adapter_reply == ANSWER and base_reply != ANSWER
    assert "none" in models_tab.on_deactivate("en")
    history, _, _ = chat("en", QUESTION)[-1]
    assert history[-1]["content"] == base_reply  # deactivated: the pure base again
    with pytest.raises(gr.Error, match="Activate an adapter"):
        chat_tab.on_compare("en", QUESTION, *GEN)
    with pytest.raises(gr.Error, match="请先输入提示"):
        chat_tab.on_compare("zh", "  ", *GEN)


def test_the_chat_streams_as_a_generator_and_translates_its_errors(home, adapter_name):
    # Gradio streams only a generator function (a plain wrapper returning a generator object is an error there).
    assert inspect.isgeneratorfunction(chat_tab.respond)
    chat_tab.on_load("en", "demo", adapter_name)
    history, _, prompt = chat("en", "What color is the Lumen Bay lighthouse?", system="Be brief.")[-1]
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    history, _, prompt = chat("en", QUESTION, history)[-1]  # a second turn: the first is in the prompt
    assert prompt.count("<|im_start|>user") == 2 and len(history) == 4
    assert chat("en", "   ") == [([], "", gr.skip())]  # nothing to send: nothing happens
    chat_sessions.drop(None)  # a new page: no model chosen yet
    with pytest.raises(gr.Error, match="请先加载模型") as err:
        chat("zh", QUESTION)
    assert err.value.title == "错误"  # the toast's title in the user's language too


def test_load_refuses_an_adapter_of_another_base_before_loading_anything(home, adapter_name):
    shutil.copytree(home / "Models" / "LLM" / "demo", home / "Models" / "LLM" / "other")
    cfg = home / "Models" / "LLM" / "other" / "config.json"
    cfg.write_text(cfg.read_text().replace("}", ', "note": "another model"}', 1))
    try:
        chat_tab.on_load("en", "demo", None)
        with pytest.raises(gr.Error, match=f"{adapter_name} 是在基座模型 demo 上训练的，不能用于基座模型 other"):
            chat_tab.on_load("zh", "other", adapter_name)
        assert chat_sessions.session(None).base.name == "demo"  # nothing was loaded
        # choosing the adapter chooses its own base model
        assert chat_tab.on_adapter_pick(adapter_name, "other") == gr.update(value="demo")
        assert chat_tab.on_adapter_pick(chat_tab.NO_ADAPTER, "other") == gr.update()
    finally:
        shutil.rmtree(home / "Models" / "LLM" / "other")


def test_opening_the_chat_tab_shows_what_is_loaded_and_on_disk(home, adapter_name):
    assistants.save(assistants.Assistant("Saved before", "demo", adapter_name))
    try:
        models_tab.on_activate("en", adapter_name)
        base, adapter, status, picked = chat_tab.on_tab("en", None, None)
        assert base["value"] == "demo" and adapter["value"] == adapter_name and adapter_name in status
        assert adapter["choices"] == [("none (pure base)", ""), (adapter_name, adapter_name)]  # no invalid one
        assert "Saved before" in picked["choices"]  # saved by another page (or before a reload)
        models_tab.on_deactivate("en")
        assert chat_tab.on_tab("en", "demo", adapter_name)[1]["value"] == chat_tab.NO_ADAPTER
    finally:
        assistants.delete("Saved before")


def test_replay_shows_rows_next_to_their_references(home, adapter_name):
    models_tab.on_activate("en", adapter_name)
    loaded = LoadedDataset(str(SAMPLE_DATASET), load_records(SAMPLE_DATASET))
    frame = chat_tab.on_replay("en", loaded, 3, 48)
    assert list(frame.columns) == ["row", "prompt", "reference answer", "adapter", "match", "base"]
    assert list(frame["reference answer"]) == [r["output"] for r in sample_rows()[:3]]
    assert (frame["adapter"] == frame["reference answer"]).sum() >= 2
    pairs = zip(frame["adapter"], frame["reference answer"], strict=True)
    assert list(frame["match"]) == ["✓" if adapter == reference else "" for adapter, reference in pairs]
    for n in (None, 0, 2.5, 101):
        with pytest.raises(gr.Error, match="1 到 100"):
            chat_tab.on_replay("zh", loaded, n, 48)
    with pytest.raises(gr.Error, match="数据集"):
        chat_tab.on_replay("zh", None, 3, 48)


def test_bad_names_are_refused_with_one_sentence(home):
    for bad in ("../../etc", "/etc", "broken", "missing"):
        with pytest.raises(gr.Error):
            models_tab.on_activate("en", bad)
    with pytest.raises(gr.Error, match="broken 缺少 adapter_config.json"):
        models_tab.on_activate("zh", "broken")
    for handler in (models_tab.on_activate, lambda lang, name: models_tab.on_merge(lang, name, "")):
        with pytest.raises(gr.Error, match="请先在列表中选择一个适配器"):
            handler("zh", None)
    with pytest.raises(gr.Error, match="不是|不在|没有"):
        chat_tab.on_load("zh", "../demo", None)


def test_quick_test_activates_the_chosen_adapter(home, adapter_name):
    models_tab.on_deactivate("en")
    reply, status = models_tab.on_quick_test("en", adapter_name, QUESTION)
    assert reply == ANSWER and adapter_name in status
    assert chat_sessions.session(None).status()["active"] == adapter_name
    with pytest.raises(gr.Error, match="Type a prompt"):
        models_tab.on_quick_test("en", adapter_name, " ")


def test_merge_makes_a_new_base_model_and_refuses_to_overwrite(home, adapter_name):
    try:
        message = models_tab.on_merge("en", adapter_name, "")
        assert f"{adapter_name}-merged" in message and (home / "Models" / "LLM" / f"{adapter_name}-merged").is_dir()
        assert f"{adapter_name}-merged" in chat_tab.on_tab("en", None, None)[0]["choices"]  # offered as a base
        with pytest.raises(gr.Error, match="不为空"):
            models_tab.on_merge("zh", adapter_name, f"{adapter_name}-merged")
    finally:
        shutil.rmtree(home / "Models" / "LLM" / f"{adapter_name}-merged", ignore_errors=True)


def test_assistants_are_saved_and_loaded_back(home, adapter_name):
    message, picker = chat_tab.on_save_assistant("en", "Guide", "demo", adapter_name, "Be brief.", 0.0, 1.0, 48, 1.0)
    assert "Guide" in message and picker["value"] == "Guide"
    assert assistants.load_all()["Guide"].adapter == adapter_name
    models_tab.on_deactivate("en")
    status, base, adapter, system, *_rest, history, prompt = chat_tab.on_pick_assistant("en", "Guide")
    assert (base, adapter, system, history, prompt) == ("demo", adapter_name, "Be brief.", [], "")
    assert chat_sessions.session(None).status()["active"] == adapter_name and adapter_name in status
    chat_tab.on_delete_assistant("en", "Guide")
    assert "Guide" not in assistants.load_all()
    with pytest.raises(gr.Error, match="请选择一个已保存的助手"):
        chat_tab.on_delete_assistant("zh", None)
    with pytest.raises(gr.Error, match="助手名称"):
        chat_tab.on_save_assistant("zh", "", "demo", None, "", *GEN[1:])


def test_delete_needs_confirmation_and_removes_the_folder(home):
    shutil.copytree(home / "Models" / "LLM" / "demo", home / "Models" / "LoRA" / "not_an_adapter")
    with pytest.raises(gr.Error, match="not_an_adapter"):
        models_tab.on_delete("en", "not_an_adapter", False)
    assert (home / "Models" / "LoRA" / "not_an_adapter").is_dir()
    message, frame, _, scanned, confirm, _ = models_tab.on_delete("en", "not_an_adapter", True)
    assert not (home / "Models" / "LoRA" / "not_an_adapter").exists() and confirm is False
    assert "not_an_adapter" not in set(frame["adapter"]) and scanned.endswith("(folders: 2).")


def test_deleting_the_active_adapter_leaves_a_working_base(home, adapter_name, copy_of):
    only = copy_of("only_copy")
    unload_all()
    chat_tab.on_load("en", "demo", None)
    base_reply = chat("en", QUESTION)[-1][0][-1]["content"]
    chat_tab.on_load("en", "demo", only)  # the one adapter loaded on the base
    assert chat("en", QUESTION)[-1][0][-1]["content"] == ANSWER
    message, frame, choice, _, _, status = models_tab.on_delete("en", only, True)
    assert only not in set(frame["adapter"]) and "none (pure base)" in status
    assert chat("en", QUESTION)[-1][0][-1]["content"] == base_reply  # the plain base, not a KeyError
    # one of two loaded adapters: the other one still works
    second = copy_of("second_copy")
    models_tab.on_activate("en", adapter_name)
    models_tab.on_activate("en", second)
    models_tab.on_delete("en", second, True)
    assert chat_sessions.session(None).status()["active"] is None
    assert models_tab.on_quick_test("en", adapter_name, QUESTION)[0] == ANSWER


def test_every_key_of_the_two_tabs_is_translated():
    for key in [*models_tab.COLUMNS, *chat_tab.REPLAY_COLUMNS, "choose_adapter", "replay_no_dataset", "merged"]:
        assert set(TEXT[key]) == set(LANGS), key


# ---------------------------------------------------------------------------------------------------------
# The running app, through its API


def test_app_api_loads_chats_and_compares(home, adapter_name):

    with launched_app() as client:
        assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) >= {
            "/load_chat_model", "/chat", "/compare", "/scan_adapters", "/activate_adapter", "/merge_adapter",
        }  # fmt: skip
        status = client.predict("en", "demo", adapter_name, api_name="/load_chat_model")
        assert adapter_name in status
        history, cleared, prompt = client.predict("en", QUESTION, [], *GEN, api_name="/chat")
        assert history[-1]["role"] == "assistant" and cleared == "" and QUESTION in prompt
        assert "".join(part["text"] if isinstance(part, dict) else part for part in history[-1]["content"]) == ANSWER
        base_reply, adapter_reply = client.predict("en", QUESTION, *GEN, api_name="/compare")
        assert adapter_reply == ANSWER and base_reply != ANSWER
