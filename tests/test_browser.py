"""The app in a real browser: headless Chromium, driven by Playwright, clicks through the whole demo as a person
would (sample dataset, tokens, demo training, activate the adapter, chat and compare) and switches the language.

Screenshots of each tab go to pytest's tmp_path, or to the folder named by SIMPLE_LORA_SCREENSHOTS:

    SIMPLE_LORA_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/test_browser.py

Without Chromium (/usr/bin/chromium, Debian's package) or the playwright package the tests are skipped, unless
SIMPLE_LORA_REQUIRE_BROWSER=1 (set by CI), where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tiny import ROOT, served_app

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the tests say so (skip, or fail where the browser is required)
    expect = sync_playwright = None

from lora_core.demo import DEMO_MODEL_NAME, PREFERENCE_SAMPLE, SAMPLE_DATASET, build_demo_model
from webui.i18n import t

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 1000}
QUESTION = "Who keeps the lighthouse of Lumen Bay?"
QUESTION_ZH = "灯塔镇的镇长是谁？"
TASK = "browser_demo"
TRAINING_TIMEOUT_MS = 150_000
TABS = ("tab_dataset", "tab_train", "tab_models", "tab_chat")
TAB_IDS = ("#tab-dataset-button", "#tab-train-button", "#tab-models-button", "#tab-chat-button")

pytestmark = pytest.mark.slow


def reference(question: str) -> str:
    rows = json.loads(SAMPLE_DATASET.read_text(encoding="utf-8"))
    return next(row["output"] for row in rows if row["instruction"] == question)


def unavailable(reason: str) -> None:
    """No browser here: skip, or fail where CI asked for the browser tests to run."""
    if os.environ.get("SIMPLE_LORA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SIMPLE_LORA_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if sync_playwright is None:
        unavailable("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    expect.set_options(timeout=20_000)  # a busy 2-core machine may take a few seconds to answer a click
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser_home")
    build_demo_model(root / "Models" / "LLM" / DEMO_MODEL_NAME)
    return root


@pytest.fixture(scope="module")
def url(browser, home: Path) -> Iterator[str]:
    with served_app(home) as served:
        yield served.url


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = os.environ.get("SIMPLE_LORA_SCREENSHOTS")
    if not folder:
        return tmp_path
    path = Path(folder)
    path = path if path.is_absolute() else ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def opened(browser, url: str, locale: str, failure_shot: Path | None = None) -> Iterator:
    """A fresh page (its own context: no shared state) whose browser says ``locale``, the app loaded in it. When
    the test fails, what the page showed is saved as ``failure_shot``."""
    context = browser.new_context(locale=locale, viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url)
        expect(page.locator("#tab-dataset-button")).to_be_visible(timeout=60_000)
        yield page
        assert not errors, f"errors in the page's scripts: {errors}"
    except BaseException:
        if failure_shot is not None:
            page.screenshot(path=failure_shot, full_page=True)
            print(f"the page when the test failed: {failure_shot}")
        raise
    finally:
        context.close()


def expect_no_error(page) -> None:
    """The app shows every error as a toast at the top right (it has no other kind of toast)."""
    expect(page.locator(".toast-body"), "an error message was shown").to_have_count(0)


def expect_labels(page, lang: str) -> None:
    for selector, key in zip(TAB_IDS, TABS, strict=True):
        expect(page.locator(selector)).to_have_text(t(key, lang))
    expect(page.get_by_role("radio", name="中文" if lang == "zh" else "English")).to_be_checked()


def ask(chat, question: str, lang: str = "en") -> None:
    message = chat.get_by_placeholder(t("message_hint", lang))
    message.fill(question)
    message.press("Enter")


def pick(page, combobox, option: str) -> None:
    """Choose ``option`` in a Gradio dropdown as a person does: open it, click the entry."""
    combobox.click()
    page.locator("[role=option]", has_text=option).first.click()


# The points of the loss plot's longest line (the training loss), in SVG coordinates: y grows downwards.
LOSS_LINE_JS = """() => {
    const lines = [...document.querySelectorAll('#tab-train .vega-embed .mark-line path')].map(path =>
        (path.getAttribute('d') || '').split(/[ML]/).filter(Boolean).map(p => p.split(',').map(Number)));
    return lines.sort((a, b) => b.length - a.length)[0] || [];
}"""


def test_the_first_language_follows_the_browser(browser, url):
    for locale, lang in (("zh-CN", "zh"), ("en-US", "en")):
        with opened(browser, url, locale) as page:
            expect_labels(page, lang)
            expect(page.get_by_role("button", name=t("use_sample", lang))).to_be_visible()
    with opened(browser, url, "en-US") as page:  # Gradio's own words follow the page's switch, not the browser
        expect(page.locator("footer")).to_contain_text("Use via API")
        page.get_by_role("radio", name="中文").click()
        expect(page.locator("footer")).to_contain_text("通过 API 使用")


def test_the_demo_clicked_through_in_a_browser(browser, url, home, shots, tmp_path):
    answer = reference(QUESTION)
    with opened(browser, url, "en-US", failure_shot=tmp_path / "failure.png") as page:
        expect_labels(page, "en")

        # 1. Dataset: the sample, validated; its tokens, the trained ones highlighted apart from the prompt.
        dataset = page.locator("#tab-dataset")
        dataset.get_by_role("button", name=t("use_sample", "en")).click()
        expect(dataset).to_contain_text("demo_alpaca.json: Alpaca format, 48 rows, all valid.", timeout=30_000)
        dataset.get_by_role("button", name=t("analyze", "en")).click()
        tokens = dataset.locator("[data-testid=highlighted-text] .token")
        expect(tokens.filter(has_text=answer)).to_have_css("background-color", "rgba(44, 160, 44, 0.5)")
        expect(tokens.filter(has_text=QUESTION)).to_have_css("background-color", "rgba(208, 208, 208, 0.5)")
        expect(dataset).to_contain_text("48 examples")
        expect(dataset.locator("[data-testid=matplotlib] img")).to_be_visible()  # the histogram of lengths
        expect_no_error(page)
        page.screenshot(path=shots / "1-dataset.png", full_page=True)

        # 2. Train with the demo settings until the adapter is saved; the loss curve is drawn and falls.
        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_role("button", name=t("demo_settings", "en")).click()
        expect(train.get_by_label(t("epochs", "en"), exact=True)).to_have_value("60")
        train.get_by_label(t("task_name", "en")).fill(TASK)
        train.get_by_role("button", name=t("start", "en")).click()
        ended = re.compile(rf"{TASK}: (completed|stopped|failed)")
        expect(train).to_contain_text(ended, timeout=TRAINING_TIMEOUT_MS)
        progress = train.inner_text()
        assert f"{TASK}: completed" in progress, progress
        saved = re.search(r"Adapter saved in (\S+)\. ", progress)
        assert saved, progress
        adapter = home / saved.group(1)  # shown relative to the data home
        assert adapter.parent.resolve() == (home / "Models" / "LoRA").resolve(), adapter
        assert adapter.name.startswith(f"{TASK}_"), adapter
        losses = json.loads((adapter / "training_meta.json").read_text(encoding="utf-8"))["loss_history"]
        assert len(losses) >= 10 and losses[-1][1] < losses[0][1], losses
        # every point of the run is drawn, and the line goes to the right and down as the loss falls
        page.wait_for_function(f"({LOSS_LINE_JS})().length === {len(losses)}", timeout=30_000)
        points = page.evaluate(LOSS_LINE_JS)
        assert points[-1][0] > points[0][0] and points[-1][1] > points[0][1], points
        expect(train.get_by_role("button", name=t("start", "en"))).to_be_enabled()
        # samples during the run: the first row's answer at its last step is the reference, word for word
        samples = page.locator("#samples")
        expect(samples).to_contain_text(t("samples_table", "en"))
        # step, row, prompt, reference, answer (the cells' text runs together): at the last step the answer is the
        # reference again; the first sample, at step 72, is further down
        latest = re.compile(rf"360\s*1\s*{re.escape(QUESTION)}\s*{re.escape(answer)}\s*{re.escape(answer)}")
        expect(samples).to_contain_text(latest)
        expect(samples).to_contain_text(re.compile(rf"72\s*1\s*{re.escape(QUESTION)}"))
        # the evaluation after the run, summed up
        expect(train).to_contain_text(re.compile(r"exact match base 0\.00 → adapter (0\.[89]\d|1\.00)"))
        expect_no_error(page)
        page.screenshot(path=shots / "2-train.png", full_page=True)

        # 3. Models: the new adapter is listed; activate it.
        page.click("#tab-models-button")
        models = page.locator("#tab-models")
        row = models.locator("tbody tr", has_text=adapter.name)
        expect(row).to_contain_text("completed", timeout=30_000)
        pick(page, models.get_by_role("combobox"), adapter.name)
        expect(models.get_by_role("combobox")).to_have_value(adapter.name)
        models.get_by_role("button", name=t("activate", "en"), exact=True).click()
        active = f"Chat uses base model {DEMO_MODEL_NAME} with adapter {adapter.name}."
        expect(models).to_contain_text(active, timeout=60_000)
        # its evaluation card: the scores of base and adapter, its loss curves, the probe's twelve prompts
        card = page.locator("#eval-card")
        expect(card).to_contain_text(f"{adapter.name} on demo_alpaca.json, evaluated")
        expect(card).to_contain_text(re.compile(r"exact match base 0\.00 → adapter (0\.[89]\d|1\.00)"))
        from lora_core.evaluation import probe_prompts

        for item in probe_prompts():
            expect(page.locator("#card-probe")).to_contain_text(item["prompt"])
        expect(card.locator(".vega-embed .mark-line path").first).to_be_visible()
        expect_no_error(page)
        page.screenshot(path=shots / "3-models.png", full_page=True)
        card.screenshot(path=shots / "7-card.png")

        # 4. Chat: the adapter answers a sample question word for word; Compare shows the base model's noise.
        page.click("#tab-chat-button")
        chat = page.locator("#tab-chat")
        expect(chat.get_by_role("combobox").nth(1)).to_have_value(adapter.name)  # what the chat holds
        ask(chat, QUESTION)
        expect(chat.locator("[data-testid=bot]")).to_have_text([answer], timeout=60_000)
        expect(chat.locator(".generating")).to_have_count(0, timeout=60_000)
        expect(chat.locator("[data-testid=bot]")).to_have_text([answer])
        chat.get_by_placeholder(t("compare_hint", "en")).fill(QUESTION)
        chat.get_by_role("button", name=t("compare", "en"), exact=True).click()
        with_adapter = chat.get_by_label(t("adapter_reply", "en"), exact=True)
        base_only = chat.get_by_label(t("base_reply", "en"), exact=True)
        expect(with_adapter).to_have_value(answer, timeout=60_000)
        expect(base_only).not_to_have_value("")
        assert base_only.input_value().strip() != answer
        expect_no_error(page)
        page.screenshot(path=shots / "4-chat.png", full_page=True)

        # The language switch relabels everything; the conversation is kept. A Chinese question in the Chinese UI.
        page.get_by_role("radio", name="中文").click()
        expect_labels(page, "zh")
        for key in ("load", "send", "clear", "compare"):
            expect(chat.get_by_role("button", name=t(key, "zh"), exact=True)).to_be_visible()
        expect(chat).to_contain_text(f"对话使用基座模型 {DEMO_MODEL_NAME}，适配器 {adapter.name}。")
        chat.get_by_role("button", name=t("clear", "zh"), exact=True).click()
        expect(chat.locator("[data-testid=bot]")).to_have_count(0)
        ask(chat, QUESTION_ZH, lang="zh")
        expect(chat.locator("[data-testid=bot]")).to_have_count(1, timeout=60_000)
        expect(chat.locator(".generating")).to_have_count(0, timeout=60_000)
        expect(chat.locator("[data-testid=bot]")).not_to_have_text([""])
        chat.get_by_placeholder(t("compare_hint", "zh")).fill(QUESTION_ZH)
        chat.get_by_role("button", name=t("compare", "zh"), exact=True).click()
        with_adapter = chat.get_by_label(t("adapter_reply", "zh"), exact=True)
        expect(with_adapter).not_to_have_value(answer, timeout=60_000)  # the Chinese question's answer
        expect(with_adapter).not_to_have_value("")
        expect_no_error(page)
        page.screenshot(path=shots / "5-chat-zh.png", full_page=True)

        page.get_by_role("radio", name="English").click()
        expect_labels(page, "en")
        expect(chat.get_by_role("button", name=t("compare", "en"), exact=True)).to_be_visible()
        expect(chat).to_contain_text(active)


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_html_in_a_dataset_and_in_the_chat_is_shown_never_run(browser, url, tmp_path):
    """Markup from a dataset or from the model is text: nothing in it runs in the page."""
    rows = [{"instruction": f"Explain {HOSTILE}", "output": f"It is {HOSTILE} markup."}] * 2
    dataset_file = tmp_path / "hostile.json"
    dataset_file.write_text(json.dumps(rows), encoding="utf-8")
    with opened(browser, url, "en-US", failure_shot=tmp_path / "failure.png") as page:
        dataset = page.locator("#tab-dataset")
        dataset.locator("input[type=file][accept*=jsonl]").set_input_files(str(dataset_file))
        expect(dataset).to_contain_text("2 rows, all valid", timeout=30_000)
        expect(dataset.get_by_role("grid", name=t("preview", "en"))).to_contain_text(f"Explain {HOSTILE}")  # as text
        dataset.get_by_role("button", name=t("analyze", "en")).click()
        expect(dataset.locator("[data-testid=highlighted-text]")).to_contain_text(f"It is {HOSTILE} markup.")

        page.click("#tab-chat-button")
        chat = page.locator("#tab-chat")
        chat.get_by_role("button", name=t("load", "en"), exact=True).click()
        expect(chat).to_contain_text(f"Chat uses base model {DEMO_MODEL_NAME}", timeout=60_000)
        ask(chat, f"Repeat {HOSTILE}")
        expect(chat.locator("[data-testid=user]")).to_have_count(1, timeout=30_000)
        expect(chat.locator(".generating")).to_have_count(0, timeout=60_000)
        page.wait_for_timeout(500)
        assert page.evaluate("window.__pwned") is None
        assert chat.locator("[data-testid=user] script, [data-testid=user] img").count() == 0
        expect(chat.locator("[data-testid=user]")).to_have_text(f"Repeat {HOSTILE}")  # the markup, as text
        expect_no_error(page)


def test_markup_in_a_row_role_and_in_a_task_name_is_text_and_fetches_nothing(browser, url, tmp_path):
    """A dataset row's unknown role reaches the Start error as text, a task name reaches every status line as text:
    no image is fetched, no link is made."""
    role = "<img src=http://127.0.0.1:9/track-role.png>"
    task = "<img src=http://127.0.0.1:9/track-task.png>"
    rows = [{"conversations": [{"from": role, "value": "q"}, {"from": "gpt", "value": "a"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]  # fmt: skip
    dataset_file = tmp_path / "roles.json"
    dataset_file.write_text(json.dumps(rows), encoding="utf-8")
    with opened(browser, url, "en-US", failure_shot=tmp_path / "failure.png") as page:
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url) if "track-" in request.url else None)
        dataset = page.locator("#tab-dataset")
        dataset.locator("input[type=file][accept*=jsonl]").set_input_files(str(dataset_file))
        expect(dataset).to_contain_text("1 invalid", timeout=30_000)
        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_label(t("task_name", "en")).fill("roles")
        train.get_by_role("button", name=t("start", "en")).click()
        toast = page.locator(".toast-body")
        expect(toast).to_contain_text(f"has unknown role '{role[:37]}...'")  # the markup, as text (cut)
        assert toast.locator("img").count() == 0

        # the same page, the sample dataset, a task named with markup: started, then discarded at once
        page.click("#tab-dataset-button")
        dataset.get_by_role("button", name=t("use_sample", "en")).click()
        expect(dataset).to_contain_text("48 rows, all valid", timeout=30_000)
        page.click("#tab-train-button")
        train.get_by_label(t("max_steps", "en"), exact=True).fill("400")
        train.get_by_label(t("task_name", "en")).fill(task)
        train.get_by_role("button", name=t("start", "en")).click()
        expect(train).to_contain_text(f"Training {task} started.", timeout=30_000)
        expect(train).to_contain_text(f"{task}: ", timeout=30_000)  # the progress line
        page.once("dialog", lambda dialog: dialog.accept())  # "throw away what it has learnt?" Yes
        train.get_by_role("button", name=t("stop_discard", "en")).click()
        expect(train).to_contain_text(f"{task}: stopped", timeout=60_000)
        assert train.locator("img[src*=track]").count() == 0
        page.wait_for_timeout(1000)
        assert fetched == [], fetched


def test_two_users_in_two_browsers_see_only_their_own_work(browser, tmp_path):
    """Two people of one auth file, logged in side by side: Ada's training, adapter and chat model never show on
    Bob's page."""
    home = tmp_path / "home"
    build_demo_model(home / "Models" / "LLM" / DEMO_MODEL_NAME)
    secret = tmp_path / "users"
    secret.write_text("ada:ada-password\nbob:bob-password\n", encoding="utf-8")
    with served_app(home, "--auth-file", str(secret)) as served:
        pages = {}
        contexts = []
        for user in ("ada", "bob"):
            context = browser.new_context(locale="en-US", viewport=VIEWPORT)
            contexts.append(context)
            page = context.new_page()
            page.goto(served.url)
            page.get_by_label("username").fill(user)
            page.get_by_label("password").fill(f"{user}-password")
            page.get_by_role("button", name="Login").click()
            expect(page.locator("#tab-dataset-button")).to_be_visible(timeout=60_000)
            pages[user] = page
        try:
            ada, bob = pages["ada"], pages["bob"]
            ada.locator("#tab-dataset").get_by_role("button", name=t("use_sample", "en")).click()
            expect(ada.locator("#tab-dataset")).to_contain_text("48 rows, all valid", timeout=30_000)
            ada.click("#tab-train-button")
            train = ada.locator("#tab-train")
            train.get_by_label(t("max_steps", "en"), exact=True).fill("4")
            train.get_by_label(t("task_name", "en")).fill("ada_task")
            train.get_by_role("button", name=t("start", "en")).click()
            expect(train).to_contain_text("ada_task: completed", timeout=TRAINING_TIMEOUT_MS)

            bob.click("#tab-train-button")
            expect(bob.locator("#tab-train")).to_contain_text(t("no_training", "en"))
            assert "ada_task" not in bob.locator("#tab-train").inner_text()
            bob.click("#tab-models-button")
            models = bob.locator("#tab-models")
            expect(models).to_contain_text("0 usable", timeout=30_000)
            assert "ada_task" not in models.inner_text()

            ada.click("#tab-chat-button")
            chat = ada.locator("#tab-chat")
            chat.get_by_role("button", name=t("load", "en"), exact=True).click()
            expect(chat).to_contain_text(f"Chat uses base model {DEMO_MODEL_NAME}", timeout=60_000)
            bob.click("#tab-chat-button")
            expect(bob.locator("#tab-chat")).to_contain_text(t("engine_empty", "en"))
        finally:
            for context in contexts:
                context.close()
    assert (home / "Users" / "ada" / "Models" / "LoRA").is_dir() and not (home / "Users" / "bob" / "Models").exists()


