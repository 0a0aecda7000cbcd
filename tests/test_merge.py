"""The exact merge (lora_core/merge.py) leans on PEFT internals; these tests pin it to the PEFT version installed."""

from __future__ import annotations

import peft
import pytest
import torch
from tiny import tiny_peft_model

from lora_core.merge import PEFT_VERSIONS, ExactMerge


@pytest.fixture()
def model():
    return tiny_peft_model(layers=2).eval()


def test_the_installed_peft_is_one_the_merge_was_checked_against() -> None:
    assert peft.__version__ in PEFT_VERSIONS, (
        f"PEFT {peft.__version__}: check lora_core/merge.py against it, then add it to PEFT_VERSIONS"
    )


def test_merged_output_equals_peft_s_unmerged_lora_and_unmerge_restores_the_base_exactly(model) -> None:
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    with torch.no_grad():
        lora_out = model(ids).logits  # PEFT's own path: base output + B(A(x)) * scale
        with model.disable_adapter():
            base_out = model(ids).logits
    merge = ExactMerge()
    assert merge.merge(model, "default") and merge.merged == "default"
    with torch.no_grad():
        merged_out = model(ids).logits
    assert torch.allclose(merged_out, lora_out, atol=1e-5) and not torch.allclose(merged_out, base_out)
    merge.unmerge(model)
    assert merge.merged is None
    for name, param in model.named_parameters():  # bit for bit, not base + delta - delta
        if name in base_weights:
            assert torch.equal(param, base_weights[name]), name
    with torch.no_grad():
        assert torch.equal(model(ids).logits, lora_out)


def test_a_layer_that_cannot_be_merged_exactly_leaves_the_model_unmerged(model, monkeypatch) -> None:
    monkeypatch.setattr(model, "is_loaded_in_4bit", True, raising=False)
    merge = ExactMerge()
    assert merge.merge(model, "default") is False and merge.merged is None
