"""The faster training path learns the same thing: the loss computed only at the trained positions equals the
model's own loss (value and gradients), per-example losses do not depend on how examples are batched, and
length-grouped batches cut the padding."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
import torch.nn.functional as F
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


def lora_model(folder, **changes):
    """The model at ``folder`` (its config changed by ``changes``), with LoRA on the attention's projections."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **changes)
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
    template (a default system prompt): a 49,152-token vocabulary and an LM head tied to the embeddings. Its first
    4 of 30 layers: the shapes, the head and the tokens these tests are about are the same, the tests 4x faster
    (the whole model trains in tests/test_real_model.py)."""
    from lora_core.demo import SAMPLE_DATASET

    model = lora_model(smollm2_model, num_hidden_layers=4)
    causal = model.get_base_model()
    assert causal.config.tie_word_embeddings and causal.config.vocab_size == 49152 and len(causal.model.layers) == 4
    assert causal.lm_head.weight.data_ptr() == causal.model.embed_tokens.weight.data_ptr()  # one tensor
    return model, encoded(smollm2_model, SAMPLE_DATASET, 192)


def test_the_completion_loss_equals_the_models_own_loss_and_gradients(peft_model, examples):
    same_loss_and_gradients(peft_model, *examples)


@pytest.mark.slow
def test_on_the_real_model_the_completion_loss_equals_its_own_loss_and_gradients(real):
    """SmolLM2's tied 49k head: its logits at the prompt are never built, and nothing else changes."""
    model, (features, pad) = real
    same_loss_and_gradients(model, features[::8][:4], pad)  # 4 rows of every kind (an input, Chinese)


def same_loss_and_gradients(peft_model, features, pad):
    """``completion_loss`` (its own cross-entropy over the LM head, ``trainer.HeadCrossEntropy``) against the
    model's own loss: equal up to float32 rounding, and in float64 to 1e-6 (Llama's norms compute in float32
    even then)."""
    batch = collate(features[:8], pad)
    assert (batch["labels"] == IGNORE_INDEX).any(dim=1).all()  # every example has a prompt that is not trained
    n_items = int((batch["labels"] != IGNORE_INDEX).sum())
    precise = copy.deepcopy(peft_model).double()
    for model, tolerance in ((peft_model, 1e-4), (precise, 1e-6)):
        for num_items in (None, n_items) if model is peft_model else (n_items,):
            model.zero_grad()
            if model is precise:  # the model's own loss casts the logits to float32: here it is written out
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                own = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                      ignore_index=IGNORE_INDEX, reduction="sum") / n_items  # fmt: skip
            else:
                own = model(**batch, **({} if num_items is None else {"num_items_in_batch": num_items})).loss
            own.backward()
            own_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
            model.zero_grad()
            fast = completion_loss(model, batch, num_items)
            fast.backward()
            assert torch.allclose(fast, own, rtol=tolerance / 10, atol=0), (fast, own)
            for name, param in model.named_parameters():
                if param.requires_grad:  # each gradient as a whole: its size near zero is all rounding
                    error = float((param.grad - own_grads[name]).norm() / own_grads[name].norm())
                    assert error < tolerance * 10 if model is peft_model else error < tolerance, (name, error)


def same_step_in_pieces(model, features, pad, tmp_path):
    """A training step computed in pieces (``trainer.piece_inputs``) gives the whole batch's loss and gradients."""
    from transformers import TrainingArguments

    batch = collate(features[:8], pad)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 2  # pieces are cut to their own longest row
    n_items = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    step = trainer.SimpleTrainer(model=model, args=args)
    budget = 3 * max(lengths)
    parts = trainer.piece_inputs(batch, budget)
    assert parts is not None and len(parts) >= 2
    assert sorted(int(n) for p in parts for n in p["attention_mask"].sum(1)) == sorted(lengths)  # every row once
    assert all(p["input_ids"].numel() <= budget and p["attention_mask"][0, -1] == 1 for p in parts)
    assert trainer.computed_tokens(lengths, max(lengths), budget) == sum(p["input_ids"].numel() for p in parts)
    assert trainer.computed_tokens(lengths, max(lengths), budget) < batch["input_ids"].numel()
    results = {}
    for pieces in (0, budget):
        step.piece_tokens = pieces
        model.zero_grad()
        loss = step.training_step(model, {k: v.clone() for k, v in batch.items()}, torch.tensor(n_items))
        results[pieces] = loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    (whole, whole_grads), (cut, cut_grads) = results[0], results[budget]
    assert torch.allclose(whole, cut, rtol=1e-5, atol=1e-6), (whole, cut)
    assert any(float(g.abs().max()) > 0 for g in whole_grads.values())
    for name, grad in whole_grads.items():
        assert torch.allclose(cut_grads[name], grad, rtol=1e-4, atol=1e-7), name


