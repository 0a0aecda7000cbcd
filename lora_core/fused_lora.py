"""The LoRA branch of a linear layer in one autograd step, for training on a CPU.

PEFT computes a LoRA layer as ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: besides the two small matrix
products, that is a full-size scaling of the dropout's input (by 1 / (1 - p)), a full-size multiplication of the
branch's output by ``scaling``, a full-size addition, and in the backward pass a full-size multiplication and a
masked copy of each. On a CPU those element-wise passes over [tokens, width] tensors cost about as much as the
branch's matrix products (see ``BENCHMARKS.md``).

``LoraBranch`` computes the same function with the two scale factors moved onto the rank-sized tensors (a [tokens,
r] product, r = 16, instead of a [tokens, width] one), the addition folded into the second matrix product
(``addmm`` accumulates into the base layer's output) and the dropout's mask applied in place to the fresh gradient.
The dropped positions come from ``dropout.dropped_positions``, drawn exactly as ``SparseDropout`` draws them, so
with the same random state both paths drop the same elements and give equal outputs and gradients up to float
rounding (``tests/test_speed.py``).

``use_fused_lora`` routes a PEFT model's LoRA linear layers through it when the layer is the plain case (one active
adapter, not merged, no DoRA or other variant, no LoRA bias, an ``nn.Linear`` base, one dtype); any other call
(adapters disabled, mixed adapters per row, a different dtype) goes to PEFT's own forward, unchanged.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
from torch import nn

from .dropout import SparseDropout, dropped_positions


class LoraBranch(torch.autograd.Function):
    """``base_out + (x with the dropped positions zeroed) @ a.T * scale @ b.T`` on 2-D tensors, where ``scale`` is
    LoRA's scaling divided by the dropout's keep probability."""

    @staticmethod
    def forward(ctx: Any, base_out: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float,
                dropped: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        kept = x
        if dropped is not None:
            kept = x.clone(memory_format=torch.contiguous_format).view(-1).index_fill_(0, dropped, 0).view_as(x)
        low = torch.mm(kept, a.t()).mul_(scale)
        ctx.save_for_backward(kept, low, a, b, dropped)
        ctx.scale = scale
        return torch.addmm(base_out, low, b.t())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        kept, low, a, b, dropped = ctx.saved_tensors
        grad = grad.contiguous()
        grad_low = torch.mm(grad, b).mul_(ctx.scale)
        grad_a = torch.mm(grad_low.t(), kept) if ctx.needs_input_grad[2] else None
        grad_b = torch.mm(grad.t(), low) if ctx.needs_input_grad[3] else None
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = torch.mm(grad_low, a)
            if dropped is not None:
                grad_x.view(-1).index_fill_(0, dropped, 0)
        return grad, grad_x, grad_a, grad_b, None, None


def _dropout_p(layer: nn.Module) -> float | None:
    """The drop probability of a LoRA dropout this path can reproduce, None for any other module."""
    if isinstance(layer, nn.Identity):
        return 0.0
    if type(layer) is SparseDropout or (type(layer) is nn.Dropout and layer.p == 0):
        return float(layer.p)
    return None


def fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A PEFT ``lora.Linear`` forward through ``LoraBranch`` when the call is the plain case, else PEFT's own."""
    adapters = self.active_adapters
    name = adapters[0] if len(adapters) == 1 else None
    plain = (not args and not kwargs and name is not None and not self.disable_adapters and not self.merged
             and name in self.lora_A and name not in self.lora_variant and not getattr(self, "use_dora", {}).get(name)
             and type(self.base_layer) is nn.Linear and self.lora_B[name].bias is None)  # fmt: skip
    p = _dropout_p(self.lora_dropout[name]) if plain else None
    if p is None or x.dtype != self.base_layer.weight.dtype or x.dtype != self.lora_A[name].weight.dtype:
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer(x)
    flat = x.reshape(-1, x.shape[-1])
    drop = p > 0 and self.lora_dropout[name].training
    dropped = dropped_positions(flat.numel(), p).to(x.device) if drop else None
    scale = self.scaling[name] / (1 - p) if drop else self.scaling[name]
    out = LoraBranch.apply(base.view(-1, base.shape[-1]), flat, self.lora_A[name].weight, self.lora_B[name].weight,
                           scale, dropped)  # fmt: skip
    return out.view(base.shape)


def use_fused_lora(model: Any) -> int:
    """Route every PEFT ``lora.Linear`` of ``model`` through ``fused_forward``; returns how many. Nothing about the
    saved adapter changes (only the forward is replaced, on the instances)."""
    from peft.tuners.lora import Linear

    routed = 0
    for module in model.modules():
        if type(module) is Linear and "forward" not in vars(module):
            module.forward = MethodType(fused_forward, module)
            routed += 1
    return routed
