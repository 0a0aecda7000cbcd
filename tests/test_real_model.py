"""The loop on a real instruct model, SmolLM2-135M-Instruct (tests/smollm2.py): a short training on six rows of
the bundled sample teaches it facts its base does not know, Compare shows a fluent base answer beside the trained
one, and the adapter merged, or zipped and uploaded again, answers the same."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from lora_core import bundles
from lora_core.chat import ChatEngine, GenerationSettings
from lora_core.demo import sample_rows
from lora_core.export import merge_adapter
from lora_core.training import State, TrainConfig, TrainingJob

pytestmark = pytest.mark.slow

# Trained on the six questions below alone (every eighth sample row, three of them Chinese): 5 steps of 6 rows,
# about 12 s on one thread. Measured, the adapter's answers on the evaluation card (up to 16 tokens longer than the
# longest reference) hold all of the reference answers' new words, the base's 10%; in greedy answers of 32 tokens,
# 84% and 3% (73% after four epochs, 85% after six). The thresholds leave room on both sides. (Three epochs of the
# whole sample, 18 steps of 8 rows, took four times as long and reached 46%.)
# No samples during the run and an evaluation card of its 6 rows, not 20 (tests/test_evaluation.py is about those):
# on this model its answers and the probe's take about 25 s, twice the training.
TRAINING = dict(epochs=5, learning_rate=3e-3, batch_size=6, max_length=128, dropout=0.0, scheduler="constant",
                warmup_ratio=0.0, samples=0, eval_rows=6)  # fmt: skip
LEARNED, BASE_KNOWS = 0.6, 0.25
GREEDY = GenerationSettings(max_new_tokens=32)


def words(text: str) -> set[str]:
    """Words (and, for Chinese, single characters) of ``text``, lower-cased."""
    return set(re.findall(r"[a-z0-9'-]+|[\u4e00-\u9fff]", text.lower()))


def recall(answer: str, row: dict) -> float:
    """The share of the reference answer's words (those not in the question) that ``answer`` has."""
    new = words(row["output"]) - words(row["instruction"])
    return len(words(answer) & new) / len(new)


QUESTIONS = [row for row in sample_rows()[::8]]


@pytest.fixture(scope="module")
def trained(smollm2_model, module_home) -> Path:
    data = module_home / "six_questions.json"
    data.write_text(json.dumps(QUESTIONS, ensure_ascii=False), encoding="utf-8")
    config = TrainConfig(base=str(smollm2_model), data=str(data), task="smol", **TRAINING)
    started = time.monotonic()
    snap = TrainingJob(config).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    print(f"SmolLM2 trained {snap['step']} steps in {time.monotonic() - started:.0f} s")
    return Path(snap["adapter_dir"])


@pytest.fixture(scope="module")
def chat(smollm2_model, trained) -> ChatEngine:
    engine = ChatEngine()
    engine.load_base(smollm2_model)
    engine.activate(trained)
    return engine


def test_a_short_training_teaches_the_real_model_facts_its_base_does_not_know(chat, trained) -> None:
    """The evaluation card the training made answered the six questions with the base and with the adapter (its
    batched replies are the replies one by one: the next test): the adapter's answers hold the new facts, the base's
    are fluent and do not. Compare, asked the first question, shows a fluent base answer beside the trained one."""
    from lora_core.evaluation import read_evaluation

    card = read_evaluation(trained)
    rows = {row["output"]: row for row in QUESTIONS}
    assert sorted(r.reference for r in card.rows) == sorted(rows)
    learned, known = [], []
    for result in card.rows:
        row = rows[result.reference]
        learned.append(recall(result.adapter, row))
        known.append(recall(result.base, row))
        assert "\ufffd" not in result.base and len(words(result.base)) >= 3, result.base  # the base's own, not noise
        print(f"{row['instruction']!r}\n  base: {result.base!r}\n  adapter: {result.adapter!r}")
    answers = chat.compare([{"role": "user", "content": QUESTIONS[0]["instruction"]}], GREEDY)
    assert "\ufffd" not in answers["base"] and len(words(answers["base"])) >= 3, answers
    assert recall(answers["adapter"], QUESTIONS[0]) > recall(answers["base"], QUESTIONS[0]), answers
    mean_learned, mean_known = sum(learned) / len(learned), sum(known) / len(known)
    print(f"reference words in the answers: adapter {mean_learned:.2f}, base {mean_known:.2f}")
    assert mean_learned >= LEARNED and mean_known <= BASE_KNOWS


