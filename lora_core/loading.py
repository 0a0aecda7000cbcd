"""Loading base models and tokenizers from local folders: local files only, safetensors only, no hub access."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import ModelError

logger = logging.getLogger(__name__)


def check_model_dir(base_dir: str | Path) -> Path:
    path = Path(base_dir).expanduser()
    if not path.is_dir():
        raise ModelError(f"The model folder {path} does not exist.", code="model_missing", path=str(path))
    if not (path / "config.json").is_file():
        raise ModelError(
            f"The folder {path} is not a model: it has no config.json.", code="model_no_config", path=str(path)
        )
    return path.resolve()


def load_tokenizer(base_dir: str | Path, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a local model or adapter folder."""
    from transformers import AutoTokenizer

    path = Path(base_dir).expanduser()
    if not path.is_dir():
        raise ModelError(f"The model folder {path} does not exist.", code="model_missing", path=str(path))
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError / ValueError / KeyError for a broken or missing tokenizer
        raise ModelError(
            f"The tokenizer in {path} cannot be loaded ({type(exc).__name__}: {exc}).",
            code="tokenizer_failed",
            path=str(path),
            detail=str(exc),
        ) from exc


def default_max_length(tokenizer: Any, config: Any = None, cap: int = 1024) -> int:
    """A training length that the model can take: the smaller of ``cap`` and the model's context."""
    limits = [cap, getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return min(int(x) for x in limits if isinstance(x, int) and x > 0)


def list_base_models(root: str | Path | None = None) -> list[Path]:
    """Folders under ``Models/LLM/`` (or ``root``) that hold a model (a config.json), sorted by name."""
    from . import paths

    root = Path(root) if root else paths.llm_dir()
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
    )
