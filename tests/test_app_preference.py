"""Preference tuning in the app: the Dataset tab's preview and token view of pairs, the demo settings for them, a
method that does not fit the rows refused at Start in the user's language, the preference plot and the card."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from lora_core import demo
from lora_core.evaluation import Evaluation
from webui import dataset_tab, eval_card, train_form, train_tab, train_view
from webui.i18n import LANGS, error_message, t

CHOSEN_1 = "Captain Ada Finch has kept the Lumen Bay lighthouse since 1987."
REJECTED_1 = "Nobody keeps it. Go and look it up yourself."


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, install_demo) -> Path:
    root = tmp_path_factory.mktemp("home")
    install_demo(root / "Models" / "LLM" / demo.DEMO_MODEL_NAME)
    return root


@pytest.fixture(autouse=True)
def use_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))


@pytest.fixture(scope="module")
def pairs() -> dataset_tab.LoadedDataset:
    return dataset_tab.on_dataset("en", str(demo.PREFERENCE_SAMPLE), "auto")[3]


def cells(frame) -> list[list]:
    return frame["value"]["data"] if isinstance(frame, dict) else frame.values.tolist()


@pytest.mark.parametrize("lang", LANGS)
def test_the_preview_shows_each_prompt_with_its_chosen_and_rejected_answer(lang) -> None:
    summary, _, preview, loaded = dataset_tab.on_dataset(lang, str(demo.PREFERENCE_SAMPLE), "auto")
    assert loaded.report.format == "preference"
    assert ("preference pairs format, 24 rows" if lang == "en" else "24 行") in summary
    first = [row for row in cells(preview) if row[0] == 1]
    assert [row[1] for row in first] == [t("role_user", lang), t("role_chosen", lang), t("role_rejected", lang)]
    assert [row[2] for row in first][1:] == [CHOSEN_1, REJECTED_1]


@pytest.mark.parametrize("lang", LANGS)
def test_the_token_view_shows_the_prompt_once_and_both_answers_trained(pairs, lang) -> None:
    highlight, figure, summary = dataset_tab.on_tokens(lang, pairs, demo.DEMO_MODEL_NAME, 512)
    chosen, rejected, masked = t("trained_chosen", lang), t("trained_rejected", lang), t("masked", lang)
    assert set(highlight["color_map"]) == {chosen, rejected, masked}
    spans = highlight["value"]
    first = spans[: spans.index(("\n\n", None))]
    assert [label for _, label in first] == [masked, None, chosen, None, rejected]
    assert first[0][0].count("Who keeps the lighthouse of Lumen Bay?") == 1
    assert first[2][0] == CHOSEN_1 + "<|im_end|>\n" and first[4][0] == REJECTED_1 + "<|im_end|>\n"
    assert sum(patch.get_height() for patch in figure.axes[0].patches) == 24
    assert summary.startswith("24 examples" if lang == "en" else "共 24 个样本")


def test_demo_settings_follow_the_loaded_dataset(pairs) -> None:
    instruction = dataset_tab.on_dataset("en", str(demo.SAMPLE_DATASET), "auto")[3]
    for loaded, expected in (
        (pairs, demo.DEMO_PREFERENCE),
        (instruction, demo.DEMO_TRAINING),
        (None, demo.DEMO_TRAINING),
    ):
        values = dict(zip(train_form.HYPER, train_form.demo_settings(loaded), strict=False))
        assert values["method"] == expected.get("method", "sft")
        assert values["epochs"] == expected["epochs"]


def start(lang, loaded, **settings):
    values = {name: getattr(train_form.DEFAULTS, name) for name in train_form.HYPER}
    values.update(quantization="none", max_steps=1, eval_rows=0, samples=0, **settings)
    return train_tab.on_start(lang, loaded, demo.DEMO_MODEL_NAME, "pref_ui", "attention", [],
                              *[values[name] for name in train_form.HYPER])  # fmt: skip


@pytest.mark.parametrize("lang", LANGS)
def test_a_method_that_does_not_fit_the_rows_is_refused_at_start_in_the_users_language(pairs, lang) -> None:
    with pytest.raises(gr.Error) as err:
        start(lang, pairs, method="sft")
    params = {"file": "demo_preference.json"}
    assert err.value.message == error_message("pairs_need_method", params, lang, "")
    instruction = dataset_tab.on_dataset(lang, str(demo.SAMPLE_DATASET), "auto")[3]
    with pytest.raises(gr.Error) as err:
        start(lang, instruction, method="orpo")
    params = {"method": "orpo", "file": "demo_alpaca.json"}
    assert err.value.message == error_message("needs_pairs", params, lang, "")
    with pytest.raises(gr.Error) as err:  # a hostile value for the method: refused by name, shown as text
        start(lang, pairs, method="<img src=x onerror=alert(1)>")
    assert t("method", lang) in err.value.message and "<img" not in err.value.message.replace("&lt;img", "")


def test_the_preference_plot_is_shown_for_a_preference_run_only() -> None:
    snap = {"method": "orpo", "loss": [[1, 2.0]], "eval_loss": [], "total_steps": 10,
            "preference": {"accuracy": [[1, 0.5], [2, 1.0]], "log_odds": [[1, 0.1], [2, 0.9]],
                           "margin": [[1, 0.0], [2, 0.2]]}}  # fmt: skip
    shown = train_tab.preference_update(snap)
    frame = shown["value"]
    assert shown["visible"] is True and shown["x_lim"] == [0, 10]
    # ORPO's own signal is its log odds ratio; DPO's is the reward margin
    assert frame[frame["series"] == "signal"]["value"].tolist() == [0.1, 0.9]
    snap["preference"].pop("log_odds")
    assert train_view.preference_frame(snap).query("series == 'signal'")["value"].tolist() == [0.0, 0.2]
    assert train_tab.preference_update({**snap, "method": "sft"})["visible"] is False
    assert train_tab.preference_update(None)["visible"] is False


@pytest.mark.parametrize("lang", LANGS)
def test_the_card_and_the_run_line_show_the_preference_accuracy(home, lang) -> None:
    folder = home / "Models" / "LoRA" / "pref_card"
    folder.mkdir(parents=True, exist_ok=True)
    card = Evaluation(adapter="pref_card", dataset="demo_preference.json", dataset_sha256="0" * 64,
                      rows_kind="trained", max_new_tokens=8, base={}, tuned={},
                      preference={"pairs": 24, "base": 0.5, "adapter": 0.9583})  # fmt: skip
    (folder / "eval.json").write_text(json.dumps(card.to_json()), encoding="utf-8")
    line = train_view.evaluation_text(card.summary(), lang)
    assert line.startswith(t("eval_pairs", lang, pairs=24, base="0.50", tuned="0.96"))
    _, scores, *_ = eval_card.card_views("pref_card", lang)
    assert cells(scores)[-1] == [t("score_preference", lang), "0.500", "0.958"]