BOTH_MODELS = pytest.mark.parametrize("which", ["demo", pytest.param("real", marks=pytest.mark.slow)])


def model_and_rows(which, request):
    """The demo model and its mixed rows, or SmolLM2 and the first 4 of every eighth row of the sample (rows of
    every kind: one with an input, a Chinese one)."""
    if which == "demo":
        return request.getfixturevalue("peft_model"), *request.getfixturevalue("examples")
    model, (features, pad) = request.getfixturevalue("real")
    return model, features[::8][:4], pad


@BOTH_MODELS
def test_a_batch_computed_in_pieces_trains_as_the_whole_batch(which, request, tmp_path):
    same_step_in_pieces(*model_and_rows(which, request), tmp_path)


def same_step_fused(peft_model, features, pad, monkeypatch):
    """The fused LoRA branch (``fused_lora``) against PEFT's own forward with the same dropout (``SparseDropout``
    with the same random state drops the same positions): equal loss and gradients in training, equal logits in
    eval mode and with the adapter disabled (which goes to PEFT's forward)."""
    from peft.tuners.lora import Linear

    from lora_core import fused_lora
    from lora_core.dropout import SparseDropout

    plain = copy.deepcopy(peft_model)
    for module in plain.modules():
        if isinstance(getattr(module, "lora_dropout", None), torch.nn.ModuleDict):
            for name in module.lora_dropout:
                module.lora_dropout[name] = SparseDropout(0.05)
    fused = copy.deepcopy(plain)
    layers = sum(type(m) is Linear for m in fused.modules())
    assert fused_lora.use_fused_lora(fused) == layers > 0
    assert fused_lora.use_fused_lora(fused) == 0  # routed once
    calls = []
    apply = fused_lora.LoraBranch.apply
    monkeypatch.setattr(fused_lora.LoraBranch, "apply", lambda *a: calls.append(1) or apply(*a))
    batch = collate(features[:8], pad)
    results = []
    for model in (plain, fused):
        model.train()
        model.zero_grad()
        torch.manual_seed(3)
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert len(calls) == layers  # every LoRA layer went through the fused branch
    (loss, grads), (fused_loss, fused_grads) = results
    assert torch.allclose(fused_loss, loss, rtol=1e-5, atol=0), (fused_loss, loss)
    for name, grad in grads.items():
        assert float(grad.norm()) > 0, name
        error = float((fused_grads[name] - grad).norm() / grad.norm())
        assert error < 1e-4, (name, error)
    with torch.no_grad():
        torch.manual_seed(4)
        other = fused(**batch).loss  # another draw of the dropout: the masks really are applied
        assert abs(float(other) - float(fused_loss)) > 1e-6
        plain.eval(), fused.eval()
        calls.clear()
        eval_logits = fused(**batch).logits
        assert len(calls) == layers
        assert torch.allclose(eval_logits, plain(**batch).logits, rtol=1e-4, atol=1e-5)
        assert abs(float(fused(**batch).loss) - float(fused_loss)) > 1e-6  # no dropout in eval mode
        calls.clear()
        with fused.disable_adapter(), plain.disable_adapter():
            assert torch.equal(fused(**batch).logits, plain(**batch).logits)
        assert not calls


@BOTH_MODELS
def test_the_fused_lora_branch_trains_as_pefts_own_forward(which, request, monkeypatch):
    same_step_fused(*model_and_rows(which, request), monkeypatch)


def test_pieces_hold_every_row_once_within_the_budget_longest_first():
    rng = random.Random(5)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 16))]
        budget = rng.randint(1, 2000)
        cut = trainer.pieces(lengths, budget)
        assert sorted(i for rows in cut for i in rows) == list(range(len(lengths)))
        flat = [lengths[i] for rows in cut for i in rows]
        assert flat == sorted(lengths, reverse=True)
        for rows in cut:
            assert len(rows) == 1 or len(rows) * lengths[rows[0]] <= budget
        for a in cut[:-1]:  # a piece ends only when the next row would not fit
            assert (len(a) + 1) * lengths[a[0]] > budget


