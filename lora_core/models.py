"""Base models and tokenizers from local folders: the checks before loading, the device and quantization, and the
loading itself (local files only, safetensors only, no hub access). Training and chat both load through here."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .errors import ModelError, TrainingError
from .memory import paused

logger = logging.getLogger(__name__)


def check_model_dir(base_dir: str | Path) -> Path:
    path = Path(base_dir).expanduser()
    if not path.is_dir():
        raise ModelError("model_missing", path=str(path))
    if not (path / "config.json").is_file():
        raise ModelError("model_no_config", path=str(path))
    return path.resolve()


SOURCE_FILE = "simple_lora_source.json"  # where a model folder says what it was made from (a Hub repo, a GGUF)


def source_of(folder: str | Path) -> dict:
    """What a model folder was made from (``repo_id`` and ``commit`` of a download, or a GGUF file), if known."""
    try:
        data = json.loads((Path(folder) / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
        raise ModelError("config_invalid", folder=str(folder), detail=first_line(err)) from err
    if not isinstance(raw, dict):
        raise ModelError("config_invalid", folder=str(folder), detail="not a JSON object")
    return raw


def check_remote_code(folder: Path, trust_remote_code: bool) -> dict:
    """Refuse, before transformers sees the folder, a model that only custom code shipped in it could build:
    without the opt-in no code from a model folder ever runs. Returns the config."""
    from transformers import CONFIG_MAPPING

    raw = read_config(folder)
    model_type = raw.get("model_type")
    if model_type not in CONFIG_MAPPING and not trust_remote_code:
        # A known model_type with an auto_map (e.g. early Phi-3) is built from transformers' own code instead.
        raise ModelError("remote_code_required", folder=str(folder), model_type=str(model_type))
    return raw


def check_weights(folder: Path) -> None:
    """Weights must be safetensors: a folder with only pickle files (which can run code when loaded) is refused."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError("model_pickle_only", folder=str(folder), files=pickles[:3])
    raise ModelError("model_no_weights", folder=str(folder))


def before_threads() -> None:
    """Import transformers in the calling thread, before threads of ours use it. On Python 3.11 its first import
    met by two threads at once can hand one of them a half-made module (the import system takes the threads'
    wait on each other for a deadlock), and ``from transformers import AutoTokenizer`` then fails with "cannot
    import name". Once imported, its lazy parts load safely from any thread. About 0.1 s after Gradio's imports;
    torch is not imported."""
    with paused():
        import transformers  # noqa: F401


def load_tokenizer(base_dir: str | Path, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a local model or adapter folder."""
    with paused():
        from transformers import AutoTokenizer

    path = Path(base_dir).expanduser()
    if not path.is_dir():
        raise ModelError("model_missing", path=str(path))
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError("no_tokenizer", path=str(path))
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError / ValueError / KeyError for a broken or missing tokenizer
        raise ModelError(
            "tokenizer_failed", path=str(path), detail=f"{type(exc).__name__}: {first_line(exc)}"
        ) from exc


def default_max_length(tokenizer: Any, config: Any = None, cap: int = 1024) -> int:
    """A training length that the model can take: the smaller of ``cap`` and the model's context."""
    limits = [cap, getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return min(int(x) for x in limits if isinstance(x, int) and x > 0)


def list_base_models(root: str | Path | None = None) -> list[Path]:
    """Folders under ``root`` that hold a model (a config.json), sorted by name. No ``root``: the shared
    ``Models/LLM/`` and then the current user's own merged models (a name taken in the shared folder wins)."""
    from . import paths

    if root is None:
        shared = list_base_models(paths.llm_dir())
        if paths.own_llm_dir() == paths.llm_dir():
            return shared
        names = {p.name for p in shared}
        return shared + [p for p in list_base_models(paths.own_llm_dir()) if p.name not in names]
    root = Path(root)
    if not root.is_dir():
        return []
    root = root.resolve()
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
        and root in p.resolve().parents  # a symlink out of Models/LLM/ is not offered (and is refused if named)
    )  # fmt: skip


# --- device, quantization and the model itself -------------------------------------------------------------


def device_kind() -> str:
    """``cuda`` when a CUDA GPU is usable, else ``cpu``. A CPU-only torch build is known by its version
    (``2.13.0+cpu``) without importing torch, which takes most of a second: the page asks before it is served."""
    if "torch" not in sys.modules and _cpu_only_torch():
        return "cpu"
    with paused():
        import torch

    if torch.cuda.is_available():
        return "cuda"
    hide_bitsandbytes()
    return "cpu"


def hide_bitsandbytes() -> None:
    """Make bitsandbytes look absent to PEFT and transformers in this process, where it serves nothing: the core
    uses it only for 4- and 8-bit loading, which needs CUDA (``effective_quantization``; a base stored quantized
    by it is refused on a CPU, ``load_base_model``). PEFT imports it whenever it is installed, and that import
    took 0.85 s of every process that trains, chats or merges (it pulls in ``torch._inductor``). Called where the
    device is known to be a CPU (a CPU-only torch build: ``lora_core/__init__.py``; otherwise ``device_kind``,
    which training and merging ask before they import PEFT); once PEFT or bitsandbytes is imported it changes
    nothing."""
    if not {"bitsandbytes", "peft"} & sys.modules.keys():
        # None in sys.modules: ``import bitsandbytes`` raises ImportError, ``importlib.util.find_spec`` (how PEFT
        # and transformers ask whether it is installed) answers None.
        sys.modules["bitsandbytes"] = None  # type: ignore[assignment]


@functools.cache
def _cpu_only_torch() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch").endswith("+cpu")
    except PackageNotFoundError:
        return False


def effective_quantization(requested: str, device: str) -> str:
    """The quantization a run will use. On CPU only ``none`` exists: bitsandbytes' k-bit training needs CUDA."""
    if device != "cuda":
        if requested in ("4bit", "8bit"):
            raise TrainingError("quantization_needs_cuda", quantization=requested)
        return "none"
    return "4bit" if requested == "auto" else requested


def _quantization_config(quantization: str, compute: Any) -> Any:
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=True,
    )


def load_base_model(base: Path, quantization: str, device: str, trust_remote_code: bool = False) -> Any:
    """The base model: float32 on CPU; on CUDA 4-bit NF4 / 8-bit (bitsandbytes) or bf16."""
    with paused():
        import torch
        from transformers import AutoModelForCausalLM

    config = check_remote_code(base, trust_remote_code)  # before transformers imports anything from the folder
    check_weights(base)
    stored = config.get("quantization_config")
    if device != "cuda" and isinstance(stored, dict) and stored.get("quant_method") == "bitsandbytes":
        raise TrainingError("quantized_base_needs_cuda", path=str(base))  # its 4- or 8-bit weights need CUDA
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "trust_remote_code": trust_remote_code,
        "use_safetensors": True,
        "dtype": torch.float32,
    }
    if device == "cuda":
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
        kwargs["dtype"] = compute
        if quantization in ("4bit", "8bit"):
            kwargs["quantization_config"] = _quantization_config(quantization, compute)
    try:
        with paused():  # the model's own module is imported now, and its weights are long-lived
            return AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError("model_load_failed", path=str(base), detail=first_line(exc)) from exc


def load_for_inference(base: str | Path, trust_remote_code: bool = False) -> Any:
    """A base model for chat, in eval mode: float32 on CPU, 4-bit on CUDA."""
    base = check_model_dir(base)
    device = device_kind()
    model = load_base_model(base, effective_quantization("auto", device), device, trust_remote_code)
    model.eval()
    return model