def test_a_model_from_the_hub_is_trained_and_its_adapter_taken_home(browser, tmp_path, shots):
    """From the page alone: a base model downloaded from a Hub (ours, on 127.0.0.1), trained, and its adapter
    downloaded as a .zip of exactly its folder."""
    import zipfile

    from hub_server import LocalHub

    home = tmp_path / "home"
    home.mkdir()
    model = build_demo_model(tmp_path / "hub_model")
    with LocalHub() as hub, served_app(home, env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}) as served:
        hub.add_folder("acme/tiny-chat", model)
        with opened(browser, served.url, "en-US", failure_shot=tmp_path / "failure.png") as page:
            page.click("#tab-models-button")
            models = page.locator("#tab-models")
            models.get_by_text(t("hub_header", "en")).click()
            models.get_by_label(t("hub_repo", "en"), exact=True).fill("acme/tiny-chat")
            models.get_by_role("button", name=t("hub_list", "en")).click()
            expect(models).to_contain_text("acme/tiny-chat: ", timeout=30_000)
            models.get_by_role("button", name=t("hub_download", "en")).click()
            expect(models).to_contain_text("Downloaded tiny-chat", timeout=60_000)

            page.click("#tab-dataset-button")
            dataset = page.locator("#tab-dataset")
            dataset.get_by_role("button", name=t("use_sample", "en")).click()
            expect(dataset).to_contain_text("48 rows, all valid", timeout=30_000)
            page.click("#tab-train-button")
            train = page.locator("#tab-train")
            train.get_by_role("button", name=t("refresh", "en")).first.click()
            pick(page, train.get_by_label(t("base_model", "en")), "tiny-chat")
            train.get_by_label(t("max_steps", "en"), exact=True).fill("4")
            train.get_by_label(t("task_name", "en")).fill("from_hub")
            train.get_by_role("button", name=t("start", "en")).click()
            expect(train).to_contain_text("from_hub: completed", timeout=TRAINING_TIMEOUT_MS)

            page.click("#tab-models-button")
            expect(models).to_contain_text("1 usable", timeout=30_000)
            models.get_by_text(t("transfer_header", "en")).click()
            models.get_by_role("button", name=t("download_zip", "en")).click()
            link = models.locator("a[download]").first
            expect(link).to_be_visible(timeout=30_000)
            with page.expect_download() as download:
                link.click()
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            adapter = next((home / "Models" / "LoRA").glob("from_hub_*"))
            with zipfile.ZipFile(saved) as z:
                assert sorted(z.namelist()) == sorted(f"{adapter.name}/{p.name}" for p in adapter.iterdir())
            assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == (
                "acme/tiny-chat"
            )
            page.screenshot(path=shots / "6-models-hub.png", full_page=True)
            expect_no_error(page)


