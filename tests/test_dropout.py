"""SparseDropout drops like nn.Dropout: each element independently with probability p, the rest scaled by
1 / (1 - p), at every position including the last; gradients follow the mask; a LoRA model's loss has the same
expectation with either; a CPU training uses it and saves the same adapter files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from lora_core import dropout as sparse
from lora_core import models
from lora_core.dropout import SparseDropout, dropped_positions, use_sparse_dropout
from lora_core.training import State, TrainConfig, TrainingJob


@pytest.mark.parametrize("p", [0.05, 0.1, 0.25])
def test_drops_each_element_independently_with_probability_p(p):
    torch.manual_seed(0)
    n = 2_000_000
    x = torch.ones(n)
    y = SparseDropout(p).train()(x)
    dropped = y == 0
    # Kept elements are scaled exactly as nn.Dropout scales them.
    assert torch.equal(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - p)))
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(float(dropped.float().mean()) - p) < 5 * sd
    # Neighbours are independent: both dropped with probability p squared.
    both = float((dropped[1:] & dropped[:-1]).float().mean())
    assert abs(both - p * p) < 5 * math.sqrt(p * p / n) + 1e-5, both
    # Drops per window of 64 follow Binomial(64, p): no clumping, no spreading out.
    counts = torch.bincount(dropped.view(-1, 64).sum(1), minlength=65).double() / (n // 64)
    binomial = torch.tensor([math.comb(64, k) * p**k * (1 - p) ** (64 - k) for k in range(65)], dtype=torch.float64)
    assert 0.5 * float((counts - binomial).abs().sum()) < 0.01


def test_every_position_is_dropped_equally_often_even_at_the_ends():
    torch.manual_seed(1)
    n, p, trials = 12, 0.1, 30_000
    hits = torch.zeros(n)
    for _ in range(trials):
        hits[dropped_positions(n, p)] += 1
    freq = hits / trials
    assert float((freq - p).abs().max()) < 5 * math.sqrt(p * (1 - p) / trials), freq


def test_positions_are_sorted_unique_and_in_range_also_when_more_gaps_are_needed():
    torch.manual_seed(2)
    pos = dropped_positions(100_000, 0.05)
    assert pos.dtype == torch.int64 and bool((pos[1:] > pos[:-1]).all())
    assert int(pos[0]) >= 0 and int(pos[-1]) < 100_000
    # Gaps drawn a few at a time: each draw goes on where the last stopped, same distribution.
    torch.manual_seed(3)
    pos = dropped_positions(100_000, 0.05, draw=64)
    assert bool((pos[1:] > pos[:-1]).all()) and int(pos[-1]) < 100_000
    assert abs(len(pos) / 100_000 - 0.05) < 5 * math.sqrt(0.05 * 0.95 / 100_000)
    hits = torch.zeros(12)
    for _ in range(20_000):
        hits[dropped_positions(12, 0.1, draw=1)] += 1
    assert float((hits / 20_000 - 0.1).abs().max()) < 5 * math.sqrt(0.1 * 0.9 / 20_000)


def test_gradient_is_the_mask_times_the_scale_and_eval_is_identity():
    torch.manual_seed(4)
    x = torch.randn(4, 33, 16, requires_grad=True)
    layer = SparseDropout(0.2).train()
    y = layer(x)
    (y * 3).sum().backward()
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.8)
    assert torch.allclose(x.grad, kept.float() * 3 / 0.8)
    layer.eval()
    assert layer(x) is x
    assert SparseDropout(0.0).train()(x) is x
    # Non-contiguous input (a transposed view) is dropped like any other.
    t = x.detach().transpose(0, 2)
    out = SparseDropout(0.2).train()(t)
    assert out.shape == t.shape and torch.allclose(out[out != 0], t[out != 0] / 0.8)
    assert 0.1 < float((out == 0).float().mean()) < 0.3  # and some were dropped
    with pytest.raises(ValueError):
        SparseDropout(1.0)


def test_the_same_seed_draws_the_same_mask():
    x = torch.ones(1000)
    torch.manual_seed(5)
    a = SparseDropout(0.05).train()(x)
    torch.manual_seed(5)
    b = SparseDropout(0.05).train()(x)
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, install_demo):
    folder = tmp_path_factory.mktemp("dropout") / "demo"
    install_demo(folder)
    return folder


def lora_model(demo, p):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(demo, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=p, target_modules=["q_proj", "v_proj"]))
    for name, param in model.named_parameters():  # B starts at zero, where dropout changes nothing
        if "lora_B" in name:
            nn.init.normal_(param, std=0.5)
    return model


@pytest.mark.slow
def test_a_lora_models_loss_has_the_same_mean_and_spread_with_either_dropout(demo):
    model = lora_model(demo, 0.25)
    n_layers = model.get_base_model().config.num_hidden_layers
    batch = {"input_ids": torch.randint(5, 200, (4, 24))}
    batch["labels"] = batch["input_ids"].clone()
    model.train()

    def losses(draws):
        with torch.no_grad():
            return torch.tensor([float(model(**batch).loss) for _ in range(draws)])

    torch.manual_seed(6)
    plain = losses(150)
    assert use_sparse_dropout(model) == 2 * n_layers  # q and v of every layer
    assert all(isinstance(m, SparseDropout) for m in model.modules() if isinstance(m, (nn.Dropout, SparseDropout)))
    fast = losses(150)
    assert plain.std() > 0 and fast.std() > 0  # dropout does change the loss here
    se = math.sqrt(plain.var() / 150 + fast.var() / 150)
    assert abs(float(plain.mean() - fast.mean())) < 4 * se, (plain.mean(), fast.mean(), se)
    assert 0.7 < float(fast.std() / plain.std()) < 1.4
    model.eval()  # no dropout at all in eval
    with torch.no_grad():
        assert float(model(**batch).loss) == float(model(**batch).loss)


def test_large_p_keeps_nn_dropout():
    layer = nn.Module()
    layer.lora_dropout = nn.ModuleDict({"default": nn.Dropout(0.5), "other": nn.Dropout(0.1), "none": nn.Identity()})
    assert use_sparse_dropout(layer) == 1
    kinds = {name: type(m) for name, m in layer.lora_dropout.items()}
    assert kinds == {"default": nn.Dropout, "other": SparseDropout, "none": nn.Identity}


@pytest.mark.slow
def test_a_cpu_training_uses_it_and_saves_a_plain_adapter(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))
    swapped = []
    real = sparse.use_sparse_dropout
    monkeypatch.setattr(sparse, "use_sparse_dropout", lambda model: swapped.append(real(model)) or swapped[-1])
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": f"q{i}", "output": f"a{i} a{i}"} for i in range(8)]), encoding="utf-8")
    job = TrainingJob(TrainConfig(base=str(demo), data=str(data), task="drop", max_steps=2, batch_size=4, samples=0,
                                  eval_rows=0))  # fmt: skip
    job.run()
    snap = job.snapshot()
    assert snap["state"] == State.COMPLETED, snap
    on_cpu = models.device_kind() != "cuda"  # CUDA keeps nn.Dropout, cheap there
    assert (bool(swapped) and swapped[0] > 0) is on_cpu
    from safetensors.torch import load_file

    adapter = job.snapshot()["adapter_dir"]
    weights = load_file(f"{adapter}/adapter_model.safetensors")
    assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)
    assert json.loads(Path(adapter, "adapter_config.json").read_text())["lora_dropout"] == 0.05
