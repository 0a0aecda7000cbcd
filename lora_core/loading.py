"""Loading base models and tokenizers from local folders: local files only, safetensors only, no hub access."""

from __future__ import annotations

import json
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


# Any one of these makes a folder worth handing to AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def first_line(exc: BaseException) -> str:
    """An exception's first line: library errors often append pages of advice (and hub links) after it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_config(folder: Path) -> dict:
    config_file = folder / "config.json"
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(
            f"{config_file} cannot be read: {first_line(err)}", code="config_invalid", folder=str(folder)
        ) from err
    if not isinstance(raw, dict):
        raise ModelError(f"{config_file} is not a JSON object.", code="config_invalid", folder=str(folder))
    return raw


def check_remote_code(folder: Path, trust_remote_code: bool) -> dict:
    """Refuse, before transformers sees the folder, a model that only custom code shipped in it could build:
    without the opt-in no code from a model folder ever runs. Returns the config."""
    from transformers import CONFIG_MAPPING

    raw = read_config(folder)
    model_type = raw.get("model_type")
    if model_type not in CONFIG_MAPPING and not trust_remote_code:
        # A known model_type with an auto_map (e.g. early Phi-3) is built from transformers' own code instead.
        needs = "custom code shipped in the folder (auto_map)" if "auto_map" in raw else "code transformers lacks"
        raise ModelError(
            f"The model in {folder} (model_type {model_type!r}) needs {needs}; allow trust_remote_code to use it.",
            code="remote_code_required",
            folder=str(folder),
            model_type=model_type,
        )
    return raw


def check_weights(folder: Path) -> None:
    """Weights must be safetensors: a folder with only pickle files (which can run code when loaded) is refused."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError(
            f"The model in {folder} has only pickle weights ({', '.join(pickles[:3])}), which are never loaded; "
            "convert them to safetensors.",
            code="model_pickle_only",
            folder=str(folder),
            files=", ".join(pickles[:3]),
        )
    raise ModelError(
        f"The model in {folder} has no weights (*.safetensors).", code="model_no_weights", folder=str(folder)
    )


def load_tokenizer(base_dir: str | Path, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a local model or adapter folder."""
    from transformers import AutoTokenizer

    path = Path(base_dir).expanduser()
    if not path.is_dir():
        raise ModelError(f"The model folder {path} does not exist.", code="model_missing", path=str(path))
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"The folder {path} has no tokenizer (tokenizer.json or tokenizer_config.json).",
            code="no_tokenizer",
            path=str(path),
        )
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError / ValueError / KeyError for a broken or missing tokenizer
        raise ModelError(
            f"The tokenizer in {path} cannot be loaded ({type(exc).__name__}: {first_line(exc)}).",
            code="tokenizer_failed",
            path=str(path),
            detail=first_line(exc),
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
    root = root.resolve()
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
        and root in p.resolve().parents  # a symlink out of Models/LLM/ is not offered (and is refused if named)
    )  # fmt: skip