def slow_model(folder: Path) -> Path:
    """A random base model with the demo tokenizer, large enough that a long reply takes many seconds on 2 cores,
    that never stops by itself: its generation config suppresses the end tokens (a random model does emit them
    now and then, and a reply that ends early leaves nothing for a second page to wait for)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_core.chat import _stop_ids
    from lora_core.demo import MODEL_CONFIG, build_tokenizer, random_model

    tokenizer = build_tokenizer()
    shape = {**MODEL_CONFIG, "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8,
             "max_position_embeddings": 4096}  # fmt: skip
    model = random_model(LlamaForCausalLM, LlamaConfig, tokenizer, 3, vocab_size=len(tokenizer), **shape)
    model.generation_config.suppress_tokens = _stop_ids(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def trained_adapter(home: Path) -> Path:
    """The adapter the walkthrough test trained, or one trained here with the demo settings."""
    found = sorted((home / "Models" / "LoRA").glob(f"{TASK}_*")) if (home / "Models" / "LoRA").is_dir() else []
    if found:
        return found[-1]
    from lora_core.demo import DEMO_TRAINING
    from lora_core.training import TrainConfig, TrainingJob

    base = home / "Models" / "LLM" / DEMO_MODEL_NAME
    os.environ["SIMPLE_LORA_HOME"] = str(home)
    try:
        config = TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task=TASK, **DEMO_TRAINING)
        return Path(TrainingJob(config).run()["adapter_dir"])
    finally:
        del os.environ["SIMPLE_LORA_HOME"]


def load_chat(page, base: str, adapter: str | None) -> Any:
    page.click("#tab-chat-button")
    chat = page.locator("#tab-chat")
    pick(page, chat.get_by_role("combobox").nth(0), base)
    pick(page, chat.get_by_role("combobox").nth(1), adapter or t("no_adapter", "en"))
    chat.get_by_role("button", name=t("load", "en"), exact=True).click()
    expect(chat).to_contain_text(f"Chat uses base model {base} with adapter {adapter or t('no_adapter', 'en')}.",
                                 timeout=60_000)  # fmt: skip
    return chat


def test_two_pages_chat_each_with_their_own_model_and_stop_only_their_own_reply(browser, url, home, tmp_path):
    """Page A activates the trained adapter, page B nothing: each gets its own answer and status line. Then both
    ask a long question of a slow model: B waits, says so, and B's Stop ends B's reply while A's goes on."""
    adapter = trained_adapter(home)
    slow_model(home / "Models" / "LLM" / "slow")
    answer = reference(QUESTION)
    with (
        opened(browser, url, "en-US", tmp_path / "a.png") as a,
        opened(browser, url, "en-US", tmp_path / "b.png") as b,
    ):
        chat_a = load_chat(a, DEMO_MODEL_NAME, adapter.name)
        chat_b = load_chat(b, DEMO_MODEL_NAME, None)
        ask(chat_a, QUESTION)
        expect(chat_a.locator("[data-testid=bot]")).to_have_text([answer], timeout=60_000)
        ask(chat_b, QUESTION)
        expect(chat_b.locator(".generating")).to_have_count(0, timeout=60_000)
        expect(chat_b.locator("[data-testid=bot]")).not_to_have_text([answer])
        expect(chat_b.locator("[data-testid=bot]")).not_to_have_text([""])
        expect(chat_a).to_contain_text(f"with adapter {adapter.name}.")  # B's choice changed nothing of A's
        expect(chat_b).to_contain_text(f"with adapter {t('no_adapter', 'en')}.")

        for page, chat in ((a, chat_a), (b, chat_b)):
            load_chat(page, "slow", None)
            most = chat.get_by_label(f"number input for {t('max_new_tokens', 'en')}")
            most.fill("2048")
            most.press("Enter")
            most.blur()  # the slider takes a typed number when its field loses focus (page A keeps it otherwise)
        ask(chat_a, "Tell me a long story.")
        expect(chat_a.locator("[data-testid=bot]").last).not_to_have_text("", timeout=60_000)  # A's reply streams
        ask(chat_b, "Tell me a long story.")
        expect(chat_b.locator("[data-testid=bot]").last).to_have_text(t("chat_waiting", "en").strip("*"))
        chat_b.get_by_role("button", name=t("stop_reply", "en"), exact=True).click()
        expect(chat_b.locator("[data-testid=bot]").last).to_have_text(t("chat_stopped", "en").strip("*"),
                                                                 timeout=5_000)  # fmt: skip
        expect(chat_b.locator(".generating")).to_have_count(0, timeout=5_000)
        so_far = chat_a.locator("[data-testid=bot]").last.inner_text()
        expect(chat_a.locator(".generating")).not_to_have_count(0)  # A's reply goes on
        expect(chat_a.locator("[data-testid=bot]").last).not_to_have_text(so_far)
        chat_a.get_by_role("button", name=t("stop_reply", "en"), exact=True).click()
        expect(chat_a.locator(".generating")).to_have_count(0, timeout=5_000)
        expect_no_error(a)
        expect_no_error(b)


