"""The adapter folder: atomic save, verification, scan, delete, and the base model an adapter belongs to.

``Models/LoRA/<task>_<YYYYMMDD_HHMMSS>/`` holds only ``adapter_config.json``, ``adapter_model.safetensors`` (the
LoRA weights, never the full model), the tokenizer files (with its chat template) and ``training_meta.json``.
It is written to a hidden staging folder, loaded back and verified, then renamed into place, so a crash never
leaves a half-written folder that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import paths
from .errors import AdapterError, PathError
from .files import staged_folder, write_json
from .manifest import META_NAME, Manifest, has_manifest, read_manifest, write_manifest

__all__ = ["META_NAME", "AdapterError", "Manifest", "read_manifest"]

logger = logging.getLogger(__name__)

# PEFT's file names (peft.utils.constants), spelt out so that importing this module does not import PEFT (4 s).
CONFIG_NAME = "adapter_config.json"
SAFETENSORS_WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"
STAGING_PREFIX = ".staging-"
FULL_MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
# What PEFT's save_pretrained writes beside the adapter that the folder must not hold.
_NOT_KEPT = ("README.md",)


def run_name(task: str, when: datetime | None = None) -> str:
    """``<task>_<YYYYMMDD_HHMMSS>``, the task name sanitised."""
    return f"{paths.safe_name(task)}_{(when or datetime.now()).strftime('%Y%m%d_%H%M%S')}"


def unique_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name_2``... when taken: an existing adapter is never overwritten."""
    candidate, n = paths.inside(root, name), 1
    while candidate.exists() or (root / f"{STAGING_PREFIX}{candidate.name}").exists():
        n += 1
        candidate = paths.inside(root, f"{name}_{n}")
    return candidate


# --- base model fingerprint -------------------------------------------------------------------------------


def base_fingerprint(base_dir: str | Path) -> str:
    """A cheap identity of a base model: its config and the headers (names, shapes, dtypes) and sizes of its
    weight files. Reading multi-GB weights in full would take minutes; the headers change whenever they do."""
    base = Path(base_dir)
    digest = hashlib.sha256()
    digest.update((base / "config.json").read_bytes())
    for weights in sorted(base.glob("*.safetensors")):
        digest.update(weights.name.encode())
        digest.update(str(weights.stat().st_size).encode())
        digest.update(_safetensors_header(weights))
    return digest.hexdigest()[:32]


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return b""
        (size,) = struct.unpack("<Q", raw)
        return f.read(min(size, 100_000_000))


# --- save + verify ----------------------------------------------------------------------------------------


def save_adapter(model: Any, tokenizer: Any, manifest: Manifest, dest: Path) -> Path:
    """Write the adapter of a PEFT ``model`` to ``dest`` through a hidden staging folder, verify it, rename it.

    Raises (and leaves nothing behind but the cleaned-up staging folder) when any step fails.
    """
    from peft import get_peft_model_state_dict

    dest = Path(dest)
    if dest.exists():
        raise AdapterError("adapter_exists", name=dest.name)
    with staged_folder(dest, STAGING_PREFIX) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        for name in _NOT_KEPT:
            (staging / name).unlink(missing_ok=True)
        if manifest.base_repo_id:  # a base from the Hub: the adapter names it there, so that it loads anywhere
            config = read_adapter_config(staging)
            write_json(staging / CONFIG_NAME, {**config, "base_model_name_or_path": manifest.base_repo_id})
        write_manifest(staging, manifest)
        verify_adapter(staging, expected=get_peft_model_state_dict(model), base_dir=manifest.base_model or None)
    logger.info("adapter saved to %s", dest)
    return dest


def verify_adapter(folder: str | Path, expected: dict | None = None, base_dir: str | Path | None = None) -> dict:
    """Check an adapter folder; returns its ``adapter_config.json``. Raises ``AdapterError`` with the reason.

    ``expected``: the state dict that was saved (keys, shapes and values must match). ``base_dir``: the base
    model it must belong to (fingerprint).
    """
    folder = Path(folder)
    config = read_adapter_config(folder)
    weights = folder / SAFETENSORS_WEIGHTS_NAME
    if not weights.is_file():
        if (folder / WEIGHTS_NAME).is_file():
            raise AdapterError("adapter_pickle_only", name=folder.name)
        raise AdapterError("adapter_no_weights", name=folder.name)
    tensors = _load_safetensors(weights, folder)
    if not tensors:
        raise AdapterError("adapter_empty", name=folder.name)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise AdapterError("adapter_not_finite", name=folder.name, key=bad[0])
    full = [f for f in FULL_MODEL_FILES if (folder / f).exists()]
    if full:
        raise AdapterError("adapter_full_model", name=folder.name, file=full[0])
    if expected is not None:
        _compare(tensors, expected, folder)
    if base_dir is not None:
        check_base(folder, base_dir)
    return config


def check_base(adapter: str | Path, base_dir: str | Path) -> None:
    """Refuse an adapter whose manifest says it was trained on another base model than ``base_dir``, naming both.
    An external adapter (no manifest) is not checked here: PEFT itself checks that its modules and shapes fit."""
    adapter = Path(adapter)
    if not has_manifest(adapter):
        return
    manifest = read_manifest(adapter)
    if manifest.base_fingerprint and manifest.base_fingerprint != base_fingerprint(base_dir):
        trained_on = manifest.base_model_name or Path(manifest.base_model or "?").name
        raise AdapterError(
            "adapter_base_mismatch", adapter=adapter.name, trained_on=trained_on, base=Path(base_dir).name
        )


