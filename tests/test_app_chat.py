"""The Models and Chat tabs, through their handlers and through the launched app's API."""

import gradio as gr
import pytest

from lora_core import assistants, inference
from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET, build_demo_model, sample_rows
from lora_core.training import State, TrainConfig, TrainingJob
from webui import chat_tab, models_tab
from webui.dataset_tab import LoadedDataset, load_records

QUESTION = sample_rows()[0]["instruction"]
ANSWER = sample_rows()[0]["output"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("apphome")
    old = os.environ.get("SIMPLE_LORA_HOME")
    os.environ["SIMPLE_LORA_HOME"] = str(root)
    build_demo_model(root / "Models" / "LLM" / "demo")
    config = TrainConfig(
        base=str(root / "Models" / "LLM" / "demo"), data=str(SAMPLE_DATASET), task="tab", **DEMO_TRAINING
    )
    config.epochs, config.max_steps = 1.0, 200
    snap = TrainingJob(config).run()
    assert snap["state"] == State.COMPLETED
    (root / "Models" / "LoRA" / "broken").mkdir()
    yield root
    inference.engine().unload()
    if old is None:
        os.environ.pop("SIMPLE_LORA_HOME", None)
    else:
        os.environ["SIMPLE_LORA_HOME"] = old


@pytest.fixture(scope="module")
def adapter_name(home):
    return next(p.name for p in (home / "Models" / "LoRA").iterdir() if p.name.startswith("tab_"))


GEN = ("", 0.0, 1.0, 48, 1.0)  # system, temperature, top_p, max new tokens, repetition penalty


def test_scan_lists_valid_and_invalid_folders_in_both_languages(home, adapter_name):
    frame, choice, status = models_tab.on_scan("en", None)
    assert set(frame["adapter"]) == {adapter_name, "broken"}
    broken = frame[frame["adapter"] == "broken"].iloc[0]
    assert broken["valid"] == "invalid" and "adapter_config.json" in broken["reason"]
    assert choice["choices"] == [adapter_name] and choice["value"] == adapter_name
    frame_zh, _, status_zh = models_tab.on_scan("zh", None)
    assert "适配器" in frame_zh.columns and "2" in status_zh


def test_activate_chat_and_compare(home, adapter_name):
    status = models_tab.on_activate("en", adapter_name)
    assert "demo" in status and adapter_name in status
    *_, (history, cleared, prompt) = list(chat_tab.respond("en", QUESTION, [], *GEN))
    assert history[-1] == {"role": "assistant", "content": ANSWER}
    assert cleared == "" and QUESTION in prompt and prompt.endswith("<|im_start|>assistant\n")
    base_reply, adapter_reply = chat_tab.on_compare("en", QUESTION, *GEN)
    assert adapter_reply == ANSWER and base_reply != ANSWER
    assert "none" in models_tab.on_deactivate("en")
    *_, (history, _, _) = list(chat_tab.respond("en", QUESTION, [], *GEN))
    assert history[-1]["content"] == base_reply  # deactivated: the pure base again
    with pytest.raises(gr.Error, match="Activate an adapter"):
        chat_tab.on_compare("en", QUESTION, *GEN)


def test_replay_shows_rows_next_to_their_references(home, adapter_name):
    models_tab.on_activate("en", adapter_name)
    loaded = LoadedDataset(str(SAMPLE_DATASET), load_records(SAMPLE_DATASET))
    frame = chat_tab.on_replay("en", loaded, 3, 48)
    assert list(frame["reference answer"]) == [r["output"] for r in sample_rows()[:3]]
    assert (frame["adapter"] == frame["reference answer"]).sum() >= 2


def test_bad_names_are_refused_with_one_sentence(home):
    for bad in ("../../etc", "/etc", "broken", "missing"):
        with pytest.raises(gr.Error):
            models_tab.on_activate("en", bad)
    with pytest.raises(gr.Error, match="不是|不在|没有"):
        chat_tab.on_load("zh", "../demo", None)


def test_assistants_are_saved_and_loaded_back(home, adapter_name):
    message, picker = chat_tab.on_save_assistant("en", "Guide", "demo", adapter_name, "Be brief.", 0.0, 1.0, 48, 1.0)
    assert "Guide" in message and picker["value"] == "Guide"
    assert assistants.load_all()["Guide"].adapter == adapter_name
    status, base, adapter, system, *_rest, history = chat_tab.on_pick_assistant("en", "Guide")
    assert (base, adapter, system, history) == ("demo", adapter_name, "Be brief.", [])
    assert inference.engine().active == adapter_name
    chat_tab.on_delete_assistant("en", "Guide")
    assert "Guide" not in assistants.load_all()


def test_delete_needs_confirmation_and_removes_the_folder(home):
    import shutil

    shutil.copytree(home / "Models" / "LLM" / "demo", home / "Models" / "LoRA" / "not_an_adapter")
    with pytest.raises(gr.Error):
        models_tab.on_delete("en", "not_an_adapter", False)
    assert (home / "Models" / "LoRA" / "not_an_adapter").is_dir()
    message, frame, _, confirm = models_tab.on_delete("en", "not_an_adapter", True)
    assert not (home / "Models" / "LoRA" / "not_an_adapter").exists() and confirm is False
    assert "not_an_adapter" not in set(frame["adapter"])
