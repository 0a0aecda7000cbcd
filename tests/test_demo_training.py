"""The promise of the demo: default demo settings, a few minutes on 2 CPU cores, answers visibly learned."""

import pytest

from lora_core.chat import ChatEngine, GenerationSettings
from lora_core.demo import sample_rows
from lora_core.training import State


@pytest.mark.slow
def test_demo_adapter_reproduces_the_trained_answers_and_the_base_does_not(demo_training):
    # the session's demo training (tests/conftest.py): the demo settings on the sample, from a fresh demo model
    took, base, adapter = demo_training.took, demo_training.base, str(demo_training.adapter)
    assert demo_training.snap["state"] == State.COMPLETED
    assert took < 180, f"demo training took {took:.0f} s"

    # greedy replies in batches, the base's and the adapter's (the same as one by one: tests/test_inference.py)
    engine = ChatEngine()
    engine.load_base(base)
    engine.activate(adapter)
    rows = sample_rows()
    questions = [row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "") for row in rows]
    plain, tuned = engine.answer_both([[{"role": "user", "content": q}] for q in questions],
                                      GenerationSettings(max_new_tokens=64))  # fmt: skip
    tuned_hits = sum(reply == row["output"] for reply, row in zip(tuned, rows, strict=True))
    plain_hits = sum(reply == row["output"] for reply, row in zip(plain, rows, strict=True))
    print(f"adapter reproduced {tuned_hits} of {len(rows)} answers in {took:.0f} s")
    assert tuned_hits >= 0.8 * len(rows), f"adapter reproduced {tuned_hits} of {len(rows)} answers"
    assert plain_hits == 0
