"""The whole flow through Gradio's own client, against `python app.py` started as a user starts it: on an empty
data home (the app builds the demo model itself), upload the sample dataset's first eight rows, validate them, train
with the demo settings (40 steps: the whole sample's 240 are the session's demo training, tests/conftest.py), poll
until completed, scan, activate, chat, generate and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from tiny import followed_training, served_app

from lora_core import demo

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Who keeps the lighthouse of Lumen Bay?"
ANSWER = next(
    r["output"] for r in json.loads(demo.SAMPLE_DATASET.read_text(encoding="utf-8")) if r["instruction"] == QUESTION
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`python app.py` on a free port with a fresh, empty data home; yields (client, home)."""
    home = tmp_path_factory.mktemp("e2e")
    with served_app(home) as app:
        yield Client(app.url, verbose=False), home


def reply_text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] if isinstance(p, dict) else p for p in content)


@pytest.mark.slow
def test_upload_train_activate_chat_and_compare_through_the_api(served, tmp_path):
    client, home = served
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {
        "/validate_dataset", "/show_tokens", "/start_training", "/stop_training", "/discard_training",
        "/training_status", "/scan_adapters", "/activate_adapter", "/deactivate_adapter", "/load_chat_model",
        "/chat", "/generate", "/compare", "/merge_adapter",
    } <= endpoints  # fmt: skip
    assert (home / "Models" / "LLM" / demo.DEMO_MODEL_NAME / "config.json").is_file()  # built at first start

    # 1. Upload and validate: the file is stored under a name the app chooses.
    eight = tmp_path / "lumen_bay.json"
    eight.write_text(json.dumps(demo.sample_rows()[:8]), encoding="utf-8")
    summary, problems, preview = client.predict(file=handle_file(str(eight)), api_name="/validate_dataset")
    assert "**lumen_bay.json**: Alpaca format, 8 rows, all valid." in summary and problems["value"]["data"] == []
    assert preview["data"][0] == [1, "user", QUESTION]
    assert [p.suffix for p in (home / "Uploads").iterdir() if not p.name.startswith(".")] == [".json"]  # + its record

    # 2. Train with the demo settings, passed by name (every other setting keeps the tab's default).
    settings = dict(demo.DEMO_TRAINING)
    preset = settings.pop("targets")
    started = client.predict(
        base_name=demo.DEMO_MODEL_NAME, task="e2e", preset=preset, **settings, api_name="/start_training"
    )
    assert started == "Training **e2e** started."
    with pytest.raises(Exception, match="A training is already running: e2e"):  # one at a time
        client.predict(base_name=demo.DEMO_MODEL_NAME, task="other", api_name="/start_training")
    status = followed_training(client)
    assert status["state"] == "completed", status.get("error")
    assert status["task"] == "e2e" and status["step"] == status["total_steps"] > 0
    losses = [loss for _, loss in status["loss"]]
    assert len(losses) == status["total_steps"] and losses[-1] < losses[0] / 2
    adapter_dir = Path(status["adapter_dir"])
    assert adapter_dir.parent == home / "Models" / "LoRA" and adapter_dir.name.startswith("e2e_")
    assert client.predict(api_name="/stop_training") == "No training is running."

    # 3. Scan and activate.
    table, choice, said = client.predict(current=None, api_name="/scan_adapters")
    assert said == "Models/LoRA/: 1 usable, 0 invalid (folders: 1)."
    assert adapter_dir.name in json.dumps(table["data"])
    activated = client.predict(name=adapter_dir.name, api_name="/activate_adapter")
    assert adapter_dir.name in activated

    # 4. Chat (streamed; the client returns the last update), one-shot generate, compare.
    history, cleared, prompt = client.predict(message=QUESTION, history=[], api_name="/chat")
    assert [m["role"] for m in history] == ["user", "assistant"] and cleared == ""
    assert reply_text(history[-1]) == ANSWER and QUESTION in prompt
    assert client.predict(prompt=QUESTION, api_name="/generate") == ANSWER
    base_reply, adapter_reply = client.predict(message=QUESTION, api_name="/compare")
    assert adapter_reply == ANSWER and base_reply != ANSWER

    # 5. Back to the pure base model: the answer goes with the adapter.
    client.predict(api_name="/deactivate_adapter")
    assert client.predict(prompt=QUESTION, api_name="/generate") == base_reply
