"""Generation with a base model and, optionally, an adapter.

Prompts are rendered by ``prompts.py`` and tokenized by ``masking.prompt_ids``, exactly as in training, with the
prompt format recorded in the adapter's manifest and the tokenizer saved with the adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import adapters
from .errors import ModelError

logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0


def load_model(base: str | Path, adapter: str | Path | None = None, trust_remote_code: bool = False) -> Any:
    """The base model for inference (float32 on CPU, 4-bit on CUDA), with ``adapter`` loaded if given."""
    from .loading import check_model_dir
    from .training import device_kind, effective_quantization, load_base_model

    base = check_model_dir(base)
    device = device_kind()
    model = load_base_model(base, effective_quantization("auto", device), device, trust_remote_code)
    model.eval()
    if adapter is None:
        return model
    from peft import PeftModel

    adapter = Path(adapter)
    adapters.verify_adapter(adapter, base_dir=base)
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)


def prompt_format_of(adapter: str | Path | None) -> str | None:
    """The prompt format an adapter was trained with (None: follow the tokenizer)."""
    if adapter is None or not (Path(adapter) / adapters.META_NAME).is_file():
        return None
    return adapters.read_meta(adapter).get("prompt_format")


def generate(
    model: Any,
    tokenizer: Any,
    messages: list[dict],
    settings: GenerationSettings | None = None,
    style: str | None = None,
    streamer: Any = None,
) -> str:
    """The reply to ``messages`` (the last one a user turn)."""
    import torch

    from .masking import pad_id_of, prompt_ids

    settings = settings or GenerationSettings()
    ids = prompt_ids(tokenizer, messages, style)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    sampling = settings.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sampling,
        "eos_token_id": _stop_ids(tokenizer),
        "pad_token_id": pad_id_of(tokenizer),
        "repetition_penalty": settings.repetition_penalty,
    }
    if sampling:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    else:  # greedy: make sure no sampling defaults from the model's generation_config leak in
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, **kwargs
        )
    return tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True).strip()


def _stop_ids(tokenizer: Any) -> list[int]:
    """EOS and end-of-turn tokens: a reply stops at whichever comes first."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        if isinstance(tid, int):
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def tokenizer_for(base: str | Path, adapter: str | Path | None) -> Any:
    """The adapter's own tokenizer (saved with it, chat template included) when it has one, else the base's."""
    from .loading import load_tokenizer

    if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file():
        return load_tokenizer(adapter)
    if adapter is not None and not Path(adapter).is_dir():
        raise ModelError(f"The adapter folder {adapter} does not exist.", code="adapter_missing", path=str(adapter))
    return load_tokenizer(base)
