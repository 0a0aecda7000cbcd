"""Tab 4: chat with the base model and the active adapter (or a saved assistant), and compare the two."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from lora_core import adapters, assistants
from lora_core.adapters import base_for_adapter
from lora_core.chat import GenerationSettings
from lora_core.errors import ChatError, SimpleLoraError
from lora_core.sessions import ChatSession

from .chat_sessions import session
from .common import Labels, Number, base_dropdown, finite_number, keep_reason, md, user_errors, whole_number
from .dataset_tab import LoadedDataset, base_model_choices, resolve_base
from .i18n import DEFAULT_LANG, t
from .models_tab import paths_name, session_status

NO_ADAPTER = ""  # the adapter choice "none (pure base)"
REPLAY_COLUMNS = ["col_row", "col_prompt", "col_reference", "col_adapter_reply", "col_match", "col_base_reply"]
REPLAY_WIDTHS = ["5%", "20%", "23%", "23%", "6%", "23%"]
REPLAY_MAX_ROWS = 100
MATCH = "✓"


def adapter_choices(lang: str) -> list[tuple[str, str]]:
    return [(t("no_adapter", lang), NO_ADAPTER), *((a.name, a.name) for a in adapters.scan() if a.valid)]


def _settings(temperature: float, top_p: float, max_new: float, repetition: float) -> GenerationSettings:
    """The generation settings as numbers; what is not a finite number is refused by name, the ranges by
    ``GenerationSettings.check``."""
    values = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new, "repetition_penalty": repetition}
    for name, value in values.items():
        number = finite_number(value)
        if number is None:
            raise ChatError("bad_generation_setting", setting=name, value=str(value)[:40])
        values[name] = int(number) if name == "max_new_tokens" else number
    settings = GenerationSettings(**values)
    settings.check()
    return settings


# Code spans and fenced blocks: Markdown shows them as they are, so only the text around them is escaped.
_CODE = re.compile(r"(```.*?(?:```|$)|`[^`\n]*`)", re.DOTALL)


def shown(text: str) -> str:
    """A chat message as the chat box shows it: markup from the user or the model is text, never HTML that the
    page would render (or run), while Markdown still formats it. ``unshown`` gives back the exact text."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))


def unshown(text: str) -> str:
    parts = _CODE.split(text)  # escaping never adds or removes a backtick: the same split as in shown()
    return "".join(part if i % 2 else html.unescape(part) for i, part in enumerate(parts))


def _messages(history: list[dict], system: str, message: str) -> list[dict]:
    turns = [
        {"role": m["role"], "content": unshown(_text(m["content"]))}
        for m in history
        if m["role"] in ("user", "assistant")
    ]
    return (
        ([{"role": "system", "content": system}] if (system or "").strip() else [])
        + turns
        + [{"role": "user", "content": message}]
    )


def _text(content: Any) -> str:
    """Chatbot messages may carry their text as a list of parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def _need_model(lang: str, request: gr.Request | None) -> ChatSession:
    """The page's chat session, once it has chosen a base model."""
    chat = session(request)
    if chat.base is None:
        raise gr.Error(t("load_first", lang), print_exception=False)
    return chat


def replay_frame(rows: list[list], lang: str) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[t(c, lang) for c in REPLAY_COLUMNS])


def on_tab(lang: str, base: str | None, adapter: str | None, request: gr.Request = None) -> tuple[Any, Any, str, Any]:
    """Opening the tab: the models and adapters as they are on disk now (a merged model, a new training), the
    choices showing what this page's chat holds, and the saved assistants."""
    chat = session(request)
    status = chat.status()
    bases = base_model_choices()
    choices = adapter_choices(lang)
    names = [value for _, value in choices]
    if status["base"]:  # show what is loaded
        base, adapter = paths_name(status["base"]), status["active"] or NO_ADAPTER
    base = base if base in bases else (bases[0] if bases else None)
    adapter = adapter if adapter in names else NO_ADAPTER
    return (
        gr.update(choices=bases, value=base),
        gr.update(choices=choices, value=adapter),
        session_status(chat, lang),
        gr.update(choices=sorted(assistants.load_all())),
    )