def test_only_right_padded_batches_of_rows_are_cut():
    batch = collate([{"input_ids": [1] * n, "labels": [2] * n} for n in (9, 7, 5, 3)], 0)
    assert trainer.piece_inputs(batch, 0) is None and trainer.piece_inputs(batch, 36) is None  # fits in one
    assert [p["input_ids"].shape for p in trainer.piece_inputs(batch, 18)] == [(2, 9), (2, 5)]
    left = {k: v.flip(1) for k, v in batch.items()}
    assert trainer.piece_inputs(left, 18) is None
    assert trainer.piece_inputs({**batch, "position_ids": batch["attention_mask"]}, 18) is None


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
    same_losses_in_any_batching(model, features[::8], pad, 4)  # 6 rows of every kind, Chinese ones too


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
    rows = json.loads(mixed.read_text(encoding="utf-8"))[:240]  # about 30 batches of 8, the lengths as varied
    data = tmp_path / "mixed_240.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    # no samples or evaluation card: this test is about the batches
    config = TrainConfig(
        base=str(demo), data=str(data), task="grouped", epochs=1, batch_size=8, max_length=256,
        learning_rate=2e-3, dropout=0.0, scheduler="constant", warmup_ratio=0.0, samples=0, eval_rows=0,
    )  # fmt: skip
    job = TrainingJob(config)
    job.run()
    snap = job.snapshot()
    assert snap["state"] == State.COMPLETED and snap["step"] == snap["total_steps"] >= 25
    losses = [loss for _, loss in snap["loss"]]
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10]), losses  # length-grouped batches in a random order learn
    padding = 1 - job._tokens / job._computed_tokens
    # The same examples in random batches of 8 pad a third or more of what they compute (checked below).
    from lora_core.data import load_records

    tokenizer = load_tokenizer(demo)
    encoded, _, _ = encode_records(load_records(data).records, tokenizer, 256)
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


def test_on_a_cpu_the_memory_estimate_counts_one_piece_of_a_batch(monkeypatch):
    from lora_core.config import activation_tokens

    assert activation_tokens(8, 512, "cuda") == 4096  # a GPU computes whole batches
    monkeypatch.setenv("SIMPLE_LORA_PIECE_TOKENS", "1024")
    assert activation_tokens(8, 512, "cpu") == 1024 and activation_tokens(1, 512, "cpu") == 512
    assert activation_tokens(4, 4096, "cpu") == 4096  # a row longer than a piece is a piece of its own
    monkeypatch.setenv("SIMPLE_LORA_PIECE_TOKENS", "0")
    assert activation_tokens(8, 512, "cpu") == 4096
    monkeypatch.setenv("SIMPLE_LORA_PIECE_TOKENS", "lots")  # not a number: the default
    assert activation_tokens(8, 512, "cpu") == min(4096, max(512, trainer.CPU_PIECE_TOKENS))


def test_the_flop_count_in_the_trainers_logs_is_transformers_own(tmp_path):
    """``SimpleTrainer`` counts the model's weights once per run instead of at every step; the count it logs is
    the one transformers' ``Trainer`` gives."""
    from tiny import tiny_peft_model
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    simple = trainer.SimpleTrainer(model=tiny_peft_model(layers=2), args=args)
    for shape in ((2, 7), (3, 5), (1, 1)):
        inputs = {"input_ids": torch.ones(shape, dtype=torch.long)}
        assert simple.floating_point_ops(inputs) == Trainer.floating_point_ops(simple, inputs) > 0
    assert simple.floating_point_ops({"labels": torch.ones(2, 3)}) == Trainer.floating_point_ops(simple, {}) == 0


def test_a_resumed_optimizer_keeps_its_fused_kernel(tmp_path):
    """A checkpoint of the unfused AdamW (Simple LoRA's before 2026-12-01) brings its moments, not its options:
    the fused optimizer stays fused, and steps."""
    from tiny import tiny_peft_model
    from transformers import TrainingArguments

    def optimizer_of(optim: str):
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", optim=optim)
        return trainer.SimpleTrainer(model=model, args=args).create_optimizer()

    model = tiny_peft_model(layers=1)
    for p in model.parameters():
        p.grad = torch.randn_like(p) if p.requires_grad else None
    old = optimizer_of("adamw_torch")
    old.step()
    plain = torch.optim.AdamW([{"params": g["params"]} for g in old.param_groups], lr=1e-3, fused=True)
    plain.load_state_dict(old.state_dict())
    assert not plain.param_groups[0]["fused"]  # what torch does alone

    optimizer = optimizer_of("adamw_torch_fused")
    optimizer.load_state_dict(old.state_dict())
    group = optimizer.param_groups[0]
    assert group["fused"] is True and not group["foreach"] and group["lr"] == old.param_groups[0]["lr"]
    assert optimizer.state_dict()["state"][0]["step"] == 1  # the moments came with it
    optimizer.step()
    assert optimizer.state_dict()["state"][0]["step"] == 2
