"""The rotary position embedding in one autograd step, for training on a CPU.

transformers applies it as ``q * cos + rotate_half(q) * sin`` (and the same for k), where ``rotate_half`` builds
``cat(-x2, x1)`` from the two halves of each head: five full-size tensors for each of q and k in every layer (the
negated half, the concatenation, two products, their sum), and in the backward pass the gradients of each, the
slices' gradients as zero-filled copies. ``RotaryEmbedding`` computes the same values with one product and two
in-place multiply-adds on the halves (``addcmul_``), and its backward the same way; cos and sin are all it keeps.
Decoder layers of SmolLM2's shapes run forward and backward about 4% faster so (``bench/attention_paths.py``,
``BENCHMARKS.md``), with equal values up to float rounding (``tests/test_attention.py``).

``use_fused_rotary_on_cpu`` routes the models whose ``apply_rotary_pos_emb`` is Llama's own (Llama, Mistral,
Qwen2, Qwen3, Gemma: checked against Llama's code when it is installed, a model type whose function differs is
left alone) through it in a training step on a CPU: when the queries need gradients (grad mode is per thread, so
replies and evaluations in other threads compute as before), otherwise transformers' own function runs.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma")


class RotaryEmbedding(torch.autograd.Function):
    """``x * cos + rotate_half(x) * sin`` for ``x`` [..., d] with an even d; ``cos`` and ``sin`` broadcast to it and
    need no gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        out = x * cos
        out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
        out[..., half:].addcmul_(x[..., :half], sin[..., half:])
        ctx.save_for_backward(cos, sin)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        cos, sin = ctx.saved_tensors
        half = grad.shape[-1] // 2
        grad_x = grad * cos
        grad_x[..., :half].addcmul_(grad[..., half:], sin[..., half:])
        grad_x[..., half:].addcmul_(grad[..., :half], sin[..., :half], value=-1)
        return grad_x, None, None


def _code(function: Any) -> tuple:
    """What makes two functions compute the same: their bytecode, constants and names."""
    code = getattr(function, "__code__", None)
    return (code.co_code, code.co_consts, code.co_names) if code is not None else ()


def use_fused_rotary_on_cpu(model_type: str | None = None) -> list[str]:
    """Install the routing described above for ``model_type`` (by default every one of ``MODEL_TYPES``) when its
    rotary function is Llama's; the model types routed (now or before)."""
    try:
        from transformers.models.llama import modeling_llama
    except ImportError:  # pragma: no cover (transformers is a requirement)
        return []
    reference = getattr(modeling_llama.apply_rotary_pos_emb, "__wrapped__", modeling_llama.apply_rotary_pos_emb)
    routed = []
    for name in MODEL_TYPES if model_type is None else [t for t in MODEL_TYPES if t == model_type]:
        try:
            module = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        except ImportError:
            continue
        own = getattr(module, "apply_rotary_pos_emb", None)
        if own is None:
            continue
        if getattr(own, "simple_lora", False):
            routed.append(name)
            continue
        if _code(own) != _code(reference) or _code(getattr(module, "rotate_half", None)) != _code(
            modeling_llama.rotate_half
        ):
            continue
        module.apply_rotary_pos_emb = _routed(own)
        routed.append(name)
    return routed


def _routed(own: Any) -> Any:
    def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                             unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
        if not training or q.device.type != "cpu" or cos.requires_grad or sin.requires_grad or q.shape[-1] % 2:
            return own(q, k, cos, sin, unsqueeze_dim)
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        return RotaryEmbedding.apply(q, cos, sin), RotaryEmbedding.apply(k, cos, sin)

    apply_rotary_pos_emb.simple_lora = True  # type: ignore[attr-defined]
    apply_rotary_pos_emb.__wrapped__ = own  # type: ignore[attr-defined]
    return apply_rotary_pos_emb
