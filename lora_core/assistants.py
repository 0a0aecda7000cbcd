"""Saved assistants: a name, a system prompt, a base model, an adapter and generation settings, kept on disk."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import paths
from .errors import AssistantError
from .files import write_json

logger = logging.getLogger(__name__)

STORE_NAME = "assistants.json"
NAME_MAX = 80


@dataclass
class Assistant:
    name: str
    base_model: str  # folder name under Models/LLM/
    adapter: str | None = None  # folder name under Models/LoRA/, or None for the plain base
    system_prompt: str = ""
    settings: dict = field(default_factory=dict)  # GenerationSettings fields


def store_path() -> Path:
    return paths.workspace() / "Assistants" / STORE_NAME


def load_all() -> dict[str, Assistant]:
    """Every saved assistant by name. A corrupt store is set aside (``.corrupt``), never silently overwritten."""
    path = store_path()
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Assistant)}
        return {a["name"]: Assistant(**{k: v for k, v in a.items() if k in known}) for a in raw}
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        backup = path.with_suffix(".json.corrupt")
        shutil.copyfile(path, backup)
        logger.warning("assistant store %s is unreadable (%s); a copy is kept at %s", path, exc, backup)
        return {}


def _write(assistants: dict[str, Assistant]) -> None:
    write_json(store_path(), [asdict(a) for a in assistants.values()])


def save(assistant: Assistant) -> Assistant:
    name = assistant.name.strip()
    if not name or len(name) > NAME_MAX:
        raise AssistantError("assistant_bad_name", max=NAME_MAX)
    if not assistant.base_model:
        raise AssistantError("assistant_no_base")
    assistant.name = name
    everyone = load_all()
    everyone[name] = assistant
    _write(everyone)
    return assistant


def delete(name: str) -> None:
    everyone = load_all()
    if everyone.pop(name, None) is None:
        raise AssistantError("assistant_missing", name=name)
    _write(everyone)