def test_a_refusal_stays_next_to_its_control_in_both_languages(browser, url, tmp_path):
    """A refused upload, a failed Compare and a failed Start each leave their sentence on the page, where it
    still is once the toasts are closed (or gone by themselves), in English and in Chinese; a Chinese page's toasts
    are titled in Chinese."""
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "a", "output": "b}]', encoding="utf-8")
    refused = {"en": "File 'broken.json' is not valid JSON: unterminated string starting at line 1, column 33.",
               "zh": "文件“broken.json”不是有效的 JSON"}  # fmt: skip
    with (
        opened(browser, url, "en-US", tmp_path / "en.png") as en,
        opened(browser, url, "zh-CN", tmp_path / "zh.png") as zh,
    ):
        for page, lang in ((en, "en"), (zh, "zh")):
            expect_labels(page, lang)
            page.locator("#tab-dataset input[type=file]").first.set_input_files(str(broken))
            expect(page.locator("#tab-dataset")).to_contain_text(refused[lang], timeout=30_000)
            page.click("#tab-train-button")
            page.locator("#tab-train").get_by_role("button", name=t("start", lang)).click()
            expect(page.locator("#tab-train")).to_contain_text(t("no_dataset", lang))
            page.click("#tab-chat-button")
            chat = page.locator("#tab-chat")
            chat.get_by_placeholder(t("compare_hint", lang)).fill(QUESTION)
            chat.get_by_role("button", name=t("compare", lang), exact=True).click()
            expect(chat.get_by_label(t("adapter_reply", lang), exact=True)).to_have_value(t("load_first", lang))
        expect(zh.locator(".toast-title").first).to_have_text(re.compile("^" + t("error_title", "zh")))
        for page, lang in ((en, "en"), (zh, "zh")):
            # closed by their buttons, as a person closes them (they would go by themselves after a while)
            page.locator(".toast-close").evaluate_all("buttons => buttons.forEach(b => b.click())")
            expect(page.locator(".toast-body")).to_have_count(0)  # the toasts are gone, the reasons are not
            expect(page.locator("#tab-chat").get_by_label(t("base_reply", lang), exact=True)).to_have_value(
                t("load_first", lang)
            )
            page.click("#tab-train-button")
            expect(page.locator("#tab-train")).to_contain_text(t("no_dataset", lang))
            page.click("#tab-dataset-button")
            expect(page.locator("#tab-dataset")).to_contain_text(refused[lang])


