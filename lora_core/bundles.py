"""Adapters in and out as ``.zip`` files: a zip of exactly an adapter folder to take home, and an uploaded zip
(of one of ours, or of a PEFT adapter from elsewhere) checked like ``scan`` checks a folder before it is listed.

An upload is refused, in one sentence and with nothing written, when it is not a zip, when an entry's path is
absolute or climbs out (``../``), when an entry is a link or a device, when it would expand past
``MAX_UNPACKED_BYTES`` (whatever its headers claim: the bytes are counted as they are unpacked), or when what it
holds is not a usable adapter (no safetensors weights, pickle only, a full model...). It is unpacked into a hidden
staging folder, verified, then renamed into ``Models/LoRA/``; an existing adapter is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from . import adapters, paths, storage
from .errors import AdapterError, BundleError
from .files import staged_folder

MAX_UNPACKED_BYTES = 2 * 1024**3  # an adapter of rank 256 on a 70B model is under this; a zip bomb is not
MAX_ENTRIES = 200
CHUNK = 1024 * 1024


def zip_adapter(folder: str | Path, out_dir: str | Path) -> Path:
    """``<name>.zip`` in ``out_dir`` holding exactly the files of the adapter ``folder`` under a top folder of
    its name (verified first: only a usable adapter leaves)."""
    folder = Path(folder)
    adapters.verify_adapter(folder)
    return _zip_folder(folder, Path(out_dir))


def check_merged_leaves(name: str) -> Path:
    """The current workspace's merged model ``name``, when it is small enough to leave through the page (the
    cap an uploaded zip has, ``MAX_UNPACKED_BYTES``)."""
    merged = storage.merged_model(name)
    if merged.size_bytes > MAX_UNPACKED_BYTES:
        raise BundleError("merged_too_large", name=merged.name, size=merged.size_bytes, max=MAX_UNPACKED_BYTES)
    return merged.path


def zip_merged(name: str, out_dir: str | Path) -> Path:
    """``<name>.zip`` of the current workspace's merged model ``name`` (see ``check_merged_leaves``)."""
    return _zip_folder(check_merged_leaves(name), Path(out_dir))


def _zip_folder(folder: Path, out_dir: Path) -> Path:
    """Exactly the plain files of ``folder`` under a top folder of its name; weights stored as they are
    (deflating them gains little and takes long), the rest deflated. Written aside, then renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{folder.name}.zip"
    partial = out_dir / f".{folder.name}.zip.part"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink()):
            stored = path.suffix == ".safetensors"
            archive.write(path, f"{folder.name}/{path.name}", zipfile.ZIP_STORED if stored else None)
    os.replace(partial, target)
    return target


def _member_path(info: zipfile.ZipInfo, zip_name: str) -> PurePosixPath | None:
    """Where an entry goes, relative to the adapter folder; None for a folder entry. Refuses what is not a plain
    file at a plain relative path."""
    name = info.filename.replace("\\", "/")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no type recorded (zips made elsewhere): a plain file
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise BundleError("zip_link", file=zip_name, entry=paths.cut(name))
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts or "\x00" in name:
        raise BundleError("zip_path", file=zip_name, entry=paths.cut(name))
    return None if info.is_dir() else path


def _plan(archive: zipfile.ZipFile, zip_name: str) -> dict[str, zipfile.ZipInfo]:
    """The entries to unpack, by file name inside the adapter folder (one level: a top folder is stripped)."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise BundleError("zip_too_many", file=zip_name, count=len(infos), max=MAX_ENTRIES)
    files = [(info, _member_path(info, zip_name)) for info in infos]
    files = [(info, path) for info, path in files if path is not None]
    tops = {path.parts[0] for _, path in files if len(path.parts) > 1}
    strip = len(tops) == 1 and all(len(path.parts) == 2 for _, path in files)
    plan = {}
    for info, path in files:
        parts = path.parts[1:] if strip else path.parts
        if len(parts) != 1:  # an adapter folder has no sub-folders
            raise BundleError("zip_path", file=zip_name, entry=paths.cut(info.filename))
        plan[parts[0]] = info
    if sum(info.file_size for info in plan.values()) > MAX_UNPACKED_BYTES:
        raise BundleError("zip_too_large", file=zip_name, max=MAX_UNPACKED_BYTES)
    return plan


def _unpack(archive: zipfile.ZipFile, plan: dict[str, zipfile.ZipInfo], dest: Path, zip_name: str) -> None:
    written = 0
    for name, info in plan.items():
        with archive.open(info) as source, open(dest / name, "xb") as target:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > MAX_UNPACKED_BYTES:  # the headers lied: stop at the cap, whatever they say
                    raise BundleError("zip_too_large", file=zip_name, max=MAX_UNPACKED_BYTES)
                target.write(chunk)


def import_adapter_zip(zip_path: str | Path, root: str | Path | None = None, name: str | None = None) -> Path:
    """Unpack an uploaded adapter zip into ``Models/LoRA/`` (or ``root``) as ``name`` (default: the zip's name),
    after every check above; returns the new folder."""
    zip_path = Path(zip_path)
    zip_name = zip_path.name
    root = Path(root) if root else paths.lora_dir()
    if not zipfile.is_zipfile(zip_path):
        raise BundleError("not_a_zip", file=zip_name)
    dest = adapters.unique_dir(root, paths.safe_name(name or zip_path.stem))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            plan = _plan(archive, zip_name)
            with staged_folder(dest, adapters.STAGING_PREFIX) as staging:
                _unpack(archive, plan, staging, zip_name)
                adapters.verify_adapter(staging)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise BundleError("not_a_zip", file=zip_name) from exc
    except AdapterError as exc:
        raise BundleError("zip_not_adapter", file=zip_name, reason=exc.message) from exc
    return dest
