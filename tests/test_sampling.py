"""Samples during training: which rows, at which steps, within which share of the run's time."""

from __future__ import annotations

import pytest
import torch

from lora_core import sampling
from lora_core.config import TrainConfig
from lora_core.data import Message, Record
from lora_core.errors import TrainingError
from lora_core.sampling import Sampler, choose, parse_rows, sample_steps


def record(row: int) -> Record:
    return Record(row, (Message("user", f"question {row}"), Message("assistant", f"answer {row}")))


def test_sample_rows_are_up_to_three_row_numbers() -> None:
    assert parse_rows("") == [] and parse_rows("  ") == []
    assert parse_rows("3, 7") == [3, 7] and parse_rows("7,3,7") == [7, 3]
    for bad in ("0", "1,2,3,4", "a", "1;2", "-1", "1,,2", "1" * 100, "<b>1</b>", "1.5"):
        with pytest.raises(TrainingError) as err:
            parse_rows(bad)
        assert err.value.code == "bad_sample_rows"
    with pytest.raises(TrainingError):  # the settings refuse them too, before any work
        TrainConfig(base="b", data="d", task="t", sample_rows="1,2,3,4").check()


def test_the_default_row_is_the_first_held_out_one_else_the_first_trained_one() -> None:
    records = [record(i) for i in range(1, 11)]
    assert [r.row for r in choose(records, [5, 2, 9], [7, 4], "", "f.json")] == [4]
    assert [r.row for r in choose(records, [5, 2, 9], [], "", "f.json")] == [2]
    assert [r.row for r in choose(records, [5, 2, 9], [7, 4], "9, 7", "f.json")] == [9, 7]
    with pytest.raises(TrainingError) as err:  # a row that is not trained or held out (invalid, too long...)
        choose(records, [5, 2, 9], [7, 4], "3", "f.json")
    assert err.value.code == "sample_row_missing" and "f.json" in err.value.message and "3" in err.value.message


def test_samples_are_spread_over_the_run_and_the_last_is_its_end() -> None:
    assert sample_steps(100, 5) == [20, 40, 60, 80, 100]
    assert sample_steps(8, 5) == [2, 3, 5, 6, 8]
    assert sample_steps(3, 5) == [1, 2, 3]  # fewer steps than samples: every step once
    assert sample_steps(10, 0) == [] and sample_steps(0, 5) == []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_samples_stay_within_their_share_of_the_training_time(monkeypatch) -> None:
    from tests.tiny import word_tokenizer

    clock = Clock()
    monkeypatch.setattr(sampling.time, "monotonic", clock)
    sampler = Sampler(word_tokenizer(), [record(1)], times=5)
    sampler.begin(100)  # samples at steps 20, 40, 60, 80, 100
    clock.now = 20.0
    assert sampler.due(20) and not sampler.due(21)  # the first one measures what a sample costs
    sampler.cost = sampler.spent = 1.0
    # at step 40, 40 s of training: 100 s projected, 2 s allowed; one more now and the last one would make 3 s
    clock.now = 41.0
    assert not sampler.due(40) and sampler.skipped == 1
    clock.now = 101.0
    assert sampler.due(100)  # the last one fits: 2 s of 100 (and is taken anyway: the answers at the run's end)
    sampler.spent = 50.0
    assert sampler.due(100) and not sampler.due(60)
    sampler.spent = 1.0
    # a run twice as long per step affords the middle ones too: 200 s projected, 4 s allowed
    clock.now = 81.0
    assert sampler.due(40)
    # on a run of seconds, samples under a second in all are never skipped
    sampler.cost = sampler.spent = 0.3
    clock.now = 0.3 + 0.5
    assert sampler.due(60)


def test_answers_are_cut_a_little_past_the_longest_reference() -> None:
    from tests.tiny import word_tokenizer

    sampler = Sampler(word_tokenizer(), [record(1)], times=5)
    assert sampler.max_new_tokens == sampling.ANSWER_MARGIN + 2  # "answer 1": two words


class Timed(torch.nn.Module):
    """A model whose forward pass takes ``step_s`` seconds on ``clock``, the first one ten times that (warming
    up)."""

    def __init__(self, clock: Clock, step_s: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.clock, self.step_s, self.calls = clock, step_s, 0

    def forward(self, input_ids):
        self.clock.now += self.step_s * (10 if self.calls == 0 else 1)
        self.calls += 1


def test_before_the_first_sample_its_cost_is_estimated_from_one_forward_pass(monkeypatch) -> None:
    from tests.tiny import word_tokenizer

    clock = Clock()
    monkeypatch.setattr(sampling.time, "monotonic", clock)
    for step_s, taken in ((0.2, False), (0.001, True)):
        sampler = Sampler(word_tokenizer(), [record(1)], times=5)
        sampler.begin(100)  # samples at steps 20, 40, 60, 80, 100
        clock.now = 20.0  # 20 s for 20 steps: 100 s projected, 2 s allowed
        model = Timed(clock, step_s).train()
        # 0.2 s a decoding step: this sample and the last one would take about 2 × 0.2 × (new tokens + 1) s
        assert sampler.due(20, model) is taken and model.calls == 2 and model.training
        assert sampler.cost == pytest.approx(step_s * (sampler.max_new_tokens + 1))
        assert sampler.skipped == (0 if taken else 1)
        clock.now = 101.0
        assert sampler.due(100, model) and model.calls == 2  # the last one is taken, and nothing more estimated


def test_a_sample_answers_with_the_adapter_merged_and_puts_the_base_back_exactly(monkeypatch) -> None:
    from lora_core import chat
    from tests.tiny import tiny_peft_model, word_tokenizer

    model = tiny_peft_model(layers=2).train()
    tokenizer = word_tokenizer()
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    model.eval()
    unmerged = chat.generate(model, tokenizer, [{"role": "user", "content": "question 1"}],
                             chat.GenerationSettings(max_new_tokens=10))  # fmt: skip
    model.train()
    seen = []
    generate = chat.generate

    def spy(model, *args, **kwargs):
        seen.append([m.merged for m in model.modules() if hasattr(m, "merged_adapters")])
        return generate(model, *args, **kwargs)

    monkeypatch.setattr(chat, "generate", spy)
    [sample] = Sampler(tokenizer, [record(1)], times=1).answer(model, 1)
    assert seen and all(seen[0]) and len(seen[0]) == 4  # q and v of two layers, merged while it answered
    assert sample["answer"] == unmerged  # the same greedy answer as PEFT's own (unmerged) forward
    assert model.training and not any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
    for name, param in model.named_parameters():
        if name in base:
            assert torch.equal(param, base[name]), name  # exactly the base weights again
