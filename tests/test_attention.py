"""The attention's CPU training paths, on SmolLM2's attention shapes (9 query heads, 3 key/value heads of 64):
grouped key/value heads passed to torch as they are (lora_core/grouped_attention.py) and the rotary embedding in
one autograd step (lora_core/rotary.py) give the same loss and gradients as transformers' own on a padded batch
(an attention mask, where transformers repeats the heads); replies and evaluations keep transformers' own."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from lora_core import grouped_attention, rotary


@pytest.fixture()
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=576, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                         attn_implementation="sdpa")  # fmt: skip
    return LlamaForCausalLM(config).double()


@pytest.fixture()
def batch():
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (3, 24))
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0  # padded rows: transformers then builds an attention mask
    mask[2, 9:] = 0
    return ids, mask


@pytest.fixture()
def seen(monkeypatch):
    """What each call of torch's SDPA was given: (query heads, key heads, enable_gqa)."""
    calls = []
    sdpa = functional.scaled_dot_product_attention

    def spy(query, key, value, *args, **kwargs):
        calls.append((query.shape[1], key.shape[1], kwargs.get("enable_gqa", False)))
        return sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(functional, "scaled_dot_product_attention", spy)
    transformers_own(monkeypatch)
    return calls


def transformers_own(monkeypatch) -> None:
    """Transformers' own grouped-heads choice and rotary functions for the test (put back after)."""
    import importlib

    from transformers.integrations import sdpa_attention

    own = sdpa_attention.use_gqa_in_sdpa  # transformers' own, unless a training in this process replaced it
    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", getattr(own, "__wrapped__", own))
    for name in rotary.MODEL_TYPES:
        module = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        own = module.apply_rotary_pos_emb
        monkeypatch.setattr(module, "apply_rotary_pos_emb", getattr(own, "__wrapped__", own))


@pytest.fixture()
def rotations(monkeypatch):
    """How many times our rotary step ran (transformers' own functions at the test's start)."""
    transformers_own(monkeypatch)
    calls = []
    apply = rotary.RotaryEmbedding.apply
    monkeypatch.setattr(rotary.RotaryEmbedding, "apply", lambda *args: calls.append(1) or apply(*args))
    return calls


def loss_and_grads(model, ids, mask):
    model.zero_grad()
    labels = ids.masked_fill(mask == 0, -100)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_a_training_step_on_cpu_gives_torch_the_grouped_heads_and_the_same_gradients(model, batch, seen):
    repeated = loss_and_grads(model, *batch)
    assert seen and all(call == (9, 9, False) for call in seen)  # transformers repeats the 3 heads for the 9
    seen.clear()
    assert grouped_attention.use_grouped_kv_on_cpu() and grouped_attention.use_grouped_kv_on_cpu()  # once
    grouped = loss_and_grads(model, *batch)
    assert seen and all(call == (9, 3, True) for call in seen)
    assert torch.allclose(grouped[0], repeated[0], rtol=0, atol=1e-12)
    for name, grad in repeated[1].items():
        assert torch.allclose(grouped[1][name], grad, rtol=0, atol=1e-10), name


def test_the_rotary_embedding_in_one_step_equals_transformers_and_its_gradient_is_exact(model, batch, rotations):
    from transformers.models.llama.modeling_llama import rotate_half

    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    cos, sin = torch.randn(2, 1, 5, 8, dtype=torch.float64), torch.randn(2, 1, 5, 8, dtype=torch.float64)
    assert torch.allclose(rotary.RotaryEmbedding.apply(x, cos, sin), x * cos + rotate_half(x) * sin, atol=1e-14)
    assert torch.autograd.gradcheck(lambda t: rotary.RotaryEmbedding.apply(t, cos, sin), (x,))
    rotations.clear()

    own = loss_and_grads(model, *batch)
    assert not rotations  # transformers' own so far
    assert "llama" in rotary.use_fused_rotary_on_cpu() and "llama" in rotary.use_fused_rotary_on_cpu()  # once
    fused = loss_and_grads(model, *batch)
    assert len(rotations) == 2 * 2  # q and k of both layers
    assert torch.allclose(fused[0], own[0], rtol=0, atol=1e-12)
    for name, grad in own[1].items():
        assert torch.allclose(fused[1][name], grad, rtol=0, atol=1e-10), name
    rotations.clear()
    with torch.no_grad():
        model(input_ids=batch[0], attention_mask=batch[1])
    assert not rotations  # a reply's or an evaluation's forward: transformers' own


def test_without_gradients_transformers_keeps_its_own_choice(model, batch, seen):
    grouped_attention.use_grouped_kv_on_cpu()
    with torch.no_grad():
        model(input_ids=batch[0], attention_mask=batch[1])
    assert seen and all(call == (9, 9, False) for call in seen)  # a reply's or an evaluation's forward
    seen.clear()
    with torch.no_grad():
        model(input_ids=batch[0])  # no mask: transformers' own grouped path
    assert seen and all(call == (9, 3, True) for call in seen)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's paths: a GPU training keeps transformers' own")
def test_a_cpu_training_installs_both_and_its_model_types_rotary_only(demo_model, tmp_path, monkeypatch):
    from transformers.integrations import sdpa_attention
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2

    from lora_core.demo import SAMPLE_DATASET
    from lora_core.training import State, TrainConfig, TrainingJob

    transformers_own(monkeypatch)
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))
    config = TrainConfig(base=str(demo_model), data=str(SAMPLE_DATASET), task="paths", max_steps=1, samples=0,
                         eval_rows=0)  # fmt: skip
    assert TrainingJob(config).run()["state"] == State.COMPLETED
    assert getattr(sdpa_attention.use_gqa_in_sdpa, "simple_lora", False)
    assert getattr(modeling_llama.apply_rotary_pos_emb, "simple_lora", False)  # the demo model is a Llama
    assert not getattr(modeling_qwen2.apply_rotary_pos_emb, "simple_lora", False)  # no Qwen2 trained here
