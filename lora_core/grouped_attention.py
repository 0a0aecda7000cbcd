"""Grouped-query attention without repeated key/value heads, for training on a CPU.

Models with grouped-query attention have fewer key/value heads than query heads (SmolLM2-135M: 3 for 9; the demo
model: 2 for 4). transformers' SDPA attention passes the grouped heads to torch as they are (``enable_gqa``) only
where it knows the kernels handle it: on CUDA only without an attention mask. Otherwise, and so on a CPU whenever a
batch is padded, it first repeats every key/value head for each query head of its group (``repeat_kv``): a full
copy of the keys and values in every layer, and in the backward pass a sum over the copies. Torch's CPU kernels
take the grouped heads themselves: decoder layers of SmolLM2's shapes run forward and backward about 2% faster so
(``bench/attention_paths.py``, ``BENCHMARKS.md``), with the same values up to float rounding
(``tests/test_attention.py``).

``use_grouped_kv_on_cpu`` makes transformers' choice (``use_gqa_in_sdpa``) also answer yes on a CPU when gradients
are being computed, that is in a training step's forward. Grad mode is per thread, so replies and evaluations
(computed without gradients, possibly at the same time in another thread) keep transformers' own choice, whose
one-token decoding path needs no repeated heads either. One process-wide change, made once; transformers' version
is pinned (``requirements.txt``), and without that function nothing is changed.
"""

from __future__ import annotations

from typing import Any

import torch

MAX_HEAD_DIM = 256  # as transformers' own condition for the grouped heads


def use_grouped_kv_on_cpu() -> bool:
    """Install the choice described above; True when it is in place (now or before)."""
    try:
        from transformers.integrations import sdpa_attention
    except ImportError:  # pragma: no cover (transformers is a requirement)
        return False
    original = getattr(sdpa_attention, "use_gqa_in_sdpa", None)
    if original is None:
        return False
    if getattr(original, "simple_lora", False):
        return True

    def use_gqa_in_sdpa(attention_mask: Any, key: torch.Tensor, value: torch.Tensor) -> bool:
        if original(attention_mask, key, value):
            return True
        return (
            key.device.type == "cpu" and torch.is_grad_enabled() and key.shape[-1] == value.shape[-1] <= MAX_HEAD_DIM
        )

    use_gqa_in_sdpa.simple_lora = True  # type: ignore[attr-defined]
    use_gqa_in_sdpa.__wrapped__ = original  # type: ignore[attr-defined]
    sdpa_attention.use_gqa_in_sdpa = use_gqa_in_sdpa
    return True
