"""Export: an adapter merged into a 16-bit copy of its base, saved as a standalone model folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from . import adapters
from .errors import ChatError
from .files import staged_folder, write_json
from .storage import MERGED_MARK

logger = logging.getLogger(__name__)


def merge_adapter(adapter: str | Path, out: str | Path, base: str | Path | None = None) -> Path:
    """Merge ``adapter`` into a 16-bit copy of its base and save it as a standalone model folder at ``out``.

    Refused, with the reason, for a base stored quantized (no full-precision weights to merge into), a base that
    is not the one the adapter was trained on, or an ``out`` that already holds something.
    """
    from .models import check_model_dir, device_kind, load_tokenizer, source_of

    device_kind()  # without a GPU, bitsandbytes is hidden before PEFT is imported (models.hide_bitsandbytes)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = Path(adapter)
    adapters.verify_adapter(adapter)
    recorded = adapters.read_manifest(adapter).base_model if adapters.has_manifest(adapter) else None
    base_dir = check_model_dir(
        base or recorded or adapters.read_adapter_config(adapter).get("base_model_name_or_path")
    )
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        raise ChatError("merge_quantized_base", base=base_dir.name)
    adapters.verify_adapter(adapter, base_dir=base_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ChatError("merge_out_exists", path=str(out))
    dtype = {"float16": torch.float16}.get(str(config.get("dtype") or config.get("torch_dtype")), torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(
        str(base_dir), dtype=torch.float32, local_files_only=True, use_safetensors=True
    )
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()  # exact in float32, then cast
    merged = merged.to(dtype)
    tokenizer_dir = adapter if (adapter / "tokenizer_config.json").is_file() else base_dir
    with staged_folder(out, prefix=f".merging-{os.getpid()}-") as staging:
        merged.save_pretrained(str(staging), safe_serialization=True)
        load_tokenizer(tokenizer_dir).save_pretrained(str(staging))
        write_json(staging / MERGED_MARK, {"adapter": adapter.name, "base": base_dir.name,
                                           "base_repo_id": source_of(base_dir).get("repo_id")})  # fmt: skip
    logger.info("merged %s into %s", adapter.name, out)
    return out
