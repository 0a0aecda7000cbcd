"""Server-side bounds and user text shown as text: what a hostile or careless visitor sends is refused in one
sentence, before it costs memory or time, and what they type reaches other pages only as text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from lora_core import estimate
from lora_core.chat import MAX_MESSAGE_CHARS, ChatEngine, GenerationSettings
from lora_core.config import TrainConfig
from lora_core.demo import SAMPLE_DATASET
from lora_core.errors import ChatError, TrainingError
from webui import chat_tab, models_tab, train_view
from webui.common import md, user_errors


@pytest.fixture(scope="module")
def engine(tmp_path_factory, install_demo):
    chat = ChatEngine()
    chat.load_base(install_demo(tmp_path_factory.mktemp("limits") / "demo"))  # a 512-token context
    yield chat
    chat.unload()


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_message_over_the_character_limit_is_refused_before_it_is_tokenized(engine) -> None:
    with pytest.raises(ChatError) as err:
        engine.generate(user("a" * (MAX_MESSAGE_CHARS + 1)), GenerationSettings(max_new_tokens=8))
    assert err.value.code == "message_too_long" and f"{MAX_MESSAGE_CHARS + 1} characters" in err.value.message


def test_a_message_that_cannot_fit_the_context_is_refused_with_its_token_count(engine) -> None:
    with pytest.raises(ChatError) as err:
        engine.generate(user("lighthouse " * 600), GenerationSettings(max_new_tokens=8))
    assert err.value.code == "prompt_too_long"
    assert err.value.params["tokens"] > 512 and err.value.params["limit"] == 512 - 8


def test_a_long_history_drops_its_oldest_turns_and_new_tokens_are_capped(engine) -> None:
    system = {"role": "system", "content": "be brief"}
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"question {i} " + "word " * 30},
                  {"role": "assistant", "content": f"answer {i} " + "word " * 30}]  # fmt: skip
    messages = [system, *turns, {"role": "user", "content": "last question"}]
    fitted = engine.fit(messages, GenerationSettings(max_new_tokens=400))
    assert fitted.dropped_turns > 0 and fitted.dropped_turns % 2 == 0
    assert fitted.messages[0] == system and fitted.messages[-1]["content"] == "last question"
    assert fitted.messages[1:-1] == turns[fitted.dropped_turns :]  # the newest turns kept, in order
    assert fitted.prompt_tokens + fitted.max_new_tokens <= 512 and fitted.max_new_tokens <= 400
    short = engine.fit(user("hello"), GenerationSettings(max_new_tokens=8192))
    assert short.dropped_turns == 0 and short.max_new_tokens == 512 - short.prompt_tokens  # what remains


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), "abc", None, -5, 10**9])
def test_generation_settings_that_are_not_sane_numbers_are_refused_by_name(bad) -> None:
    with pytest.raises(gr.Error) as err:
        user_errors(lambda lang: chat_tab._settings(0.0, 1.0, bad, 1.0))("en")
    assert "max_new_tokens" in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000, "../" * 100])
def test_hostile_adapter_names_get_one_sentence(name) -> None:
    with pytest.raises(gr.Error) as err:
        models_tab.on_activate("en", name)
    assert err.value.message.startswith("There is no adapter named") and len(err.value.message) < 200


def test_a_training_that_cannot_fit_in_memory_is_refused_with_the_numbers(demo_model, tmp_path) -> None:
    # A model folder whose config has the shape of a 70B Llama (the estimate reads the config alone).
    big = tmp_path / "big"
    shutil.copytree(demo_model, big)
    shape = json.loads((big / "config.json").read_text(encoding="utf-8"))
    shape.update(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                 num_key_value_heads=8, vocab_size=128256, head_dim=128)  # fmt: skip
    (big / "config.json").write_text(json.dumps(shape), encoding="utf-8")
    config = TrainConfig(base=str(big), data=str(SAMPLE_DATASET), task="huge", rank=64, batch_size=8,
                         max_length=4096)  # fmt: skip
    config.check()  # every number is in its range...
    with pytest.raises(TrainingError) as err:
        estimate.check_fits(config)  # ...but together they need far more memory than there is
    assert err.value.code == "not_enough_memory"
    assert err.value.params["needed"] > err.value.params["available"] > 0
    assert " GB of memory on the CPU" in err.value.message


def test_a_task_name_is_capped_on_the_server(demo_model) -> None:
    with pytest.raises(TrainingError) as err:
        TrainConfig(base=str(demo_model), data=str(SAMPLE_DATASET), task="x" * 1_000_000).check()
    assert err.value.code == "bad_task_name"


HOSTILE = "<img src=http://127.0.0.1:9/track.png> [click](http://evil.example) ![x](http://evil.example/x.png) **b**"


def test_user_text_in_a_markdown_line_is_text() -> None:
    shown = md(HOSTILE)
    assert "<img" not in shown and "](" not in shown.replace("\\](", "") and "**" not in shown.replace("\\*", "")
    snap = {"task": HOSTILE, "state": "failed", "step": 0, "total_steps": 0, "epoch": 0.0, "loss": [],
            "eval_loss": [], "error": HOSTILE, "error_code": None}  # fmt: skip
    line = train_view.progress_text(snap, "en")
    assert "<img" not in line and "&lt;img" in line and "\\[click\\]" in line


def test_a_toast_shows_user_text_as_text() -> None:
    from lora_core.errors import DatasetError

    def handler(lang):
        raise DatasetError("unreadable", file="<img src=x>.json", reason="<b>bold</b>")

    with pytest.raises(gr.Error) as err:
        user_errors(handler)("en")
    assert "<img" not in err.value.message and "&lt;img src=x&gt;.json" in err.value.message


def test_the_long_path_check_refuses_a_nul_byte(tmp_path: Path) -> None:
    from lora_core import paths
    from lora_core.errors import PathError

    with pytest.raises(PathError):
        paths.inside(tmp_path, "a\x00b")
