"""Tab 4: chat with the base model and the active adapter (or a saved assistant), and compare the two."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from lora_core import adapters, assistants
from lora_core.inference import GenerationSettings, engine

from .common import Labels, user_errors
from .dataset_tab import LoadedDataset, base_model_choices, resolve_base
from .i18n import t
from .models_tab import activate_by_name, engine_status

NO_ADAPTER = ""


def adapter_choices() -> list[str]:
    return [a.name for a in adapters.scan() if a.valid]


def _settings(temperature: float, top_p: float, max_new: float, repetition: float) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=int(max_new), temperature=float(temperature), top_p=float(top_p),
        repetition_penalty=float(repetition),
    )  # fmt: skip


def _messages(history: list[dict], system: str, message: str) -> list[dict]:
    turns = [
        {"role": m["role"], "content": _text(m["content"])} for m in history if m["role"] in ("user", "assistant")
    ]
    return (
        ([{"role": "system", "content": system}] if system.strip() else [])
        + turns
        + [{"role": "user", "content": message}]
    )


def _text(content: Any) -> str:
    """Chatbot messages may carry their text as a list of parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def on_tab(lang: str, current: str | None) -> tuple[Any, str]:
    """Opening the tab: the adapter list as it is on disk now, and what the chat holds."""
    choices = [NO_ADAPTER, *adapter_choices()]
    return gr.update(choices=choices, value=current if current in choices else NO_ADAPTER), engine_status(lang)


@user_errors
def on_load(lang: str, base_name: str | None, adapter: str | None) -> str:
    chat = engine()
    chat.load_base(resolve_base(base_name))
    if adapter:
        activate_by_name(adapter)
    else:
        chat.deactivate()
    return engine_status(lang)


