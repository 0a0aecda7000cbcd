"""LoRA dropout that draws random numbers only for the elements it drops.

PEFT applies ``nn.Dropout`` to each LoRA layer's input: one uniform random number per element to build a full-size
mask. On a CPU that is bound by the random-number generator, and with the usual p = 0.05 it cost more than the
LoRA layer's own matrix products (12% of a training step on the benchmark fixture, see ``BENCHMARKS.md``).

``SparseDropout`` keeps the same distribution: every element is dropped independently with probability p and the
others are scaled by 1 / (1 - p). The gaps between dropped elements of such a sequence are independent geometric
variables (the number of trials up to and including the next drop), so drawing the gaps and summing them gives the
dropped positions with about p·n random draws instead of n. Same expectation and variance per element, no
correlation between elements; only the random stream differs from ``nn.Dropout``'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Above this p most elements are dropped one by one anyway; nn.Dropout is then as good.
MAX_SPARSE_P = 0.25


def dropped_positions(n: int, p: float, draw: int | None = None) -> torch.Tensor:
    """The flat positions in ``range(n)`` of elements dropped independently with probability ``p``, ascending.
    Gaps are drawn ``draw`` at a time, by default enough to pass n almost always (the mean count of drops plus six
    standard deviations); when they fall short, more are drawn from where they stopped."""
    if n <= 0 or p <= 0:
        return torch.empty(0, dtype=torch.int64)
    draw = draw or int(n * p + 6 * (n * p * (1 - p)) ** 0.5) + 16
    ends = []
    last = -1
    while last < n - 1:
        gaps = torch.empty(draw, dtype=torch.float64).geometric_(p)
        # A gap longer than n ends the mask either way; clamping keeps the cast to int64 exact.
        positions = gaps.clamp_(max=n + 1).to(torch.int64).cumsum_(0).add_(last)
        ends.append(positions)
        last = int(positions[-1])
    positions = torch.cat(ends) if len(ends) > 1 else ends[0]
    return positions[positions < n]


class SparseDropout(nn.Module):
    """``nn.Dropout(p)`` with the same distribution, drawing about p·n random numbers per call instead of n."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability {p} is not in [0, 1)")
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        out = x.contiguous() * (1 / (1 - self.p))
        dropped = dropped_positions(out.numel(), self.p).to(out.device)
        # In place on a fresh tensor: autograd zeroes the same positions of the gradient.
        return out.view(-1).index_fill_(0, dropped, 0).view_as(x)


def use_sparse_dropout(model: Any) -> int:
    """Swap every LoRA ``nn.Dropout`` of a PEFT model for a ``SparseDropout`` of the same p (not above
    ``MAX_SPARSE_P``); returns how many were swapped. Dropout holds no weights: saved adapters are unchanged."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, layer in list(dropouts.items()):
            if type(layer) is nn.Dropout and 0 < layer.p <= MAX_SPARSE_P:
                replacement = SparseDropout(layer.p)
                replacement.train(layer.training)
                dropouts[name] = replacement
                swapped += 1
    return swapped