def test_a_reload_during_a_training_shows_its_settings_and_dataset(browser, url, tmp_path):
    """Reloaded while a run goes on, the Train tab shows that run's settings (read-only) rather than the form's
    defaults, names its dataset, and the runs table has a dataset column; the Dataset tab offers it again."""
    with opened(browser, url, "en-US", tmp_path / "reload.png") as page:
        page.locator("#tab-dataset").get_by_role("button", name=t("use_sample", "en")).click()
        expect(page.locator("#tab-dataset")).to_contain_text("48 rows, all valid", timeout=30_000)
        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_role("button", name=t("demo_settings", "en")).click()
        page.click("#tab-dataset-button")  # one max length: the Dataset tab counts tokens with the Train tab's
        expect(page.locator("#tab-dataset").get_by_label(t("max_length", "en"), exact=True)).to_have_value("256")
        page.click("#tab-train-button")
        train.get_by_label(t("max_steps", "en"), exact=True).fill("5000")
        train.get_by_label(t("task_name", "en")).fill("reloaded")
        train.get_by_role("button", name=t("start", "en")).click()
        expect(train).to_contain_text("reloaded: running", timeout=60_000)

        page.reload()
        expect(page.locator("#tab-dataset-button")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name=t("use_last", "en", name="demo_alpaca.json"))).to_be_visible()
        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        expect(train).to_contain_text("reloaded: running", timeout=30_000)
        expect(train).to_contain_text(re.compile(r"Dataset: demo_alpaca\.json, 48 rows, sha256 [0-9a-f]{12}…"))
        for key, value in (("max_steps", "5000"), ("epochs", "60"), ("batch_size", "8"), ("max_length", "256")):
            field = train.get_by_label(t(key, "en"), exact=True)
            expect(field).to_have_value(value)  # the run's, not the defaults
            expect(field).to_be_disabled()
        expect(train.get_by_label(t("task_name", "en"))).to_have_value("reloaded")
        header = train.locator("th", has_text=t("col_dataset", "en"))
        expect(header).to_be_visible()
        expect(train).to_contain_text(re.compile(r"reloaded_\d+_\d+\s*running\s*demo_alpaca\.json"))
        page.once("dialog", lambda dialog: dialog.dismiss())  # "throw away what it has learnt?" No
        train.get_by_role("button", name=t("stop_discard", "en")).click()
        expect(train).to_contain_text(t("discard_cancelled", "en"))
        expect(train).to_contain_text("reloaded: running")
        page.once("dialog", lambda dialog: dialog.accept())
        train.get_by_role("button", name=t("stop_discard", "en")).click()
        expect(train).to_contain_text("reloaded: stopped", timeout=60_000)
        expect(train.get_by_label(t("max_steps", "en"), exact=True)).to_be_enabled()


