"""An exact, reversible merge of one LoRA adapter into the base layers, for fast generation.

PEFT's own ``merge_adapter`` / ``unmerge_adapter`` restore the base by subtracting the delta again, which leaves
rounding errors that grow with every switch. Here the base weights are kept aside and put back as they were.

This relies on PEFT internals (``LoraLayer.get_delta_weight``, ``merged_adapters``, ``get_base_layer``), checked
against the version in ``requirements.txt`` by ``tests/test_merge.py``; ``PEFT_VERSIONS`` lists those checked.
"""

from __future__ import annotations

from typing import Any

PEFT_VERSIONS = ("0.21.2",)


class ExactMerge:
    """At most one adapter merged into a PEFT model's base layers at a time."""

    def __init__(self) -> None:
        self.merged: str | None = None
        self._kept: dict[str, Any] = {}  # module name -> the base weight tensor as it was

    @staticmethod
    def lora_layers(model: Any, adapter: str) -> list[tuple[str, Any]] | None:
        """The LoRA linear layers of ``adapter``, or None when its weights cannot be merged exactly: a quantized
        base (4-/8-bit weights), or LoRA on another kind of layer (embeddings, convolutions)."""
        from peft.tuners.lora import Linear as LoraLinear
        from peft.tuners.lora import LoraLayer

        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            return None
        layers = []
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer) and adapter in getattr(module, "lora_A", {}):
                if type(module) is not LoraLinear or not module.get_base_layer().weight.is_floating_point():
                    return None
                layers.append((name, module))
        return layers

    def merge(self, model: Any, adapter: str) -> bool:
        """Add ``adapter``'s weights into the base layers, keeping the base weights aside. False when it cannot be
        merged exactly (the model then runs the adapter unmerged, as PEFT does)."""
        import torch

        self.unmerge(model)
        layers = self.lora_layers(model, adapter)
        if not layers:
            return False
        with torch.no_grad():
            for name, module in layers:
                weight = module.get_base_layer().weight
                self._kept[name] = weight.data
                weight.data = weight.data + module.get_delta_weight(adapter).to(weight.dtype)
                module.merged_adapters.append(adapter)  # PEFT's forward then runs the base layer alone
        self.merged = adapter
        return True

    def unmerge(self, model: Any) -> None:
        """Put the kept base weights back: exactly the base model again."""
        if self.merged is None:
            return
        for name, module in model.named_modules():
            if name in self._kept:
                module.get_base_layer().weight.data = self._kept.pop(name)
                module.merged_adapters.remove(self.merged)
        self.merged = None
