"""The Train tab's form before Start: its settings (TrainConfig's "form" fields), the demo settings, and the line
that says what will be trained (architecture, targets and why, trainable parameters, memory)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from lora_core import estimate, models
from lora_core.config import TrainConfig, settings_where
from lora_core.demo import DEMO_PREFERENCE, DEMO_TRAINING

from .common import user_errors
from .dataset_tab import resolve_base
from .i18n import TEXT, t

DEFAULTS = TrainConfig(base="", data="", task="")
# The Train tab's settings: TrainConfig's "form" fields, in its order (also /start_training's named parameters).
HYPER = settings_where("form")


def _gb(n: int) -> str:
    return f"{n / 1024**3:.2f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def _estimate(
    base_name: str, targets: str, rank: Any, batch: Any, max_len: Any, quant: str, checkpointing: bool
) -> Any:  # fmt: skip
    """The core's estimate, or None while a number it needs is missing or out of range (the user is typing)."""
    numbers = [rank, batch, max_len]
    if any(n is None or n < 1 for n in numbers) or max_len < 8:
        return None
    base = resolve_base(base_name)
    quant = _quant_for_estimate(quant)
    return estimate.estimate(base, targets, int(rank), int(batch), int(max_len), quant, bool(checkpointing))


def _reason(est: Any, lang: str) -> str:
    key = f"reason_{est.targets_source}"
    if est.targets_source == "default" and not set(est.target_modules) <= set(est.linear_modules):
        key = "reason_default_missing"
    return t(key, lang, n=len(est.linear_modules), model_type=est.model_type) if key in TEXT else est.targets_reason


def _info(est: Any, lang: str) -> str:
    if est is None:
        return t("estimate_needs_numbers", lang)
    quant = est.quantization if est.quantization != "none" else f"none_{est.device}"
    return t(
        "model_info",
        lang,
        model_type=est.model_type,
        targets=", ".join(est.target_modules),
        reason=_reason(est, lang),
        lora=f"{est.lora_params:,}",
        total=f"{est.total_params:,}",
        pct=f"{100 * est.lora_params / max(1, est.total_params):.2f}",
        memory=_gb(est.memory_bytes),
        device=est.device.upper(),
        quant=t(f"quant_name_{quant}", lang),
    )


@user_errors
def on_model(
    lang: str, base_name: str | None, preset: str, rank: Any, batch: Any, max_len: Any, quant: str,
    checkpointing: bool,
):  # fmt: skip
    """Another base model or preset: the targets detected afresh, the trainable parameters and the memory."""
    if not base_name:
        return t("no_base", lang), gr.update(choices=[], value=[])
    est = _estimate(base_name, preset, rank, batch, max_len, quant, checkpointing)
    if est is None:
        return _info(None, lang), gr.update()
    return _info(est, lang), gr.update(choices=est.linear_modules, value=est.target_modules)


@user_errors
def on_estimate(
    lang: str, base_name: str | None, preset: str, targets: list[str] | None, rank: Any, batch: Any, max_len: Any,
    quant: str, checkpointing: bool,
) -> str:  # fmt: skip
    """Numbers, targets, quantization, checkpointing or language changed: the same line for the targets chosen
    (none chosen: the preset's)."""
    if not base_name:
        return t("no_base", lang)
    est = _estimate(base_name, preset, rank, batch, max_len, quant, checkpointing)
    if est is not None and targets and sorted(targets) != est.target_modules:
        est = _estimate(base_name, ",".join(targets), rank, batch, max_len, quant, checkpointing)
    return _info(est, lang)


def _quant_for_estimate(quant: str) -> str:
    return "auto" if models.device_kind() != "cuda" else quant


def checkpointing_for(quant: str | None = None) -> bool:
    """What the core does with gradient checkpointing unset for this quantization on this machine: on for a 4- or
    8-bit base on CUDA. The checkbox follows the quantization; the user may still change it."""
    device = models.device_kind()
    quant = quant if device == "cuda" and quant in ("auto", "4bit", "8bit", "none") else DEFAULTS.quantization
    return DEFAULTS.checkpointing(models.effective_quantization(quant, device), device)


def checkpointing_default() -> bool:
    return checkpointing_for(DEFAULTS.quantization)


def demo_settings(loaded: Any = None) -> list[Any]:
    """The settings that make the demo model learn the sample data in a few minutes on a CPU (the preference
    sample's when the loaded dataset holds preference pairs)."""
    values = {**{k: getattr(DEFAULTS, k) for k in HYPER}, "gradient_checkpointing": checkpointing_default()}
    pairs = loaded is not None and getattr(loaded.report, "format", "") == "preference"
    values.update(DEMO_PREFERENCE if pairs else DEMO_TRAINING)
    if models.device_kind() != "cuda":
        values["quantization"] = "none"  # what the (locked) dropdown shows on a CPU
    return [values[k] for k in HYPER] + [values["targets"]]