def on_language(lang: str, adapter: str | None, replay: pd.DataFrame | None,
                request: gr.Request = None) -> tuple[Any, str, Any]:  # fmt: skip
    """The texts the handlers wrote (the "none" adapter choice, the status, the replay headers) in the new
    language."""
    choices = adapter_choices(lang)
    value = adapter if adapter in [v for _, v in choices] else NO_ADAPTER
    frame = gr.update()
    if isinstance(replay, pd.DataFrame) and len(replay.columns) == len(REPLAY_COLUMNS):
        frame = replay_frame(replay.to_numpy().tolist(), lang)
    return gr.update(choices=choices, value=value), session_status(session(request), lang), frame


def on_adapter_pick(adapter: str | None, base: str | None) -> Any:
    """Choosing an adapter chooses the base model it was trained on, when that model is in Models/LLM/."""
    if not adapter:
        return gr.update()
    try:
        own = base_for_adapter(adapters.adapter_path(adapter))
    except SimpleLoraError:
        return gr.update()
    return gr.update(value=own.name) if own is not None and own.name in base_model_choices() else gr.update()


@user_errors
def on_load(lang: str, base_name: str | None, adapter: str | None, request: gr.Request = None) -> str:
    """This page's chat answers with the chosen base model and adapter (or none) from now on. An adapter
    trained on another base model is refused before anything is loaded."""
    base = resolve_base(base_name)
    path = adapters.adapter_path(adapter) if adapter else None
    chat = session(request)
    chat.load(base, path)
    return session_status(chat, lang)


def on_stop(request: gr.Request = None) -> None:
    """End this page's reply in progress (or its wait) within one token; other pages' replies go on."""
    session(request).stop()


@user_errors
def respond(lang: str, message: str, history: list[dict], system: str, temperature: float, top_p: float,
            max_new: float, repetition: float, request: gr.Request = None) -> Iterator[tuple]:  # fmt: skip
    """Stream the reply into the chat history; also show the exact prompt text the model was given. While
    another page's answer holds the model, the reply's place says so."""
    if not (message or "").strip():
        yield history, "", gr.skip()
        return
    chat = _need_model(lang, request)
    settings = _settings(temperature, top_p, max_new, repetition)
    fitted = chat.fit(_messages(history or [], system, message), settings)  # a message too long: said here
    if fitted.dropped_turns:
        gr.Info(t("turns_dropped", lang, n=fitted.dropped_turns, tokens=fitted.prompt_tokens), title="")
    prompt = chat.prompt_text(fitted.messages)  # what is actually sent
    waiting = t("chat_waiting", lang) if chat.busy else ""
    history = [*(history or []), {"role": "user", "content": shown(message)},
               {"role": "assistant", "content": waiting}]  # fmt: skip
    yield history, "", prompt  # the question shows at once, the reply streams in below it
    reply = ""
    for piece in chat.stream(fitted.messages, settings):
        reply += piece
        history[-1]["content"] = shown(reply)
        yield history, "", prompt
    if not reply:  # stopped before its first word, or an empty answer
        history[-1]["content"] = t("chat_stopped", lang) if chat.was_stopped else ""
        yield history, "", prompt


@user_errors
def on_compare(lang: str, message: str, system: str, temperature: float, top_p: float, max_new: float,
               repetition: float, request: gr.Request = None) -> tuple[str, str]:  # fmt: skip
    if not (message or "").strip():
        raise gr.Error(t("need_prompt", lang), print_exception=False)
    chat = _need_model(lang, request)
    answers = chat.compare(_messages([], system, message), _settings(temperature, top_p, max_new, repetition))
    return answers["base"], answers["adapter"]


@user_errors
def api_generate(prompt: str, system: str = "", max_new_tokens: int = 256, temperature: float = 0.0,
                 request: gr.Request = None) -> str:  # fmt: skip
    """One reply to one user turn from this client's chat model (with its adapter, if any); greedy by default."""
    if not (prompt or "").strip():
        raise gr.Error(t("need_prompt", DEFAULT_LANG), print_exception=False)
    chat = _need_model(DEFAULT_LANG, request)
    settings = _settings(temperature, 1.0, max_new_tokens, 1.0)
    return chat.generate(_messages([], system, prompt), settings)


