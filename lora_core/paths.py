"""Where everything lives. One place: every other module asks here.

The data home is ``SIMPLE_LORA_HOME`` when set; on a Hugging Face Space with persistent storage, ``/data``; else
the repository root. Under it:
``Models/LLM/`` (base models), ``Models/LoRA/`` (adapters), ``Runs/`` (checkpoints, logs, task history),
``Uploads/`` (uploaded datasets, stored under names the app chooses).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from .errors import PathError

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent


SPACE_STORAGE = Path("/data")  # where a Space's persistent storage is mounted, when it has some


def home() -> Path:
    env = os.environ.get("SIMPLE_LORA_HOME")
    if env:
        return Path(env).expanduser().resolve()
    # A Space's own disk is wiped at every restart; its persistent storage survives them.
    if os.environ.get("SPACE_ID") and SPACE_STORAGE.is_dir() and os.access(SPACE_STORAGE, os.W_OK):
        return SPACE_STORAGE
    return REPO_ROOT


def llm_dir() -> Path:
    return home() / "Models" / "LLM"


def lora_dir() -> Path:
    return home() / "Models" / "LoRA"


def runs_dir() -> Path:
    return home() / "Runs"


def uploads_dir() -> Path:
    return home() / "Uploads"


def shown(path: str | Path) -> str:
    """A path as the user should read it: relative to the data home (``Models/LoRA/x``) when inside it."""
    try:
        return Path(path).resolve().relative_to(home()).as_posix()
    except ValueError:
        return str(path)


NAME_MAX = 255  # the longest file or folder name the app accepts (most file systems allow no more)


def cut(text: str, limit: int = 80) -> str:
    """A user's text shortened for a message that repeats it."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def inside(root: Path, candidate: str | Path) -> Path:
    """Resolve ``candidate`` (relative to ``root`` or absolute) and insist it stays inside ``root``.

    Symlinks are resolved first, so a link that points out of ``root`` is refused too.
    """
    root = Path(root).resolve()
    if "\x00" in str(candidate) or len(str(candidate)) > 4096:  # no path has these; resolve() would raise
        raise PathError("path_outside", path=cut(str(candidate)), root=str(root))
    path = (root / candidate).resolve()
    if path != root and root not in path.parents:
        raise PathError("path_outside", path=str(candidate), root=str(root))
    return path


_UNSAFE = re.compile(r"[^\w\-.]+", re.UNICODE)
_WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}


def safe_name(name: str, *, max_length: int = 64) -> str:
    """A task name reduced to letters (any script), digits, '-', '_' and '.', usable as a folder name anywhere.

    Raises PathError when nothing usable is left.
    """
    cleaned = unicodedata.normalize("NFKC", name or "").replace("\x00", "")
    cleaned = _UNSAFE.sub("_", cleaned).strip("._-")[:max_length].strip("._-")
    if not cleaned:
        raise PathError("bad_name", name=name)
    if cleaned.split(".")[0].lower() in _WINDOWS_RESERVED:
        cleaned = f"_{cleaned}"
    return cleaned
