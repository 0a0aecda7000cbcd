"""Writing files so that a crash never leaves a half-written one in view: atomic JSON, staging folders."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as UTF-8 JSON to a hidden temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=indent), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def staging_name(dest: str | Path, prefix: str = ".staging-") -> Path:
    """The hidden folder beside ``dest`` that a folder is written to before it is renamed into place."""
    dest = Path(dest)
    return dest.parent / f"{prefix}{dest.name}"


@contextmanager
def staged_folder(dest: str | Path, prefix: str = ".staging-", replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``dest``; when the block ends without an error, give its files the
    usual permissions and rename it to ``dest`` (replacing an existing ``dest`` only when ``replace``). Whatever
    happens, no staging folder is left behind, and ``dest`` appears whole or not at all."""
    dest = Path(dest)
    staging = staging_name(dest, prefix)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        usual_permissions(staging)
        if dest.exists() and replace:
            shutil.rmtree(dest)
        elif dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def usual_permissions(folder: str | Path) -> None:
    """Give every file in ``folder`` the permissions of any new file of this process (its umask), like the JSON
    files beside them. safetensors writes its files readable by their owner only (0600), so a model or adapter
    would otherwise be unreadable to the group or other users of a shared folder."""
    folder = Path(folder)
    probe = folder / f".permissions-{os.getpid()}"
    with open(probe, "x"):
        pass
    try:
        mode = probe.stat().st_mode & 0o777
    finally:
        probe.unlink()
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)