@user_errors
def on_replay(lang: str, loaded: LoadedDataset | None, n: float | None, max_new: float,
              request: gr.Request = None) -> pd.DataFrame:  # fmt: skip
    if loaded is None:
        raise gr.Error(t("replay_no_dataset", lang), print_exception=False)
    if not whole_number(n, 1, REPLAY_MAX_ROWS):
        raise gr.Error(t("bad_replay_n", lang, max=REPLAY_MAX_ROWS), print_exception=False)
    chat = _need_model(lang, request)
    rows = chat.replay(loaded.report.records[: int(n)], GenerationSettings(max_new_tokens=int(max_new)))
    return replay_frame(
        [[r["row"], r["prompt"], r["reference"], r["adapter"], MATCH if r["adapter"] == r["reference"].strip() else "",
          r["base"]] for r in rows],
        lang,
    )  # fmt: skip


@user_errors
def on_save_assistant(lang: str, name: str, base_name: str | None, adapter: str | None, system: str,
                      temperature: float, top_p: float, max_new: float, repetition: float) -> tuple:  # fmt: skip
    resolve_base(base_name)
    if adapter:
        adapters.adapter_path(adapter)
    settings = _settings(temperature, top_p, max_new, repetition)
    saved = assistants.save(assistants.Assistant(name or "", base_name, adapter or None, system, settings.__dict__))
    return t("assistant_saved", lang, name=md(saved.name)), gr.update(
        choices=sorted(assistants.load_all()), value=saved.name
    )


@user_errors
def on_pick_assistant(lang: str, name: str | None, request: gr.Request = None) -> tuple:
    """Load an assistant: its base, adapter, system prompt and settings (and start a new conversation)."""
    found = assistants.load_all().get(name or "")
    if found is None:
        raise gr.Error(t("assistant_missing", lang), print_exception=False)
    status = on_load(lang, found.base_model, found.adapter, request)
    s = {**GenerationSettings().__dict__, **found.settings}
    return (status, found.base_model, found.adapter or NO_ADAPTER, found.system_prompt, s["temperature"], s["top_p"],
            s["max_new_tokens"], s["repetition_penalty"], [], "")  # fmt: skip


@user_errors
def on_delete_assistant(lang: str, name: str | None) -> tuple[str, Any]:
    if not name:
        raise gr.Error(t("assistant_missing", lang), print_exception=False)
    assistants.delete(name)
    return t("assistant_deleted", lang, name=md(name)), gr.update(choices=sorted(assistants.load_all()), value=None)


