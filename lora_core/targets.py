"""Which modules LoRA should adapt, and why.

The product began as a tool that hard-coded the wrong target modules, so targets are detected, in this order:
PEFT's own per-architecture mapping, a small table for remote-code architectures PEFT does not list, a scan of
the linear layers for attention projections, and finally the LLaMA default. The LM head is never a target.

Targets are PEFT-style name suffixes: ``q_proj`` matches ``model.layers.0.self_attn.q_proj``. Each linear layer is
named by the shortest suffix that matches no other kind of module (in practice, its leaf name).
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError
from .memory import paused

if TYPE_CHECKING:  # torch, transformers and PEFT are imported when a model is looked at, not with this module
    from torch import nn

logger = logging.getLogger(__name__)

PRESETS = ("attention", "all-linear")

# Remote-code architectures (config.json with auto_map) that PEFT's mapping may not list. Consulted after PEFT's.
REMOTE_CODE_TARGETS: dict[str, list[str]] = {
    "qwen": ["c_attn"],  # Qwen1
    "chatglm": ["query_key_value"],  # ChatGLM2/3, GLM-4 (remote code)
    "baichuan": ["W_pack"],  # Baichuan 1 and 2
}
DEFAULT_TARGETS = ["q_proj", "v_proj"]  # PEFT's choice for llama (a test checks it still is)


def peft_targets() -> dict[str, list[str]]:
    """PEFT's own target modules per architecture (model_type)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    return TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING


# Output layers by name, for models whose get_output_embeddings() does not say (or that have none).
HEAD_NAMES = ("lm_head", "embed_out", "output_layer")

# Scan: a fused QKV projection if there is one, else query + value (PEFT's choice for split projections).
_FUSED_QKV = ("qkv_proj", "c_attn", "query_key_value", "Wqkv", "wqkv", "W_pack", "qkv")
_QUERY_VALUE = ("q_proj", "v_proj", "query", "value", "q", "v", "wq", "wv")
_ATTENTION_BLOCK = re.compile(r"attn|attention", re.IGNORECASE)


@dataclass(frozen=True)
class TargetSelection:
    model_type: str
    target_modules: list[str]  # suffixes for LoraConfig(target_modules=...), sorted
    source: str  # "peft" | "remote-code" | "scan" | "default" | "all-linear" | "user"
    reason: str  # one English sentence: why these were chosen
    linear_modules: list[str]  # every linear layer's suffix, LM head excluded: what a user may choose from

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Linear:
    name: str  # full dotted module name
    suffix: str  # the name PEFT will be given for it

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def in_attention(self) -> bool:
        return any(_ATTENTION_BLOCK.search(part) for part in self.name.split(".")[:-1])


def _linear_types() -> tuple[type, ...]:
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    types: list[type] = [nn.Linear, Conv1D]  # Conv1D: GPT-2's linear layer with a transposed weight
    # A quantized model has imported bitsandbytes already; never import it (slow, noisy) just to look.
    bnb = sys.modules.get("bitsandbytes")
    if bnb is not None:
        types += [t for t in (getattr(bnb.nn, "Linear4bit", None), getattr(bnb.nn, "Linear8bitLt", None)) if t]
    return tuple(types)


def _output_embeddings(model: nn.Module) -> nn.Module | None:
    try:
        return model.get_output_embeddings()  # type: ignore[operator]
    except (AttributeError, NotImplementedError, TypeError):
        return None


def _suffixes(name: str) -> list[str]:
    """``a.b.c`` -> ``["c", "b.c", "a.b.c"]``: the names PEFT would match it by, shortest first."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1, -1, -1)]


def _linears(model: nn.Module) -> list[_Linear]:
    """The model's adaptable linear layers (LM head excluded), each named by a suffix that matches no other module."""
    types, head = _linear_types(), _output_embeddings(model)
    linear, other = [], []
    for name, module in model.named_modules():
        if not name:
            continue
        is_head = module is head or name.rsplit(".", 1)[-1] in HEAD_NAMES
        (linear if isinstance(module, types) and not is_head else other).append(name)
    # A suffix shared with the head (or any non-linear module) would make PEFT wrap that too: lengthen it until unique.
    taken = {suffix for name in other for suffix in _suffixes(name)}
    return [_Linear(name, next((s for s in _suffixes(name) if s not in taken), name)) for name in linear]