# The points of each line of the comparison plot, by its colour.
COMPARE_LINES_JS = """() => [...document.querySelectorAll('#compare-curves .vega-embed .mark-line path')]
    .map(path => ({stroke: path.getAttribute('stroke'),
                   points: (path.getAttribute('d') || '').split(/[ML]/).filter(Boolean).length}))
    .filter(line => line.points > 1)"""


def test_two_runs_side_by_side_in_a_browser(browser, url, home, shots, tmp_path, monkeypatch):
    """Two adapters of different learning rates chosen: one plot with their two loss lines, one table with both,
    and the setting in which they differ."""
    from lora_core.training import State, TrainConfig, TrainingJob

    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))
    names = []
    for task, lr, steps in (("side_fast", 2e-3, 30), ("side_slow", 5e-4, 20)):
        config = TrainConfig(base=str(home / "Models" / "LLM" / DEMO_MODEL_NAME), data=str(SAMPLE_DATASET), task=task,
                             max_steps=steps, learning_rate=lr, batch_size=8, max_length=128, eval_rows=4)  # fmt: skip
        snap = TrainingJob(config).run()
        assert snap["state"] == State.COMPLETED, snap["error"]
        names.append(Path(snap["adapter_dir"]).name)
    with opened(browser, url, "en-US", tmp_path / "side.png") as page:
        page.click("#tab-models-button")
        models = page.locator("#tab-models")
        models.get_by_role("button", name=t("scan", "en"), exact=True).click()
        expect(models).to_contain_text(names[1], timeout=30_000)
        page.locator("#compare-runs").get_by_text(t("compare_title", "en")).click()
        chooser = page.locator("#compare-runs").get_by_role("combobox")
        for name in names:
            pick(page, chooser, name)
        page.locator("#compare-runs").get_by_role("button", name=t("compare", "en"), exact=True).click()
        both = re.compile(rf"1\s*{names[0]}\s*demo_alpaca\.json.*2\s*{names[1]}\s*demo_alpaca\.json")
        expect(page.locator("#compare-scores")).to_contain_text(both, timeout=30_000)
        expect(page.locator("#compare-runs")).to_contain_text(re.compile(r"learning_rate\s*0\.002\s*0\.0005"))
        page.wait_for_function(f"({COMPARE_LINES_JS})().length === 2", timeout=30_000)
        lines = page.evaluate(COMPARE_LINES_JS)
        assert sorted(line["points"] for line in lines) == [20, 30] and lines[0]["stroke"] != lines[1]["stroke"]
        expect_no_error(page)
        page.locator("#compare-runs").screenshot(path=shots / "8-compare.png")


