"""The Models tab's evaluation card and runs side by side, through their handlers and the launched app's API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from lora_core.demo import SAMPLE_DATASET
from lora_core.manifest import META_NAME
from lora_core.training import State, TrainConfig, TrainingJob
from webui import eval_card
from webui.i18n import t

pytestmark = pytest.mark.slow  # a short training


@pytest.fixture(scope="module")
def home(module_home, install_demo) -> Path:
    install_demo(module_home / "Models" / "LLM" / "demo")
    config = TrainConfig(base=str(module_home / "Models" / "LLM" / "demo"), data=str(SAMPLE_DATASET), task="card",
                         max_steps=20, learning_rate=2e-3, batch_size=8, max_length=128, eval_rows=6)  # fmt: skip
    snap = TrainingJob(config).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    return module_home


@pytest.fixture(scope="module")
def name(home) -> str:
    return next(p.name for p in (home / "Models" / "LoRA").iterdir() if p.name.startswith("card_"))


def rows(frame) -> list[list]:
    return frame.values.tolist()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_card_of_a_trained_adapter(name, lang) -> None:
    summary, scores, curve, best_worst, probe = eval_card.on_card(lang, name)
    header = summary.split("\n")[0]
    assert header.startswith(f"**{name}**") and "**demo_alpaca.json**" in header
    kind = t("rows_trained", lang)
    assert kind in summary and ("6 rows" in summary if lang == "en" else "6 行" in summary)
    assert [r[0] for r in rows(scores)] == [t(f"score_{s}", lang) for s in
                                            ("exact_match", "rouge_l", "token_f1", "eval_loss")]  # fmt: skip
    assert set(curve["series"]) == {"train", "eval"} and (curve["series"] == "train").sum() == 20
    assert [r[0] for r in rows(best_worst)] == [t("card_best", lang)] * 3 + [t("card_worst", lang)] * 3
    assert len(probe) == 12
    assert list(probe.columns)[3:] == [t(k, lang) for k in ("col_similarity", "col_base_right", "col_adapter_right")]


def test_no_adapter_or_no_card_says_what_to_do(home, name) -> None:
    assert eval_card.on_card("en", None)[0] == t("card_choose", "en")
    copy = shutil.copytree(home / "Models" / "LoRA" / name, home / "Models" / "LoRA" / "uncarded")
    (copy / "eval.json").unlink()
    summary, scores, curve, *_ = eval_card.on_card("en", "uncarded")
    assert summary == t("card_none", "en", name="uncarded") and scores.empty
    assert (curve["series"] == "train").sum() == 20  # the loss curves are known without an evaluation
    with pytest.raises(gr.Error, match="has no evaluation yet"):
        eval_card.on_export("en", "uncarded")
    shutil.rmtree(copy)


def test_evaluate_on_an_uploaded_dataset_with_hostile_text_and_bounds(home, name, tmp_path) -> None:
    data = tmp_path / "evil_<b>x.jsonl"
    data.write_text(json.dumps({"instruction": "<img src=x onerror=alert(1)> | hi", "output": "Hi."}) + "\n",
                    encoding="utf-8")  # fmt: skip
    summary, scores, _, best_worst, _ = eval_card.on_evaluate("en", name, str(data), 5)
    assert "evil\\_&lt;b&gt;x.jsonl" in summary and "<b>" not in summary  # shown as text
    assert t("rows_other", "en") in summary
    assert rows(best_worst)[0][2] == "<img src=x onerror=alert(1)> | hi"  # a table cell: Gradio shows it as text
    for bad in (0, 1001, 2.5, None, "many"):
        with pytest.raises(gr.Error, match="limit"):
            eval_card.on_evaluate("en", name, str(data), bad)
    with pytest.raises(gr.Error, match="Choose an adapter"):
        eval_card.on_evaluate("en", None, str(data), 5)
    with pytest.raises(gr.Error):  # not a folder of Models/LoRA
        eval_card.on_evaluate("en", "../../etc", str(data), 5)
    # on its own dataset again (the run's record names it): the card is the trained rows' once more
    summary, *_ = eval_card.on_evaluate("en", name, None, 6)
    assert t("rows_trained", "en") in summary


def test_export_gives_markdown_and_png(name) -> None:
    md, png = eval_card.on_export("en", name)
    assert md.endswith(f"{name}_eval.md") and "## Evaluation" in Path(md).read_text(encoding="utf-8")
    assert Path(png).read_bytes().startswith(b"\x89PNG")


def test_runs_side_by_side(home, name) -> None:
    other = shutil.copytree(home / "Models" / "LoRA" / name, home / "Models" / "LoRA" / "card_other")
    meta = json.loads((other / META_NAME).read_text(encoding="utf-8"))
    meta["hyperparameters"]["learning_rate"] = 5e-4
    meta["loss_history"] = meta["loss_history"][:10]
    (other / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
    diff, curves, scores = eval_card.on_compare("zh", [name, "card_other"])
    assert list(diff.columns) == ["设置", f"1: {name}", "2: card_other"]
    assert rows(diff) == [["learning_rate", "0.002", "0.0005"]]
    drawn = curves[curves["loss"].notna()]
    assert (drawn["series"] == "1").sum() == 20 and (drawn["series"] == "2").sum() == 10
    assert set(curves["series"]) == {str(i) for i in range(1, eval_card.COMPARE_MAX + 1)}  # unused ones blank
    assert [r[:2] for r in rows(scores)] == [["1", name], ["2", "card_other"]]
    for names in ([name], [name] * 3, [f"x{i}" for i in range(9)]):
        with pytest.raises(gr.Error, match="请选择 2 到 8 个适配器"):
            eval_card.on_compare("zh", names)
    with pytest.raises(gr.Error):
        eval_card.on_compare("en", [name, "no_such_adapter"])
    shutil.rmtree(other)


def test_the_api_gives_the_card_and_the_comparison(home, name) -> None:
    from tiny import launched_app

    other = shutil.copytree(home / "Models" / "LoRA" / name, home / "Models" / "LoRA" / "card_api")
    with launched_app() as client:
        summary, scores, *_ = client.predict("en", name, api_name="/evaluation_card")
        assert summary.startswith(f"**{name}**") and [r[0] for r in scores["data"]][0] == "exact match"
        diff, _, table = client.predict("en", [name, "card_api"], api_name="/compare_adapters")
        assert [r[1] for r in table["data"]] == [name, "card_api"] and diff["data"] == []  # same settings
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="Choose 2 to 8 adapters"):
            client.predict("en", [name], api_name="/compare_adapters")
    shutil.rmtree(other)