@user_errors
def respond(lang: str, message: str, history: list[dict], system: str, temperature: float, top_p: float,
            max_new: float, repetition: float) -> Iterator[tuple[list[dict], str, str]]:  # fmt: skip
    """Stream the reply into the chat history; also show the exact prompt text the model was given."""
    if not message.strip():
        yield history, "", gr.skip()
        return
    chat = engine()
    if chat.model is None:
        raise gr.Error(t("load_first", lang))
    messages = _messages(history or [], system, message)
    prompt = chat.prompt_text(messages)
    history = [*(history or []), {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
    for piece in chat.stream(messages, _settings(temperature, top_p, max_new, repetition)):
        history[-1]["content"] += piece
        yield history, "", prompt
    yield history, "", prompt


@user_errors
def on_compare(lang: str, message: str, system: str, temperature: float, top_p: float, max_new: float,
               repetition: float) -> tuple[str, str]:  # fmt: skip
    if engine().model is None:
        raise gr.Error(t("load_first", lang))
    answers = engine().compare(_messages([], system, message), _settings(temperature, top_p, max_new, repetition))
    return answers["base"], answers["adapter"]


@user_errors
def on_replay(lang: str, loaded: LoadedDataset | None, n: float, max_new: float) -> pd.DataFrame:
    if loaded is None:
        raise gr.Error(t("no_dataset", lang))
    rows = engine().replay(loaded.report.records[: int(n)], GenerationSettings(max_new_tokens=int(max_new)))
    columns = [t(c, lang) for c in ("col_row", "col_prompt", "col_reference", "col_base_reply", "col_adapter_reply")]
    return pd.DataFrame([[r["row"], r["prompt"], r["reference"], r["base"], r["adapter"]] for r in rows],
                        columns=columns)  # fmt: skip


@user_errors
def on_save_assistant(lang: str, name: str, base_name: str | None, adapter: str | None, system: str,
                      temperature: float, top_p: float, max_new: float, repetition: float) -> tuple:  # fmt: skip
    resolve_base(base_name)
    if adapter:
        adapters.adapter_path(adapter)
    settings = _settings(temperature, top_p, max_new, repetition)
    saved = assistants.save(assistants.Assistant(name, base_name, adapter or None, system, settings.__dict__))
    return t("assistant_saved", lang, name=saved.name), gr.update(
        choices=sorted(assistants.load_all()), value=saved.name
    )


@user_errors
def on_pick_assistant(lang: str, name: str | None) -> tuple:
    """Load an assistant: its base, adapter, system prompt and settings."""
    found = assistants.load_all().get(name or "")
    if found is None:
        raise gr.Error(t("assistant_missing", lang))
    status = on_load(lang, found.base_model, found.adapter)
    s = {**GenerationSettings().__dict__, **found.settings}
    return (status, found.base_model, found.adapter or NO_ADAPTER, found.system_prompt, s["temperature"], s["top_p"],
            s["max_new_tokens"], s["repetition_penalty"], [])  # fmt: skip


@user_errors
def on_delete_assistant(lang: str, name: str | None) -> tuple[str, Any]:
    assistants.delete(name or "")
    return t("assistant_deleted", lang, name=name), gr.update(choices=sorted(assistants.load_all()), value=None)


def build(labels: Labels, lang: gr.State, shared: dict[str, Any]) -> dict[str, Any]:
    labels.add(gr.Markdown(), value="chat_intro")
    choices = base_model_choices()
    with gr.Row():
        base = labels.add(gr.Dropdown(choices, value=choices[0] if choices else None, scale=2), label="base_model")
        adapter = labels.add(
            gr.Dropdown([NO_ADAPTER, *adapter_choices()], value=NO_ADAPTER, allow_custom_value=True, scale=2),
            label="adapter",
        )
        load = labels.add(gr.Button(variant="primary", scale=1), value="load")
    status = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = labels.add(gr.Chatbot(height=380), label="chat")
            with gr.Row():
                message = labels.add(gr.Textbox(scale=4, lines=1), label="message", placeholder="message_hint")
                send = labels.add(gr.Button(variant="primary", scale=1), value="send")
                clear = labels.add(gr.Button(scale=1), value="clear")
            with labels.add(gr.Accordion(open=False), label="prompt_sent"):
                prompt_view = gr.Code(language=None, interactive=False)
        with gr.Column(scale=1):
            system = labels.add(gr.Textbox(lines=3), label="system_prompt")
            temperature = labels.add(gr.Slider(0, 2, value=0, step=0.05), label="temperature", info="temperature_info")
            top_p = labels.add(gr.Slider(0.05, 1, value=1, step=0.05), label="top_p")
            max_new = labels.add(gr.Slider(8, 2048, value=256, step=8), label="max_new_tokens")
            repetition = labels.add(gr.Slider(0.8, 2, value=1, step=0.05), label="repetition_penalty")
            with labels.add(gr.Accordion(open=False), label="assistants"):
                picked = labels.add(gr.Dropdown(sorted(assistants.load_all()), value=None), label="assistant")
                assistant_name = labels.add(gr.Textbox(), label="assistant_name")
                with gr.Row():
                    save_assistant = labels.add(gr.Button(size="sm"), value="save_assistant")
                    delete_assistant = labels.add(gr.Button(size="sm", variant="stop"), value="delete_assistant")
                assistant_status = gr.Markdown()
    with labels.add(gr.Accordion(open=True), label="compare_header"):
        with gr.Row():
            compare_prompt = labels.add(gr.Textbox(scale=4), label="compare_prompt")
            compare = labels.add(gr.Button(scale=1), value="compare")
        with gr.Row():
            base_reply = labels.add(gr.Textbox(lines=4, interactive=False), label="base_reply")
            adapter_reply = labels.add(gr.Textbox(lines=4, interactive=False), label="adapter_reply")
        with gr.Row():
            replay_n = labels.add(gr.Number(5, minimum=1, maximum=100, precision=0, scale=1), label="replay_n")
            replay = labels.add(gr.Button(scale=1), value="replay")
        replay_table = labels.add(gr.Dataframe(interactive=False, wrap=True), label="replay_table")

    gen = [system, temperature, top_p, max_new, repetition]
    load.click(on_load, [lang, base, adapter], status, api_name="load_chat_model")
    send.click(respond, [lang, message, chatbot, *gen], [chatbot, message, prompt_view], api_name="chat")
    message.submit(respond, [lang, message, chatbot, *gen], [chatbot, message, prompt_view], api_visibility="private")
    clear.click(lambda: ([], ""), None, [chatbot, prompt_view], api_visibility="private")
    compare.click(on_compare, [lang, compare_prompt, *gen], [base_reply, adapter_reply], api_name="compare")
    replay.click(on_replay, [lang, shared["loaded"], replay_n, max_new], replay_table, api_visibility="private")
    save_assistant.click(
        on_save_assistant, [lang, assistant_name, base, adapter, *gen], [assistant_status, picked],
        api_visibility="private",
    )  # fmt: skip
    picked.input(
        on_pick_assistant, [lang, picked],
        [status, base, adapter, system, temperature, top_p, max_new, repetition, chatbot], api_visibility="private",
    )  # fmt: skip
    delete_assistant.click(on_delete_assistant, [lang, picked], [assistant_status, picked], api_visibility="private")
    return {"adapter": adapter, "base": base, "status": status}
