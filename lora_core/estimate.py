"""Before Start: what will be trained, and roughly how much memory it needs, from the model's config alone.

The memory figure is a rough upper bound, meant to warn before a run that cannot fit, not to plan to the MB:
weights + LoRA weights with their gradients and Adam state + activations kept for the backward pass + logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from . import models
from .config import activation_tokens, uses_checkpointing

# Bytes per base weight: NF4 packs two weights a byte plus its block scales (~0.56 with double quantization);
# int8 has a scale per row (~1.1); unquantized weights are float32 on a CPU, bf16 / fp16 on a GPU.
WEIGHT_BYTES = {"4bit": 0.56, "8bit": 1.1, "none_cpu": 4.0, "none_cuda": 2.0}
# Per LoRA parameter: the float32 weight, its gradient and Adam's two moments.
LORA_PARAM_BYTES = 16
# Activations kept per token, per layer, in units of hidden_size values: about 18 tensors of the hidden size
# (attention inputs and outputs, MLP intermediates at ~2.7x, norms) without checkpointing; only the layer's
# input (plus its recomputation's working set) with it.
ACTIVATIONS_PER_LAYER = {False: 18, True: 2}
# The logits: float32 scores over the vocabulary and their gradient, per token.
LOGIT_BYTES = 4 * 2


@dataclass(frozen=True)
class Estimate:
    model_type: str
    target_modules: list[str]
    targets_source: str
    targets_reason: str
    linear_modules: list[str]
    total_params: int
    lora_params: int
    quantization: str
    device: str
    memory_bytes: int  # weights + LoRA optimizer state + activations, rough

    def to_json(self) -> dict:
        return asdict(self)


def lora_parameter_count(model, target_modules: list[str], rank: int) -> int:
    """Parameters a rank-``rank`` LoRA adds on the 2-D weights of the modules named ``target_modules``."""
    count = 0
    for name, module in model.named_modules():
        if any(name == t or name.endswith("." + t) for t in target_modules):
            weight = getattr(module, "weight", None)
            if weight is not None and weight.dim() == 2:
                rows, cols = weight.shape
                count += rank * (rows + cols)
    return count


def memory_bytes(config, total: int, lora: int, quant: str, device: str, tokens: int, checkpointing: bool) -> int:
    """The rough peak memory of training ``tokens`` tokens per step (batch size x max length)."""
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0)
    layers = getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0)
    vocab = getattr(config, "vocab_size", 0)
    act_bytes = 4 if device == "cpu" else 2
    weight_bytes = WEIGHT_BYTES[quant if quant != "none" else f"none_{device}"]
    per_token = hidden * ACTIVATIONS_PER_LAYER[checkpointing] * layers * act_bytes + vocab * LOGIT_BYTES
    return int(total * weight_bytes + lora * LORA_PARAM_BYTES + tokens * per_token)


def estimate(
    base: str | Path,
    targets: str = "all-linear",
    rank: int = 16,
    batch_size: int = 4,
    max_length: int = 1024,
    quantization: str = "auto",
    gradient_checkpointing: bool | None = None,
    trust_remote_code: bool = False,
) -> Estimate:
    """Trainable parameters and a memory estimate from the model's config alone (nothing is loaded)."""
    from .targets import meta_model, resolve_targets

    model, model_type = meta_model(base, trust_remote_code=trust_remote_code)
    selection = resolve_targets(model, targets, model_type)
    device = models.device_kind()
    quant = models.effective_quantization(quantization, device)
    total = sum(p.numel() for p in model.parameters())
    lora = lora_parameter_count(model, selection.target_modules, rank)
    checkpointing = uses_checkpointing(gradient_checkpointing, quant, device)
    tokens = activation_tokens(batch_size, max_length, device)
    memory = memory_bytes(model.config, total, lora, quant, device, tokens, checkpointing)
    return Estimate(
        model_type=selection.model_type,
        target_modules=selection.target_modules,
        targets_source=selection.source,
        targets_reason=selection.reason,
        linear_modules=selection.linear_modules,
        total_params=int(total),
        lora_params=int(lora),
        quantization=quant,
        device=device,
        memory_bytes=memory,
    )


def free_memory(device: str) -> int:
    """Bytes free for a new training now: the GPU's free memory on CUDA, the machine's available memory else."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(config) -> Estimate:
    """Refuse a training whose estimate exceeds the memory free now, with both numbers; returns the estimate."""
    from .errors import TrainingError

    est = estimate(config.base, config.targets, config.rank, config.batch_size, config.max_length,
                   config.quantization, config.gradient_checkpointing, config.trust_remote_code)  # fmt: skip
    available = free_memory(est.device)
    if est.memory_bytes > available:
        raise TrainingError("not_enough_memory", needed=est.memory_bytes, available=available,
                            device=est.device.upper())  # fmt: skip
    return est
