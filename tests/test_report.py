"""The evaluation card outside the app: its Markdown (user text made harmless in a table), its PNG, and the
settings in which runs differ."""

from __future__ import annotations

from lora_core.evaluation import Evaluation, ProbeResult, RowResult, save_evaluation
from lora_core.manifest import DatasetInfo, Manifest
from lora_core.report import card_markdown, card_png, cell, export_card, settings_diff


def row(n: int, rouge: float, prompt: str = "q") -> RowResult:
    score = {"exact_match": float(rouge == 1.0), "rouge_l": rouge, "token_f1": rouge}
    return RowResult(n, prompt, f"ref {n}", "base answer", f"answer {n}", {k: 0.0 for k in score}, score)


def card() -> Evaluation:
    return Evaluation(
        adapter="a_1", dataset="mine|<b>.json", dataset_sha256="ab" * 32, rows_kind="held_out", max_new_tokens=40,
        base={"exact_match": 0.0, "rouge_l": 0.1, "token_f1": 0.2, "eval_loss": 3.0},
        tuned={"exact_match": 0.5, "rouge_l": 0.75, "token_f1": 0.8, "eval_loss": 1.25},
        rows=[row(1, 1.0, "a | b\nc <script>x</script>"), row(2, 0.5), row(3, 0.0), row(4, 0.25)],
        probe=[ProbeResult("en_add", "en", "What is 2 + 2?", "4", "4", 1.0, False, True, True),
               ProbeResult("zh_months", "zh", "一年有几个月？", "十二个月", "灯塔", 0.0, True, True, False)],
        evaluated_at="2026-11-30T12:00:00",
    )  # fmt: skip


def test_a_cell_is_one_harmless_line() -> None:
    assert cell("a | b\nc") == "a \\| b<br>c"
    assert cell("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert cell("x" * 500).endswith("…") and len(cell("x" * 500)) == 160


def test_the_markdown_card_has_the_scores_the_probe_and_the_best_and_worst_rows() -> None:
    text = card_markdown(card(), "eval_card.png")
    assert "4 held-out rows (the validation split, not trained on) of mine\\|&lt;b&gt;.json" in text
    assert "| exact match | 0.000 | 0.500 |" in text and "| eval loss | 3.000 | 1.250 |" in text
    assert "![evaluation card](eval_card.png)" in text
    assert "1 of 2 general prompts answered differently" in text
    assert "| 一年有几个月？ | 十二个月 | 灯塔 | 0.00 | yes, no |" in text
    assert "Answered right (the answer has an expected word): base 2, adapter 1." in text
    best = text.split("### Best rows")[1].split("### Worst rows")[0]
    worst = text.split("### Worst rows")[1]
    assert "| 1 | a \\| b<br>c &lt;script&gt;x&lt;/script&gt; |" in best and "| 2 |" in best
    assert "| 3 |" in worst and "| 4 |" in worst and "| 1 |" not in worst
    assert "<script>" not in text
    assert "preference accuracy" not in text  # instruction rows have none


def test_a_preference_adapters_card_has_its_preference_accuracy() -> None:
    evaluation = card()
    evaluation.preference = {"pairs": 4, "base": 0.5, "adapter": 1.0}
    assert "| preference accuracy (4 pairs) | 0.500 | 1.000 |" in card_markdown(evaluation)


def test_the_png_and_the_export(tmp_path) -> None:
    manifest = Manifest(loss_history=[[1, 3.0], [2, 2.0]], eval_history=[[2, 2.5]])
    assert card_png(manifest, card()).startswith(b"\x89PNG") and card_png(None, card()).startswith(b"\x89PNG")
    adapter = tmp_path / "a_1"
    adapter.mkdir()
    assert export_card(adapter, manifest, tmp_path / "out") == []  # no card yet: nothing exported
    save_evaluation(adapter, card())
    md, png = export_card(adapter, manifest, tmp_path / "out")
    assert md.name == "a_1_eval.md" and "![evaluation card](a_1_eval.png)" in md.read_text(encoding="utf-8")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_settings_diff_shows_only_what_differs() -> None:
    def manifest(lr: float, rank: int, data: str) -> Manifest:
        hyper = {"learning_rate": lr, "rank": rank, "seed": 42, "data_name": data}
        return Manifest(base_model_name="demo", dataset=DatasetInfo(name=data), target_modules=["q_proj"], steps=10,
                        hyperparameters=hyper)  # fmt: skip

    diff = dict(settings_diff({"a": manifest(1e-3, 8, "x.json"), "b": manifest(1e-3, 16, "y.json"),
                               "c": manifest(2e-3, 8, "x.json")}))  # fmt: skip
    assert diff == {"dataset": ["x.json", "y.json", "x.json"], "learning_rate": [1e-3, 1e-3, 2e-3], "rank": [8, 16, 8]}
