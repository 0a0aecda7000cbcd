"""The demo walkthrough in a real browser (headless Chromium, driven by Playwright), as a person clicks it:
sample dataset, tokens, demo training, activate the adapter, chat and compare, the language switched; and what
reads its adapter or checks the same page (markup shown as text, two pages chatting at once, a refusal beside its
control). The other browser tests, and the browser, app and screenshot fixtures these share, are in
tests/test_browser.py; the two modules run in parallel test processes, each with a browser and an app of its own.

Screenshots of each tab are taken only when SIMPLE_LORA_SCREENSHOTS names a folder for them:

    SIMPLE_LORA_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/test_browser*.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import test_browser
from test_browser import QUESTION, TRAINING_TIMEOUT_MS, ask, expect_labels, expect_no_error, opened, pick, reference

from lora_core.demo import DEMO_MODEL_NAME, SAMPLE_DATASET
from webui.i18n import t

try:
    from playwright.sync_api import expect
except ImportError:  # test_browser's fixtures skip (or fail where the browser is required)
    expect = None

pytestmark = pytest.mark.slow
# test_browser's fixtures, made again for this module: a browser, a data home and an app of its own.
browser, home, url, shots = test_browser.browser, test_browser.home, test_browser.url, test_browser.shots

QUESTION_ZH = "灯塔镇的镇长是谁？"


TASK = "browser_demo"


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
            if lang == "en":  # Gradio's own words follow the page's switch, not the browser
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
        shots(page, "1-dataset.png")

        # 2. Train with the demo settings until the adapter is saved; the loss curve is drawn and falls.
        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_role("button", name=t("demo_settings", "en")).click()
        expect(train.get_by_label(t("epochs", "en"), exact=True)).to_have_value("40")
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
        # reference again; the earlier ones are at the run's fifths (on a busy machine the budget may skip them)
        latest = re.compile(rf"240\s*1\s*{re.escape(QUESTION)}\s*{re.escape(answer)}\s*{re.escape(answer)}")
        expect(samples).to_contain_text(latest)
        steps = {int(s) for s in re.findall(rf"(\d+)\s*1\s*{re.escape(QUESTION)}", samples.inner_text())}
        assert 240 in steps and steps <= {48, 96, 144, 192, 240}, steps
        # the evaluation after the run, summed up
        expect(train).to_contain_text(re.compile(r"exact match base 0\.00 → adapter (0\.[89]\d|1\.00)"))
        expect_no_error(page)
        shots(page, "2-train.png")

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
        shots(page, "3-models.png")
        shots(card, "7-card.png")

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
        shots(page, "4-chat.png")

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
        shots(page, "5-chat-zh.png")

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


def slow_model(folder: Path) -> Path:
    """A random base model with the demo tokenizer, large enough that a long reply takes a minute or more on 2 cores
    (33 ms a token on one idle thread, 2,048 tokens; at a quarter of its size another page's clicks on a busy
    machine outlasted a reply), that never stops by itself: its generation config suppresses the end tokens (a
    random model does emit them now and then, and a reply that ends early leaves nothing for a second page to wait
    for)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_core.chat import _stop_ids
    from lora_core.demo import MODEL_CONFIG, build_tokenizer, random_model

    tokenizer = build_tokenizer()
    shape = {**MODEL_CONFIG, "hidden_size": 1024, "intermediate_size": 2752, "num_hidden_layers": 8,
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
            # taken: else a reply of the default length may end before the other page asks (on a busy machine)
            expect(chat.get_by_label(f"range slider for {t('max_new_tokens', 'en')}")).to_have_value("2048")
        replies_a = chat_a.locator("[data-testid=bot]")
        before = replies_a.count()
        ask(chat_a, "Tell me a long story.")
        # A's own new reply streams (until its bubble is there, `.last` is A's earlier answer: B must not ask before)
        expect(replies_a).to_have_count(before + 1, timeout=60_000)
        waiting = t("chat_waiting", "en").strip("*")
        expect(replies_a.last).not_to_have_text(re.compile(rf"^\s*$|^{re.escape(waiting)}"), timeout=60_000)
        ask(chat_b, "Tell me a long story.")
        expect(chat_b.locator("[data-testid=bot]").last).to_have_text(waiting)
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
