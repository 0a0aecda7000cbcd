"""Grouped key/value heads passed to torch as they are in a CPU training step (lora_core/grouped_attention.py), on
SmolLM2's attention shapes (9 query heads, 3 key/value heads of 64): the same loss and gradients as transformers'
repeated heads, on a padded batch (an attention mask, where transformers repeats them)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from lora_core import grouped_attention


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
    from transformers.integrations import sdpa_attention

    own = sdpa_attention.use_gqa_in_sdpa  # transformers' own, unless a training in this process replaced it
    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", getattr(own, "__wrapped__", own))  # put back after
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


def test_without_gradients_transformers_keeps_its_own_choice(model, batch, seen):
    grouped_attention.use_grouped_kv_on_cpu()
    with torch.no_grad():
        model(input_ids=batch[0], attention_mask=batch[1])
    assert seen and all(call == (9, 9, False) for call in seen)  # a reply's or an evaluation's forward
    seen.clear()
    with torch.no_grad():
        model(input_ids=batch[0])  # no mask: transformers' own grouped path
    assert seen and all(call == (9, 3, True) for call in seen)