def test_replies_in_batches_are_its_replies_one_by_one(chat) -> None:
    """The evaluation's batched replies (``ChatEngine.answer_all``: prompts of mixed lengths padded on the left;
    ``answer_both``: the base's rows and the adapter's in one batch, each row with its own new-token budget, as the
    card's rows and probe) are SmolLM2's greedy replies one by one, with its chat template's default system prompt,
    Chinese too."""
    from lora_core.evaluation import probe_prompts

    prompts = [p["prompt"] for p in probe_prompts()[::6]] + [row["instruction"] for row in QUESTIONS[:2]]
    conversations = [[{"role": "user", "content": text}] for text in prompts]  # one of them Chinese
    settings = GenerationSettings(max_new_tokens=16)
    replies = chat.answer_all(conversations, settings)
    assert replies == [chat.generate(c, settings) for c in conversations]
    base = [chat.answer_all([c], settings, None)[0] for c in conversations]  # one by one
    assert base != replies
    short = GenerationSettings(max_new_tokens=6)  # the last question's budget in the batch below
    base[-1], replies[-1] = (
        chat.answer_all(conversations[-1:], short, None)[0],
        chat.generate(conversations[-1], short),
    )
    budgets = [16] * (len(conversations) - 1) + [6]
    assert chat.answer_both(conversations, settings, budgets=budgets) == (base, replies)  # one batch, unmerged


def test_merged_and_zipped_and_uploaded_again_it_answers_the_same(chat, trained, smollm2_model, tmp_path) -> None:
    """Three questions answered in one batch each way (the batches are the replies one by one: the test above)."""
    questions = [[{"role": "user", "content": row["instruction"]}] for row in QUESTIONS[:3]]
    expected = chat.answer_all(questions, GREEDY)
    assert len(set(expected)) == 3 and all(len(words(a)) >= 3 for a in expected), expected

    back = bundles.import_adapter_zip(bundles.zip_adapter(trained, tmp_path / "out"), tmp_path / "LoRA")
    chat.activate(back)
    assert chat.answer_all(questions, GREEDY) == expected

    merged = ChatEngine()
    merged.load_base(merge_adapter(trained, tmp_path / "merged", base=smollm2_model))
    answers = merged.answer_all(questions, GREEDY, None)
    print("merged:", answers, "\nadapter:", expected)
    assert answers == expected


def test_the_card_after_training_and_the_base_answers_the_general_prompts_sensibly(trained) -> None:
    """The training evaluated the adapter itself; the forgetting probe's base answers are a real model's."""
    from lora_core.evaluation import read_evaluation

    card = read_evaluation(trained)
    assert card is not None and card.rows_kind == "trained" and len(card.rows) == TRAINING["eval_rows"]
    print(f"card: base {card.base}\n      adapter {card.tuned}\n      probe changed {card.probe_changed} of "
          f"{len(card.probe)}, mean similarity {card.probe_similarity:.2f}")  # fmt: skip
    for p in card.probe:
        print(f"  {p.prompt!r}\n    base: {p.base!r}\n    adapter: {p.adapter!r}  ({p.similarity:.2f})")
    assert card.tuned["rouge_l"] > card.base["rouge_l"] and card.tuned["eval_loss"] < card.base["eval_loss"]
    english = [p for p in card.probe if p.lang == "en"]
    assert sum(p.base_right for p in english) >= 5, [p.base for p in english]  # arithmetic, capitals, counts
    # its Chinese is too weak to answer these (a larger model does); they are answered, not scored here
    assert all("\ufffd" not in p.base and len(words(p.base)) >= 1 for p in card.probe)