def test_a_csv_of_questions_and_answers_is_mapped_shown_and_trained(browser, url, home, shots, tmp_path):
    """A spreadsheet's export: its columns guessed from their names, accepted, its trained tokens shown, and the demo
    model trained on it; the adapter's manifest records the mapping."""
    import csv

    rows = json.loads(SAMPLE_DATASET.read_text(encoding="utf-8"))[:8]
    dataset_file = tmp_path / "lighthouse_qa.csv"
    with dataset_file.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["question", "answer", "source"])
        writer.writerows([row["instruction"], row["output"], "sample"] for row in rows)
    with opened(browser, url, "en-US", failure_shot=tmp_path / "failure.png") as page:
        dataset = page.locator("#tab-dataset")
        dataset.locator("input[type=file][accept*=parquet]").set_input_files(str(dataset_file))
        expect(dataset).to_contain_text("lighthouse_qa.csv: 8 rows in columns that are none of the three formats")
        box = page.locator("#columns-box").first  # Gradio gives a group's id to its wrapper too
        expect(box).to_be_visible()
        expect(box.locator("#map-instruction input")).to_have_value("question")  # guessed from the names
        expect(box.locator("#map-output input")).to_have_value("answer")
        expect(box.locator("#map-input input")).to_have_value("")
        expect(box.locator("#column-values")).to_contain_text(rows[0]["instruction"])
        expect_no_error(page)
        page.screenshot(path=shots / "9-columns.png", full_page=True)
        box.locator("#apply-columns").click()
        expect(dataset).to_contain_text("Alpaca format, 8 rows, all valid")
        expect(dataset).to_contain_text("Columns used: instruction=question,output=answer.")
        dataset.get_by_role("button", name=t("analyze", "en")).click()
        tokens = dataset.locator("[data-testid=highlighted-text] .token")
        expect(tokens.filter(has_text=rows[0]["output"])).to_have_css("background-color", "rgba(44, 160, 44, 0.5)")
        expect(tokens.filter(has_text=rows[0]["instruction"])).to_have_css("background-color",
                                                                            "rgba(208, 208, 208, 0.5)")  # fmt: skip

        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_role("button", name=t("demo_settings", "en")).click()
        train.get_by_label(t("max_steps", "en"), exact=True).fill("6")
        train.get_by_label(t("task_name", "en")).fill("csv_qa")
        train.get_by_role("button", name=t("start", "en")).click()
        expect(train).to_contain_text(re.compile(r"csv_qa: (completed|stopped|failed)"), timeout=TRAINING_TIMEOUT_MS)
        progress = train.inner_text()
        assert "csv_qa: completed" in progress, progress
        saved = re.search(r"Adapter saved in (\S+)\. ", progress)
        manifest = json.loads((home / saved.group(1) / "training_meta.json").read_text(encoding="utf-8"))
        assert manifest["dataset"]["columns"] == "instruction=question,output=answer"
        assert manifest["dataset"]["name"] == "lighthouse_qa.csv" and manifest["dataset"]["rows_total"] == 8
        expect_no_error(page)