def build(labels: Labels, lang: gr.State, shared: dict[str, Any]) -> dict[str, Any]:
    labels.add(gr.Markdown(), value="chat_intro")
    choices = base_model_choices()
    with gr.Row():
        base = labels.add(base_dropdown(choices, scale=2), label="base_model")
        adapter = labels.add(
            # the adapters are listed when the tab is opened, for the workspace of whoever opens it
            gr.Dropdown([(t("no_adapter", "en"), NO_ADAPTER)], value=NO_ADAPTER, allow_custom_value=True, scale=2),
            label="adapter",
        )
        load = labels.add(gr.Button(variant="primary", scale=1), value="load")
    status = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = labels.add(gr.Chatbot(height=380), label="chat", placeholder="chat_placeholder")
            with gr.Row():
                message = labels.add(gr.Textbox(scale=4, lines=1), label="message", placeholder="message_hint")
                send = labels.add(gr.Button(variant="primary", scale=1, min_width=80), value="send")
                stop = labels.add(gr.Button(variant="stop", scale=1, min_width=80), value="stop_reply")
                clear = labels.add(gr.Button(scale=1, min_width=80), value="clear")
            with labels.add(gr.Accordion(open=False), label="prompt_sent"):
                prompt_view = gr.Code(language=None, interactive=False, show_label=False)
        with gr.Column(scale=1):
            system = labels.add(gr.Textbox("", lines=3), label="system_prompt", info="system_prompt_info")
            temperature = labels.add(gr.Slider(0, 2, value=0, step=0.05), label="temperature", info="temperature_info")
            top_p = labels.add(gr.Slider(0.05, 1, value=1, step=0.05), label="top_p", info="top_p_info")
            max_new = labels.add(gr.Slider(8, 2048, value=256, step=8), label="max_new_tokens")
            repetition = labels.add(gr.Slider(0.8, 2, value=1, step=0.05), label="repetition_penalty")
            with labels.add(gr.Accordion(open=False), label="assistants"):
                picked = labels.add(gr.Dropdown(sorted(assistants.load_all()), value=None), label="assistant")
                assistant_name = labels.add(gr.Textbox(), label="assistant_name")
                with gr.Row():
                    save_assistant = labels.add(gr.Button(size="sm", min_width=60), value="save_assistant")
                    delete_assistant = labels.add(
                        gr.Button(size="sm", variant="stop", min_width=60), value="delete_assistant"
                    )
                assistant_status = gr.Markdown()
    with labels.add(gr.Accordion(open=True), label="compare_header"):
        with gr.Row():
            compare_prompt = labels.add(gr.Textbox(scale=4), label="compare_prompt", placeholder="compare_hint")
            compare = labels.add(gr.Button(scale=1), value="compare")
        with gr.Row():
            base_reply = labels.add(gr.Textbox(lines=4, max_lines=8, interactive=False), label="base_reply")
            adapter_reply = labels.add(gr.Textbox(lines=4, max_lines=8, interactive=False), label="adapter_reply")
        labels.add(gr.Markdown(), value="replay_intro")
        with gr.Row():
            # no minimum / maximum here: Gradio would refuse a value in English; on_replay says it translated
            replay_n = labels.add(Number(5, precision=0, scale=1), label="replay_n")
            replay = labels.add(gr.Button(scale=1), value="replay")
        replay_status = gr.Markdown()
        replay_table = labels.add(
            gr.Dataframe(replay_frame([], "en"), interactive=False, wrap=True, column_widths=REPLAY_WIDTHS,
                         max_chars=160),
            label="replay_table",
        )  # fmt: skip

    gen = [system, temperature, top_p, max_new, repetition]
    keep_reason(load.click(on_load, [lang, base, adapter], status, api_name="load_chat_model"), markdown=[status])
    adapter.input(on_adapter_pick, [adapter, base], base, api_visibility="private")
    # Errors are marked on the status line (what is loaded), never over the conversation.
    chat_io = dict(inputs=[lang, message, chatbot, *gen], outputs=[chatbot, message, prompt_view])
    keep_reason(send.click(respond, **chat_io, api_name="chat", show_progress_on=status), markdown=[status])
    keep_reason(message.submit(respond, **chat_io, api_visibility="private", show_progress_on=status),
                markdown=[status])  # fmt: skip
    # outside the queue: a Stop is never held up behind the replies it is meant to end
    stop.click(on_stop, None, None, api_name="stop_chat", queue=False)
    clear.click(lambda: ([], ""), None, [chatbot, prompt_view], api_visibility="private", queue=False)
    compared = compare.click(on_compare, [lang, compare_prompt, *gen], [base_reply, adapter_reply], api_name="compare")
    keep_reason(compared, text=[base_reply, adapter_reply])  # the reason in place of the answers
    gr.api(api_generate, api_name="generate")  # for API clients: one prompt in, one reply out
    keep_reason(compare_prompt.submit(on_compare, [lang, compare_prompt, *gen], [base_reply, adapter_reply],
                                      api_visibility="private"), text=[base_reply, adapter_reply])  # fmt: skip
    replayed = replay.click(lambda: "", None, replay_status, api_visibility="private", queue=False).then(
        on_replay, [lang, shared["loaded"], replay_n, max_new], replay_table, api_visibility="private"
    )
    keep_reason(replayed, markdown=[replay_status])
    keep_reason(save_assistant.click(
        on_save_assistant, [lang, assistant_name, base, adapter, *gen], [assistant_status, picked],
        api_visibility="private", show_progress_on=assistant_status,
    ), markdown=[assistant_status])  # fmt: skip
    keep_reason(picked.input(
        on_pick_assistant, [lang, picked],
        [status, base, adapter, system, temperature, top_p, max_new, repetition, chatbot, prompt_view],
        api_visibility="private", show_progress_on=status,
    ), markdown=[status])  # fmt: skip
    keep_reason(delete_assistant.click(on_delete_assistant, [lang, picked], [assistant_status, picked],
                                       api_visibility="private", show_progress_on=assistant_status),
                markdown=[assistant_status])  # fmt: skip
    lang.change(on_language, [lang, adapter, replay_table], [adapter, status, replay_table],
                api_visibility="private", show_progress="hidden")  # fmt: skip
    return {
        "adapter": adapter,
        "base": base,
        "status": status,
        "open": (on_tab, [lang, base, adapter], [base, adapter, status, picked]),
    }