def _model_type(model: nn.Module, model_type: str | None) -> str:
    config = getattr(model, "config", None)
    found = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    return found or model_type or "unknown"


def _scan_attention(linears: list[_Linear]) -> list[_Linear]:
    in_attention = [lin for lin in linears if lin.in_attention]
    for names in (_FUSED_QKV, _QUERY_VALUE):
        found = [lin for lin in in_attention if lin.leaf in names]
        if found:
            return found
    return in_attention  # unknown naming: every linear layer inside attention blocks


def linear_module_names(model: nn.Module) -> list[str]:
    """Every linear layer's target name (LM head excluded), sorted: the choices a user may override with."""
    return sorted({lin.suffix for lin in _linears(model)})


def detect_targets(model: nn.Module, preset: str = "attention", model_type: str | None = None) -> TargetSelection:
    if preset not in PRESETS:
        raise ModelError("unknown_preset", preset=preset, valid=list(PRESETS))
    model_type = _model_type(model, model_type)
    linears = _linears(model)
    if not linears:
        raise ModelError("no_linear_layers", model_type=model_type)
    choices = sorted({lin.suffix for lin in linears})

    def select(chosen: list[_Linear], source: str, reason: str) -> TargetSelection:
        targets = sorted({lin.suffix for lin in chosen})
        logger.info("LoRA targets for %s (%s): %s", model_type, source, ", ".join(targets))
        return TargetSelection(model_type, targets, source, reason, choices)

    if preset == "all-linear":
        return select(linears, "all-linear", f"All {len(choices)} kinds of linear layer, except the LM head.")

    def named(names: list[str] | None) -> list[_Linear]:
        """The linear layers with these leaf names, only if every name is present."""
        present = {lin.leaf for lin in linears}
        return [lin for lin in linears if lin.leaf in names] if names and set(names) <= present else []

    if found := named(peft_targets().get(model_type)):
        return select(found, "peft", f"PEFT's own target modules for the {model_type} architecture.")
    if found := named(REMOTE_CODE_TARGETS.get(model_type)):
        return select(found, "remote-code", f"The known attention projection of the {model_type} architecture.")
    if found := _scan_attention(linears):
        return select(
            found, "scan", f"No known target list fits {model_type}, so attention layers were found by name."
        )
    if found := named(DEFAULT_TARGETS):
        return select(found, "default", "No attention layers were recognised, so this is the LLaMA default.")
    logger.warning("No attention layers in %s, and it lacks the default %s", model_type, DEFAULT_TARGETS)
    reason = "No attention layers were recognised and the LLaMA default is missing too: pick targets from the list."
    return TargetSelection(model_type, sorted(DEFAULT_TARGETS), "default", reason, choices)


def resolve_targets(model: nn.Module, spec: str, model_type: str | None = None) -> TargetSelection:
    """``spec`` is a preset ("attention", "all-linear") or a comma list of names from linear_module_names()."""
    if spec.strip().lower() in PRESETS:
        return detect_targets(model, spec.strip().lower(), model_type)
    names = sorted({name.strip() for name in spec.split(",") if name.strip()})
    choices = linear_module_names(model)
    if not names:
        raise ModelError("no_target", valid=choices)
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise ModelError("unknown_target", unknown=unknown, valid=choices)
    model_type = _model_type(model, model_type)
    return TargetSelection(model_type, names, "user", "Chosen by the user.", choices)


def meta_model(base_dir: str | Path, trust_remote_code: bool = False) -> tuple[nn.Module, str]:
    """Build the model of a local folder's config.json on the meta device: no weights read, no network.

    Without ``trust_remote_code`` no code from the folder runs: a config whose architecture transformers does not
    know (custom code via ``auto_map``) is refused.
    """
    from .models import check_model_dir, check_remote_code, first_line

    folder = check_model_dir(base_dir)
    model_type = check_remote_code(folder, trust_remote_code).get("model_type")
    with paused():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
        with torch.device("meta"), paused():
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as err:  # a config (or remote code) can fail in many ways; all mean "unusable folder"
        raise ModelError("config_invalid", folder=str(folder), detail=first_line(err)) from err
    return model, _model_type(model, model_type)


def targets_for_folder(
    base_dir: str | Path, spec: str = "attention", trust_remote_code: bool = False
) -> TargetSelection:
    model, model_type = meta_model(base_dir, trust_remote_code)
    return resolve_targets(model, spec, model_type)
