"""The promise of the demo: default demo settings, a few minutes on 2 CPU cores, answers visibly learned."""

import pytest

from lora_core.chat import GenerationSettings, generate, load_model, prompt_format_of, tokenizer_for
from lora_core.demo import sample_rows
from lora_core.training import State


@pytest.mark.slow
def test_demo_adapter_reproduces_the_trained_answers_and_the_base_does_not(demo_training):
    # the session's demo training (tests/conftest.py): the demo settings on the sample, from a fresh demo model
    took, base, adapter = demo_training.took, demo_training.base, str(demo_training.adapter)
    assert demo_training.snap["state"] == State.COMPLETED
    assert took < 180, f"demo training took {took:.0f} s"

    tokenizer = tokenizer_for(base, adapter)
    tuned, plain = load_model(base, adapter), load_model(base)
    settings = GenerationSettings(max_new_tokens=64)
    style = prompt_format_of(adapter)
    tuned_hits = plain_hits = 0
    rows = sample_rows()
    for row in rows:
        question = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        messages = [{"role": "user", "content": question}]
        tuned_hits += generate(tuned, tokenizer, messages, settings, style) == row["output"]
        plain_hits += generate(plain, tokenizer, messages, settings) == row["output"]
    print(f"adapter reproduced {tuned_hits} of {len(rows)} answers in {took:.0f} s")
    assert tuned_hits >= 0.8 * len(rows), f"adapter reproduced {tuned_hits} of {len(rows)} answers"
    assert plain_hits == 0