def test_preference_pairs_are_shown_trained_with_orpo_and_compared(browser, url, home, shots, tmp_path):
    """The bundled preference pairs: each prompt once with both answers highlighted, the demo settings for them
    (ORPO), the second plot, the preference accuracy after the run, and Compare answering with the chosen answer."""
    pairs = json.loads(PREFERENCE_SAMPLE.read_text(encoding="utf-8"))
    first = pairs[0]
    with opened(browser, url, "en-US", failure_shot=tmp_path / "failure.png") as page:
        dataset = page.locator("#tab-dataset")
        dataset.get_by_role("button", name=t("use_preference_sample", "en")).click()
        expect(dataset).to_contain_text("demo_preference.json: preference pairs format, 24 rows, all valid.")
        expect(dataset).to_contain_text(t("role_rejected", "en"))
        dataset.get_by_role("button", name=t("analyze", "en")).click()
        tokens = dataset.locator("[data-testid=highlighted-text] .token")
        expect(tokens.filter(has_text=first["chosen"])).to_have_css("background-color", "rgba(44, 160, 44, 0.5)")
        expect(tokens.filter(has_text=first["rejected"])).to_have_css("background-color", "rgba(255, 127, 14, 0.5)")
        expect(tokens.filter(has_text=first["prompt"])).to_have_css("background-color", "rgba(208, 208, 208, 0.5)")
        expect_no_error(page)

        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_role("button", name=t("demo_settings", "en")).click()
        expect(train.get_by_role("radio", name="ORPO")).to_be_checked()
        expect(train.get_by_label(t("epochs", "en"), exact=True)).to_have_value("40")
        train.get_by_label(t("task_name", "en")).fill("prefs")
        train.get_by_role("button", name=t("start", "en")).click()
        expect(train).to_contain_text(re.compile(r"prefs: (completed|stopped|failed)"), timeout=TRAINING_TIMEOUT_MS)
        progress = train.inner_text()
        assert "prefs: completed" in progress, progress
        expect(page.locator("#preference-plot").first).to_be_visible()
        expect(page.locator("#preference-plot .vega-embed .mark-line path").first).to_be_visible()
        # from about half of the pairs before to (nearly) all of them after (the form evaluates 20 rows)
        expect(train).to_contain_text(re.compile(r"on 20 pairs: base 0\.\d\d → adapter (0\.9\d|1\.00)"))
        expect_no_error(page)
        page.screenshot(path=shots / "10-preference.png", full_page=True)
        adapter = re.search(r"Adapter saved in (\S+)\. ", progress).group(1).rsplit("/", 1)[-1]

        page.click("#tab-models-button")
        models = page.locator("#tab-models")
        pick(page, models.get_by_role("combobox"), adapter)
        models.get_by_role("button", name=t("activate", "en"), exact=True).click()
        expect(models).to_contain_text(f"with adapter {adapter}.", timeout=60_000)
        expect(page.locator("#eval-card")).to_contain_text(t("score_preference", "en"))

        page.click("#tab-chat-button")
        chat = page.locator("#tab-chat")
        chat.get_by_placeholder(t("compare_hint", "en")).fill(first["prompt"])
        chat.get_by_role("button", name=t("compare", "en"), exact=True).click()
        expect(chat.get_by_label(t("adapter_reply", "en"), exact=True)).to_have_value(first["chosen"], timeout=60_000)
        expect_no_error(page)
