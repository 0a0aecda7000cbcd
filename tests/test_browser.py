"""The app in a real browser: headless Chromium, driven by Playwright, clicked as a person would: two users at
once, a model from the Hub trained and its adapter taken home, a reload during a training, two runs side by side,
a CSV mapped and trained, preference pairs trained with ORPO. The demo walkthrough itself (dataset, tokens, demo
training, chat and compare, the language) is in tests/test_browser_walkthrough.py, which uses this module's
fixtures and helpers; the two modules run in parallel test processes, each with its own browser and app.

Screenshots of each tab are taken only when SIMPLE_LORA_SCREENSHOTS names a folder for them (the one of a failing
test always, into its tmp_path):

    SIMPLE_LORA_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/test_browser*.py

Without Chromium (/usr/bin/chromium, Debian's package) or the playwright package the tests are skipped, unless
SIMPLE_LORA_REQUIRE_BROWSER=1 (set by CI), where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tiny import ROOT, served_app

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the tests say so (skip, or fail where the browser is required)
    expect = sync_playwright = None

from lora_core import adapters
from lora_core.demo import DEMO_MODEL_NAME, DEMO_PREFERENCE, PREFERENCE_SAMPLE, SAMPLE_DATASET, build_demo_model
from webui.i18n import t

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 1000}
QUESTION = "Who keeps the lighthouse of Lumen Bay?"
# The ORPO test, most of it its training, took 42-84 s in suite runs on 2 cores (the same code, by the machine's
# hour); five minutes leave room for a machine twice as slow as the slowest seen.
TRAINING_TIMEOUT_MS = 300_000
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
def shots() -> Callable[[Any, str], None]:
    """``shots(page_or_element, "1-dataset.png")`` saves a screenshot into the folder SIMPLE_LORA_SCREENSHOTS
    names; without it none is taken (a full page costs the browser most of a second of CPU)."""
    folder = os.environ.get("SIMPLE_LORA_SCREENSHOTS")

    def shot(target: Any, name: str) -> None:
        if not folder:
            return
        path = Path(folder) if Path(folder).is_absolute() else ROOT / folder
        path.mkdir(parents=True, exist_ok=True)
        whole = {"full_page": True} if hasattr(target, "goto") else {}  # a page, not one element of it
        target.screenshot(path=path / name, **whole)

    return shot


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


def no_samples_or_card(train) -> None:
    """A run of a few steps, for its adapter: no samples during it and no evaluation card after it (the card took
    2.4 s of a 4-step run of the demo model; the walkthrough and the preference test show both)."""
    for key in ("samples", "eval_rows"):
        train.get_by_label(t(key, "en"), exact=True).fill("0")


def pick(page, combobox, option: str) -> None:
    """Choose ``option`` in a Gradio dropdown as a person does: open it, click the entry."""
    combobox.click()
    page.locator("[role=option]", has_text=option).first.click()


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
            no_samples_or_card(train)
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
            no_samples_or_card(train)
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
            shots(page, "6-models-hub.png")
            expect_no_error(page)


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
        for key, value in (("max_steps", "5000"), ("epochs", "40"), ("batch_size", "8"), ("max_length", "256")):
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
    for task, lr, steps in (("side_fast", 2e-3, 12), ("side_slow", 5e-4, 8)):
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
        assert sorted(line["points"] for line in lines) == [8, 12] and lines[0]["stroke"] != lines[1]["stroke"]
        expect_no_error(page)
        shots(page.locator("#compare-runs"), "8-compare.png")


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
        shots(page, "9-columns.png")
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
        no_samples_or_card(train)
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
        shots(page, "10-preference.png")
        saved = re.search(r"Adapter saved in (\S+)\. ", progress).group(1)
        adapter = saved.rsplit("/", 1)[-1]
        # what tests/test_preference_training.py checks of its DPO run: the card, the manifest, the files, the scan
        folder = home / saved
        card = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
        assert card["rows_kind"] == "trained" and card["preference"]["pairs"] == 20
        assert 0.25 <= card["preference"]["base"] <= 0.75 and card["preference"]["adapter"] >= 0.9
        assert card["tuned"]["exact_match"] >= 0.5  # its greedy answer is the chosen one on most
        manifest = adapters.read_manifest(folder)
        assert manifest.method == "orpo" and manifest.hyperparameters["beta"] == DEMO_PREFERENCE["beta"]
        assert manifest.dataset.format == "preference" and manifest.dataset.train_examples == 24
        accuracy = [value for _, value in manifest.preference_history["accuracy"]]
        assert accuracy[-1] >= 0.9 and accuracy[-1] > accuracy[0]
        log_odds = manifest.preference_history["log_odds"]
        assert log_odds[-1][1] > log_odds[0][1]
        assert {p.name for p in folder.iterdir()} <= {"adapter_config.json", "adapter_model.safetensors", "eval.json",
            "training_meta.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}  # fmt: skip

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
