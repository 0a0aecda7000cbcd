"""What users leave on the disk: stored uploads and merged models, their quotas, and deleting them.

Uploads are kept in the workspace's ``Uploads/`` under a name the app chooses (their content's hash), readable by
the app's own user only. Merged models are model folders marked with ``MERGED_MARK`` (in the shared
``Models/LLM/`` with one workspace, in the user's own ``Models/LLM/`` with several). Each kind has a quota per
workspace (``SIMPLE_LORA_UPLOAD_QUOTA_MB``, default 1024; ``SIMPLE_LORA_MERGED_QUOTA_MB``, default 20480); what
would go over it is refused, naming both sizes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import PathError, StorageError

MERGED_MARK = "simple_lora_merged.json"
UPLOAD_QUOTA_MB = 1024
MAX_UPLOAD_MB = 100
MERGED_QUOTA_MB = 20 * 1024


@dataclass(frozen=True)
class Stored:
    name: str
    path: Path
    size_bytes: int


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def max_upload_bytes() -> int:
    """The largest dataset file read from the page or fetched from the Hub: ``SIMPLE_LORA_MAX_UPLOAD_MB`` (default
    100)."""
    return int(float(os.environ.get("SIMPLE_LORA_MAX_UPLOAD_MB") or MAX_UPLOAD_MB) * 1024 * 1024)


def quota_bytes(kind: str) -> int:
    default = UPLOAD_QUOTA_MB if kind == "uploads" else MERGED_QUOTA_MB
    env = os.environ.get(f"SIMPLE_LORA_{kind.upper()}_QUOTA_MB")
    return int(float(env or default) * 1024 * 1024)


def uploads() -> list[Stored]:
    """The stored uploads of the current workspace, newest first."""
    folder = paths.uploads_dir()
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")] if folder.is_dir() else []
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [Stored(p.name, p, p.stat().st_size) for p in files]


def merged_models() -> list[Stored]:
    """The models the current workspace merged (folders with ``MERGED_MARK``)."""
    root = paths.own_llm_dir()
    folders = sorted(p for p in root.iterdir() if (p / MERGED_MARK).is_file()) if root.is_dir() else []
    return [Stored(p.name, p, folder_size(p)) for p in folders]


def check_quota(kind: str, adding: int) -> None:
    """Refuse adding ``adding`` bytes of ``kind`` ("uploads" or "merged") when it would pass the quota."""
    used = sum(s.size_bytes for s in (uploads() if kind == "uploads" else merged_models()))
    quota = quota_bytes(kind)
    if used + adding <= quota:
        return
    if kind == "uploads":
        raise StorageError("uploads_quota", used=used, adding=adding, quota=quota)
    raise StorageError("merged_quota", used=used, adding=adding, quota=quota)


def keep_upload(filename: str, size: int, write: Callable[[Path], None], **meta: object) -> Path:
    """Keep a dataset in the workspace's uploads as ``filename`` (a name the app chose from its content's hash),
    readable by the app's user only, within the quota: ``write(tmp)`` writes its ``size`` bytes to a hidden file that
    is renamed into place. ``meta`` (its name, its source) is recorded beside it; a new file whose record cannot be
    written is removed with it."""
    dest = paths.uploads_dir() / filename
    created = not dest.exists()
    if created:
        check_quota("uploads", size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        keep_private(dest.parent)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            write(tmp)
            keep_private(tmp)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        save_upload_meta(dest, **meta)
    except BaseException:
        if created:
            dest.unlink(missing_ok=True)
            meta_path(dest).unlink(missing_ok=True)
        raise
    return dest


def keep_private(path: Path) -> None:
    """Readable and writable by the app's own user only (an upload may hold anyone's data)."""
    path.chmod(0o700 if path.is_dir() else 0o600)


def _named(items: list[Stored], name: str) -> Stored | None:
    return next((s for s in items if s.name == name), None)


def delete_upload(name: str) -> None:
    """Delete a stored upload of the current workspace (and what is recorded of it)."""
    found = _named(uploads(), name)
    if found is None:
        raise PathError("no_such_upload", name=paths.cut(str(name)))
    os.unlink(found.path)
    meta_path(found.path).unlink(missing_ok=True)


# --- what is recorded of an upload, beside it: its name as the user knows it, its column mapping, its Excel sheet,
# where it came from (a Hub dataset) -------------------------------------------------------------------------------


def meta_path(stored: Path) -> Path:
    return Path(stored).with_name(f".{Path(stored).name}.meta.json")


def upload_meta(stored: str | Path) -> dict:
    """The record beside a stored upload; {} when there is none or it is unreadable."""
    import json

    try:
        meta = json.loads(meta_path(Path(stored)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def save_upload_meta(stored: str | Path, **values: object) -> None:
    """Add ``values`` to the record beside a stored upload (private, like the upload)."""
    from .files import write_json

    path = meta_path(Path(stored))
    write_json(path, {**upload_meta(stored), **values})
    keep_private(path)


def merged_model(name: str) -> Stored:
    """A merged model of the current workspace, by name (never a base model it did not merge)."""
    found = _named(merged_models(), name)
    if found is None:
        raise PathError("no_such_merged", name=paths.cut(str(name)))
    return found


def delete_merged(name: str) -> None:
    """Delete a merged model of the current workspace."""
    shutil.rmtree(merged_model(name).path)
