"""Where everything lives. One place: every other module asks here.

The data home is ``SIMPLE_LORA_HOME`` when set; on a Hugging Face Space with persistent storage, ``/data``; else
the repository root. Under it:
``Models/LLM/`` (base models), ``Models/LoRA/`` (adapters), ``Runs/`` (checkpoints, logs, task history),
``Uploads/`` (uploaded datasets, stored under names the app chooses), ``Assistants/``.

With several users (``--auth-file`` listing more than one), each user works in a workspace of their own,
``Users/<user>/``, which holds their ``Models/LoRA/``, ``Runs/``, ``Uploads/``, ``Assistants/`` and the models
they merged (``Models/LLM/``); the base models of the data home are shared, read-only. ``as_user`` says whose
workspace the code in its block works in; with one password (or none) there is one workspace, the data home.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


USERS_DIR = "Users"
_USER: ContextVar[str | None] = ContextVar("simple_lora_user", default=None)


def current_user() -> str | None:
    """Whose workspace the calling code works in (None: the one shared workspace)."""
    return _USER.get()


@contextmanager
def as_user(user: str | None) -> Iterator[None]:
    """Work in ``user``'s workspace for the block (None: the shared one)."""
    token = _USER.set(user)
    try:
        yield
    finally:
        _USER.reset(token)


def workspace(user: str | None = None) -> Path:
    """The folder of ``user``'s (or the current user's) adapters, runs, uploads and assistants."""
    user = user if user is not None else current_user()
    return home() if user is None else home() / USERS_DIR / safe_name(user)


def llm_dir() -> Path:
    """The shared base models."""
    return home() / "Models" / "LLM"


def own_llm_dir() -> Path:
    """Where the current user's merged models go: the shared folder when there is one workspace."""
    return workspace() / "Models" / "LLM"


def lora_dir() -> Path:
    return workspace() / "Models" / "LoRA"


def runs_dir() -> Path:
    return workspace() / "Runs"


def uploads_dir() -> Path:
    return workspace() / "Uploads"


def shown(path: str | Path) -> str:
    """A path as the user should read it: relative to their workspace (``Models/LoRA/x``) or the data home."""
    for root in (workspace(), home()):
        try:
            return Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            continue
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
