"""The adapter folder: atomic save, manifest, verification, scan.

``Models/LoRA/<task>_<YYYYMMDD_HHMMSS>/`` holds only ``adapter_config.json``, ``adapter_model.safetensors`` (the
LoRA weights, never the full model), the tokenizer files (with its chat template) and ``training_meta.json``.
It is written to a hidden staging folder, loaded back and verified, then renamed into place, so a crash never
leaves a half-written folder that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import struct
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import paths
from .errors import ModelError, PathError

logger = logging.getLogger(__name__)

# PEFT's file names (peft.utils.constants), spelt out so that importing this module does not import PEFT (4 s).
CONFIG_NAME = "adapter_config.json"
SAFETENSORS_WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"
META_NAME = "training_meta.json"
STAGING_PREFIX = ".staging-"
FULL_MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
# What PEFT's save_pretrained writes beside the adapter that the folder must not hold.
_NOT_KEPT = ("README.md",)


class AdapterError(ModelError):
    code = "adapter"


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


def save_adapter(model: Any, tokenizer: Any, meta: dict, dest: Path) -> Path:
    """Write the adapter of a PEFT ``model`` to ``dest`` through a hidden staging folder, verify it, rename it.

    Raises (and leaves nothing behind but the cleaned-up staging folder) when any step fails.
    """
    from peft import get_peft_model_state_dict

    dest = Path(dest)
    if dest.exists():
        raise AdapterError(f"The adapter folder {dest} already exists.", code="adapter_exists", path=str(dest))
    staging = dest.parent / f"{STAGING_PREFIX}{dest.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        for name in _NOT_KEPT:
            (staging / name).unlink(missing_ok=True)
        _write_json(staging / META_NAME, meta)
        paths.usual_permissions(staging)
        verify_adapter(staging, expected=get_peft_model_state_dict(model), base_dir=meta.get("base_model"))
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("adapter saved to %s", dest)
    return dest


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def verify_adapter(folder: str | Path, expected: dict | None = None, base_dir: str | Path | None = None) -> dict:
    """Check an adapter folder; returns its ``adapter_config.json``. Raises ``AdapterError`` with the reason.

    ``expected``: the state dict that was saved (keys, shapes and values must match). ``base_dir``: the base
    model it must belong to (fingerprint).
    """
    folder = Path(folder)
    config = _read_adapter_config(folder)
    weights = folder / SAFETENSORS_WEIGHTS_NAME
    if not weights.is_file():
        if (folder / WEIGHTS_NAME).is_file():
            raise AdapterError(
                f"{folder.name} has only pickle weights ({WEIGHTS_NAME}); only safetensors are loaded.",
                code="adapter_pickle_only",
                path=str(folder),
            )
        raise AdapterError(
            f"{folder.name} has no {SAFETENSORS_WEIGHTS_NAME}.", code="adapter_no_weights", path=str(folder)
        )
    tensors = _load_safetensors(weights, folder)
    if not tensors:
        raise AdapterError(f"{folder.name}: the adapter weights are empty.", code="adapter_empty", path=str(folder))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise AdapterError(
            f"{folder.name}: adapter weight {bad[0]} has NaN or infinite values.",
            code="adapter_not_finite",
            key=bad[0],
        )
    full = [f for f in FULL_MODEL_FILES if (folder / f).exists()]
    if full:
        raise AdapterError(f"{folder.name} holds a full model ({full[0]}).", code="adapter_full_model", file=full[0])
    if expected is not None:
        _compare(tensors, expected, folder)
    if base_dir is not None and (folder / META_NAME).is_file():
        meta = read_meta(folder)
        if meta.get("base_fingerprint") and meta["base_fingerprint"] != base_fingerprint(base_dir):
            raise AdapterError(
                f"{folder.name} was trained on another base model than {Path(base_dir).name}.",
                code="adapter_base_mismatch",
                adapter=folder.name,
                base=str(base_dir),
            )
    return config


def _read_adapter_config(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise AdapterError(f"{folder.name} has no {CONFIG_NAME}.", code="adapter_no_config", path=str(folder))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(
            f"{folder.name}: {CONFIG_NAME} is unreadable ({exc}).", code="adapter_bad_config", path=str(folder)
        ) from exc
    if not isinstance(config, dict) or not config.get("peft_type"):
        raise AdapterError(
            f"{folder.name}: {CONFIG_NAME} is not a PEFT adapter config.", code="adapter_bad_config", path=str(folder)
        )
    return config


def _load_safetensors(path: Path, folder: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(
            f"{folder.name}: {SAFETENSORS_WEIGHTS_NAME} is truncated or corrupt ({exc}).",
            code="adapter_corrupt",
            path=str(folder),
        ) from exc


def _compare(saved: dict, expected: dict, folder: Path) -> None:
    import torch

    if set(saved) != set(expected):
        missing = sorted(set(expected) - set(saved))[:3]
        raise AdapterError(
            f"{folder.name}: saved weights do not match the trained adapter (missing {missing}).",
            code="adapter_mismatch",
        )
    for key, value in expected.items():
        other = saved[key]
        if other.shape != value.shape or not torch.equal(other.to(value.device, value.dtype), value.detach()):
            raise AdapterError(
                f"{folder.name}: saved weight {key} differs from the trained one.", code="adapter_mismatch", key=key
            )


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(
            f"{Path(folder).name}: {META_NAME} is unreadable ({exc}).", code="adapter_bad_meta"
        ) from exc
    if not isinstance(meta, dict):
        raise AdapterError(f"{Path(folder).name}: {META_NAME} is not an object.", code="adapter_bad_meta")
    return meta


# --- scan -------------------------------------------------------------------------------------------------


@dataclass
class AdapterInfo:
    path: str
    name: str
    valid: bool
    reason: str = ""
    reason_code: str = ""
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
        if (folder / META_NAME).is_file():
            _fill_from_meta(info, read_meta(folder))
        else:
            info.external = True
        info.valid = True
    except AdapterError as exc:
        info.reason, info.reason_code = exc.message, exc.code
    return info


def _fill_from_meta(info: AdapterInfo, meta: dict) -> None:
    info.task = str(meta.get("task", ""))
    info.status = str(meta.get("status", ""))
    info.base_model = str(meta.get("base_model", info.base_model))
    info.created = str(meta.get("finished_at") or info.created)
    losses = meta.get("loss_history") or []
    evals = meta.get("eval_history") or []
    info.final_train_loss = _finite(losses[-1][1]) if losses else None
    info.final_eval_loss = _finite(meta.get("eval_loss_after", evals[-1][1] if evals else None))


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def adapter_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of adapter ``name``: a direct, visible child of ``Models/LoRA/`` (no ``..``, no links out)."""
    root = Path(root) if root else paths.lora_dir()
    try:
        path = paths.inside(root, name)
    except PathError:
        path = None  # said as "no such adapter", without naming the server's folders
    if path is None or path.parent != root.resolve() or name.startswith(".") or not path.is_dir():
        raise AdapterError(f"There is no adapter named {name}.", code="adapter_missing", name=name)
    return path


def delete_adapter(name: str, root: str | Path | None = None) -> None:
    """Remove an adapter folder for good."""
    path = adapter_path(name, root)
    shutil.rmtree(path)
    logger.info("deleted adapter %s", path)
