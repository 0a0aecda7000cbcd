"""Named training settings: the Train tab's settings (``TrainConfig``'s form fields and its targets) saved under a
name in the workspace (``Settings/saved_settings.json``) and loaded again, as LLaMA-Factory saves and loads its
arguments. Every value is checked as Start checks it, when it is saved and when it is read back."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from . import paths
from .config import check_setting, settings_where
from .errors import TrainingError
from .files import write_json

logger = logging.getLogger(__name__)

STORE_NAME = "saved_settings.json"
NAME_MAX = 64
MAX_SAVED = 100
TARGETS_MAX_CHARS = 2000
KEYS = (*settings_where("form"), "targets")


def store_path() -> Path:
    return paths.workspace() / "Settings" / STORE_NAME


def checked(values: dict[str, Any]) -> dict[str, Any]:
    """The known settings of ``values``, each checked (the others are left out); the first bad one is refused."""
    kept = {key: values[key] for key in KEYS if key in values}
    for key, value in kept.items():
        if key == "targets":
            if not isinstance(value, str) or not value.strip() or len(value) > TARGETS_MAX_CHARS:
                raise TrainingError("saved_settings_bad_targets", max=TARGETS_MAX_CHARS)
        elif key != "gradient_checkpointing" or value is not None:
            check_setting(key, value)
    return kept


def load_all() -> dict[str, dict[str, Any]]:
    """Every saved set of settings by name. A corrupt store is set aside (``.corrupt``), never silently lost; an
    entry whose values no longer pass the checks is left out."""
    path = store_path()
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = {str(name): values for name, values in raw.items() if isinstance(values, dict)}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        backup = path.with_suffix(".json.corrupt")
        shutil.copyfile(path, backup)
        logger.warning("saved settings %s are unreadable (%s); a copy is kept at %s", path, exc, backup)
        return {}
    usable = {}
    for name, values in entries.items():
        try:
            usable[name] = checked(values)
        except TrainingError as exc:
            logger.warning("saved settings %r left out: %s", name, exc.message)
    return usable


def save(name: str, values: dict[str, Any]) -> str:
    """Save ``values`` under ``name`` (replacing settings of that name); returns the name as saved."""
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise TrainingError("saved_settings_bad_name", max=NAME_MAX)
    everyone = load_all()
    if name not in everyone and len(everyone) >= MAX_SAVED:
        raise TrainingError("saved_settings_too_many", max=MAX_SAVED)
    everyone[name] = checked(values)
    write_json(store_path(), everyone, indent=1)
    return name


def delete(name: str) -> None:
    everyone = load_all()
    if everyone.pop(name, None) is None:
        raise TrainingError("saved_settings_missing", name=paths.cut(str(name)))
    write_json(store_path(), everyone, indent=1)
