"""The faster training path learns the same thing: the loss computed only at the trained positions equals the
model's own loss (value and gradients), per-example losses do not depend on how examples are batched, and
length-grouped batches cut the padding."""

from __future__ import annotations

import json
import random

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lora_core import trainer, training
from lora_core.masking import IGNORE_INDEX, collate, encode_records, pad_id_of
from lora_core.models import load_tokenizer
from lora_core.trainer import completion_loss
from lora_core.training import State, TrainConfig, TrainingJob


@pytest.fixture(scope="module")
def demo(tmp_path_factory, install_demo):
    folder = tmp_path_factory.mktemp("speed") / "demo"
    install_demo(folder)
    return folder


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Rows whose lengths vary a lot, as real data does."""
    rng = random.Random(0)
    words = ["harbour", "light", "ferry", "keeper", "bay", "tide", "lantern", "gull", "rope", "anchor"]
    rows = [  # lengths skewed like real data: mostly short, a long tail
        {"instruction": " ".join(rng.choices(words, k=min(120, int(rng.lognormvariate(2.5, 0.8))))),
         "output": " ".join(rng.choices(words, k=1 + min(150, int(rng.lognormvariate(2.8, 0.9)))))}
        for _ in range(400)
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("mixed") / "mixed.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def lora_model(folder):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(base, config)
    for name, param in model.named_parameters():  # B starts at zero; give the adapter something to say
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model


def encoded(folder, data, max_length=256):
    from lora_core.data import load_records

    tokenizer = load_tokenizer(folder)
    found, _, _ = encode_records(load_records(data).records, tokenizer, max_length)
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in found], pad_id_of(tokenizer)


@pytest.fixture(scope="module")
def peft_model(demo):
    return lora_model(demo)


@pytest.fixture(scope="module")
def examples(demo, mixed):
    return encoded(demo, mixed)


@pytest.fixture(scope="module")
def real(smollm2_model):
    """SmolLM2-135M-Instruct with a LoRA adapter, and the bundled sample encoded by its own tokenizer and chat
    template (a default system prompt): a 49,152-token vocabulary and an LM head tied to the embeddings."""
    from lora_core.demo import SAMPLE_DATASET

    model = lora_model(smollm2_model)
    causal = model.get_base_model()
    assert causal.config.tie_word_embeddings and causal.config.vocab_size == 49152
    assert causal.lm_head.weight.data_ptr() == causal.model.embed_tokens.weight.data_ptr()  # one tensor
    return model, encoded(smollm2_model, SAMPLE_DATASET, 192)


def test_the_completion_loss_equals_the_models_own_loss_and_gradients(peft_model, examples):
    same_loss_and_gradients(peft_model, *examples)


@pytest.mark.slow
def test_on_the_real_model_the_completion_loss_equals_its_own_loss_and_gradients(real):
    """SmolLM2's tied 49k head: its logits at the prompt are never built, and nothing else changes."""
    model, (features, pad) = real
    same_loss_and_gradients(model, features, pad)


def same_loss_and_gradients(peft_model, features, pad):
    batch = collate(features[:8], pad)
    assert (batch["labels"] == IGNORE_INDEX).any(dim=1).all()  # every example has a prompt that is not trained
    n_items = int((batch["labels"] != IGNORE_INDEX).sum())
    for num_items in (None, n_items):
        peft_model.zero_grad()
        kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
        own = peft_model(**batch, **kwargs).loss
        own.backward()
        own_grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
        peft_model.zero_grad()
        fast = completion_loss(peft_model, batch, num_items)
        fast.backward()
        assert torch.allclose(fast, own, rtol=1e-5, atol=1e-6), (fast, own)
        for name, param in peft_model.named_parameters():
            if param.requires_grad:
                assert torch.allclose(param.grad, own_grads[name], rtol=1e-4, atol=1e-7), name


def per_example_losses(model, features, pad, order, batch_size=8):
    """The loss of each example (by index), computed in batches taken in ``order``."""
    losses = {}
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i in chunk:  # each example's loss from inside its batch: mask the others' labels
                batch = collate([features[j] for j in chunk], pad)
                keep = torch.tensor([j == i for j in chunk])
                batch["labels"][~keep] = IGNORE_INDEX
                losses[i] = float(completion_loss(model, batch))
    return losses


@pytest.mark.slow
def test_per_example_losses_do_not_depend_on_how_examples_are_batched(peft_model, examples):
    same_losses_in_any_batching(peft_model, examples[0][:32], examples[1], 8)


@pytest.mark.slow
def test_on_the_real_model_per_example_losses_do_not_depend_on_how_examples_are_batched(real):
    model, (features, pad) = real
    same_losses_in_any_batching(model, features[::4], pad, 4)  # 12 rows of every kind, Chinese ones too


def same_losses_in_any_batching(model, features, pad, batch_size):
    plain = list(range(len(features)))
    random.Random(1).shuffle(plain)
    grouped = sorted(plain, key=lambda i: len(features[i]["input_ids"]))  # what length grouping does, at most
    assert len({len(f["input_ids"]) for f in features}) > 1  # batches are padded
    alone = per_example_losses(model, features, pad, list(range(len(features))), batch_size=1)
    for order in (plain, grouped):
        batched = per_example_losses(model, features, pad, order, batch_size)
        assert all(abs(batched[i] - alone[i]) < 1e-4 for i in alone), order


@pytest.mark.slow
def test_a_training_pads_little_and_falls_in_loss(demo, mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))
    config = TrainConfig(
        base=str(demo), data=str(mixed), task="grouped", epochs=1, batch_size=8, max_length=256,
        learning_rate=2e-3, dropout=0.0, scheduler="constant", warmup_ratio=0.0,
    )  # fmt: skip
    job = TrainingJob(config)
    job.run()
    snap = job.snapshot()
    assert snap["state"] == State.COMPLETED and snap["step"] == snap["total_steps"] >= 40
    padding = 1 - job._tokens / job._computed_tokens
    # The same examples in random batches of 8 pad a third or more of what they compute (checked below).
    from lora_core.data import load_records

    tokenizer = load_tokenizer(demo)
    encoded, _, _ = encode_records(load_records(mixed).records, tokenizer, 256)
    lengths = [len(e.input_ids) for e in encoded]
    random.Random(0).shuffle(lengths)
    computed = sum(max(lengths[i : i + 8]) * len(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
    random_padding = 1 - sum(lengths) / computed
    assert random_padding > 0.3 and padding < random_padding / 3, (padding, random_padding)
    assert training.active_job() is None


def test_the_length_grouped_order_is_a_permutation_of_similar_length_batches():
    rng = random.Random(3)
    lengths = [min(500, int(rng.lognormvariate(5, 0.6))) for _ in range(157)]  # the last batch is short
    order = trainer.length_grouped_order(lengths, 8, seed=1)
    assert sorted(order) == list(range(157))  # every example once
    assert order != trainer.length_grouped_order(lengths, 8, seed=2)  # a new order each epoch
    assert order == trainer.length_grouped_order(lengths, 8, seed=1)  # and the same for the same seed

    def padding(o):
        batches = [[lengths[i] for i in o[k : k + 8]] for k in range(0, len(o), 8)]
        return 1 - sum(lengths) / sum(max(b) * len(b) for b in batches)

    assert padding(order) < 0.1 < 0.3 < padding(list(range(157)))