def read_adapter_config(folder: str | Path) -> dict:
    """The folder's ``adapter_config.json``; ``AdapterError`` when it is missing or not a PEFT config."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise AdapterError("adapter_no_config", name=folder.name)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError("adapter_bad_config", name=folder.name) from exc
    if not isinstance(config, dict) or not config.get("peft_type"):
        raise AdapterError("adapter_bad_config", name=folder.name)
    return config


def _load_safetensors(path: Path, folder: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError("adapter_corrupt", name=folder.name) from exc


def _compare(saved: dict, expected: dict, folder: Path) -> None:
    import torch

    for key in sorted(set(saved) ^ set(expected)):
        raise AdapterError("adapter_mismatch", name=folder.name, key=key)
    for key, value in expected.items():
        other = saved[key]
        if other.shape != value.shape or not torch.equal(other.to(value.device, value.dtype), value.detach()):
            raise AdapterError("adapter_mismatch", name=folder.name, key=key)


# --- scan -------------------------------------------------------------------------------------------------


@dataclass
class AdapterInfo:
    path: str
    name: str
    valid: bool
    reason: str = ""  # the error's English sentence
    reason_code: str = ""  # and its code and params, for a translated one
    reason_params: dict = field(default_factory=dict)
    external: bool = False  # a PEFT adapter made elsewhere, without our manifest
    size_bytes: int = 0
    task: str = ""
    status: str = ""
    base_model: str = ""
    rank: int | None = None
    target_modules: list[str] = field(default_factory=list)
    created: str = ""
    final_train_loss: float | None = None
    final_eval_loss: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def scan(root: str | Path | None = None) -> list[AdapterInfo]:
    """Every folder under ``Models/LoRA/`` (or ``root``), newest first, valid or not (with the reason).

    Hidden folders (staging folders of a save in progress or interrupted) are not adapters and are skipped.
    """
    root = Path(root) if root else paths.lora_dir()
    if not root.is_dir():
        return []
    infos = [inspect_adapter(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(infos, key=lambda info: (info.created, info.name), reverse=True)


def inspect_adapter(folder: Path) -> AdapterInfo:
    info = AdapterInfo(path=str(folder), name=folder.name, valid=False)
    info.size_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    info.created = datetime.fromtimestamp(folder.stat().st_mtime).isoformat(timespec="seconds")
    try:
        config = verify_adapter(folder)
        info.rank = config.get("r")
        targets = config.get("target_modules") or []
        info.target_modules = sorted(targets) if isinstance(targets, list) else [str(targets)]
        info.base_model = str(config.get("base_model_name_or_path") or "")
        if has_manifest(folder):
            _fill_from_manifest(info, read_manifest(folder))
        else:
            info.external = True
        info.valid = True
    except AdapterError as exc:
        info.reason, info.reason_code, info.reason_params = exc.message, exc.code, exc.params
    return info


def _fill_from_manifest(info: AdapterInfo, manifest: Manifest) -> None:
    info.task = manifest.task
    info.status = manifest.status
    info.base_model = manifest.base_model or info.base_model
    info.created = manifest.finished_at or info.created
    info.final_train_loss = manifest.final_train_loss
    info.final_eval_loss = manifest.final_eval_loss


def adapter_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of adapter ``name``: a direct, visible child of ``Models/LoRA/`` (no ``..``, no links out)."""
    root = Path(root) if root else paths.lora_dir()
    if not isinstance(name, str) or not 0 < len(name) <= paths.NAME_MAX or "\x00" in name:
        raise AdapterError("adapter_missing", name=paths.cut(str(name)))
    try:
        path = paths.inside(root, name)
    except PathError:
        path = None  # said as "no such adapter", without naming the server's folders
    if path is None or path.parent != root.resolve() or name.startswith(".") or not path.is_dir():
        raise AdapterError("adapter_missing", name=name)
    return path


def delete_adapter(name: str, root: str | Path | None = None) -> None:
    """Remove an adapter folder for good."""
    path = adapter_path(name, root)
    shutil.rmtree(path)
    logger.info("deleted adapter %s", path)


def base_for_adapter(adapter: str | Path) -> Path | None:
    """The base model folder an adapter belongs to, when it is at hand: the one its manifest records, else a folder
    of ``Models/LLM/`` named like the ``base_model_name_or_path`` of its PEFT config (external adapters)."""
    adapter = Path(adapter)
    candidates: list[Any] = []
    if has_manifest(adapter):
        manifest = read_manifest(adapter)
        candidates += [manifest.base_model, paths.llm_dir() / (manifest.base_model_name or "")]
    recorded = read_adapter_config(adapter).get("base_model_name_or_path") or ""
    candidates.append(paths.llm_dir() / Path(str(recorded)).name)
    for candidate in candidates:
        if candidate and (Path(candidate) / "config.json").is_file():
            return Path(candidate).resolve()
    return None
