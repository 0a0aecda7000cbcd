"""Chat sessions: each browser tab (or API client) answers with its own base model and adapter; the models behind
them are shared.

A ``ChatSession`` holds what one session answers with: a base model folder and an adapter folder (or none), and a
Stop switch of its own. The process keeps the base models that sessions use in a small pool
(``SIMPLE_LORA_CHAT_MODELS``, default 2; the least recently used is dropped first), one ``ChatEngine`` per base model
and workspace, with every adapter a session of that workspace chose loaded onto it. Each reply names its session's
adapter and the engine switches to it under its lock (one reply at a time per engine), so one session's choice never
changes another's answers. A session whose base model was dropped from the pool gets it loaded again at its next
reply.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .chat import ChatEngine, GenerationSettings, check_adapter_base
from .context import Fitted
from .errors import ChatError

_POOL: OrderedDict[tuple[str | None, Path], ChatEngine] = OrderedDict()
_POOL_LOCK = threading.Lock()
DEFAULT_POOL_SIZE = 2


def pool_size() -> int:
    """How many base models chat keeps loaded at once (``SIMPLE_LORA_CHAT_MODELS``, at least 1)."""
    try:
        return max(1, int(os.environ.get("SIMPLE_LORA_CHAT_MODELS", DEFAULT_POOL_SIZE)))
    except ValueError:
        return DEFAULT_POOL_SIZE


def engine_for(base: Path, trust_remote_code: bool = False) -> ChatEngine:
    """The engine holding ``base`` for the current workspace, loading it (and dropping the least recently used
    engine when the pool is full) when needed."""
    key = (paths.current_user(), Path(base).resolve())
    with _POOL_LOCK:
        engine = _POOL.pop(key, None) or ChatEngine()
        _POOL[key] = engine
        dropped = [_POOL.popitem(last=False)[1] for _ in range(len(_POOL) - pool_size())]
    for old in dropped:
        old.unload()  # after a reply in progress on it
    engine.load_base(key[1], trust_remote_code)
    return engine


def loaded_engines() -> list[ChatEngine]:
    """The engines of the current workspace."""
    user = paths.current_user()
    with _POOL_LOCK:
        return [engine for (owner, _), engine in _POOL.items() if owner == user]


def forget_adapter(path: Path) -> None:
    """Take an adapter folder off every engine of the workspace (before the folder is deleted)."""
    path = Path(path).resolve()
    for engine in loaded_engines():
        loaded = engine.adapters.get(path.name)
        if loaded is not None and loaded.path == str(path):
            engine.remove(path.name)


def unload_all() -> None:
    """Every engine of every workspace unloaded (tests; a shutdown)."""
    with _POOL_LOCK:
        engines = list(_POOL.values())
        _POOL.clear()
    for engine in engines:
        engine.unload()


@dataclass
class ChatSession:
    """What one chat session answers with: ``base`` (a model folder) and ``adapter`` (an adapter folder, or None
    for the pure base)."""

    base: Path | None = None
    adapter: Path | None = None
    was_stopped: bool = False  # whether the last reply was ended by Stop
    _replies: set[threading.Event] = field(default_factory=set, repr=False)  # the Stop switch of each reply now

    def load(self, base: str | Path, adapter: str | Path | None = None) -> None:
        """Answer with ``base`` and ``adapter`` from now on; an adapter of another base model is refused before
        anything is loaded."""
        from .models import check_model_dir

        base = check_model_dir(base)
        if adapter is not None:
            check_adapter_base(adapter, base)
        engine = engine_for(base)
        if adapter is not None:
            engine.load_adapter(adapter)
        self.base, self.adapter = base, Path(adapter).resolve() if adapter is not None else None

    def deactivate(self) -> None:
        """The pure base model from now on."""
        self.adapter = None

    def engine(self) -> tuple[ChatEngine, str | None]:
        """The engine with this session's base model, and the name its adapter has there (None: the pure base)."""
        if self.base is None:
            raise ChatError("no_base_loaded")
        engine = engine_for(self.base)
        if self.adapter is None:
            return engine, None
        if not self.adapter.is_dir():  # deleted meanwhile: say so once, then answer with the base
            name, self.adapter = self.adapter.name, None
            raise ChatError("adapter_deleted", name=name)
        return engine, engine.load_adapter(self.adapter).name

    def status(self) -> dict[str, Any]:
        """What the next answer will use."""
        return {"base": str(self.base) if self.base else None, "active": self.adapter.name if self.adapter else None}

    @property
    def busy(self) -> bool:
        """Whether another answer holds this session's model right now (this one would wait)."""
        key = (paths.current_user(), self.base)
        with _POOL_LOCK:
            engine = _POOL.get(key) if self.base is not None else None
        return engine is not None and engine.busy

    @property
    def replying(self) -> bool:
        """Whether a reply of this session is being generated (or waits for the model)."""
        return bool(self._replies)

    def stop(self) -> None:
        """End this session's replies in progress (or their wait for the model) within one token."""
        for switch in list(self._replies):
            switch.set()

    # --- answers, each with this session's base and adapter ---

    def fit(self, messages: list[dict], settings: GenerationSettings) -> Fitted:
        engine, name = self.engine()
        return engine.fit(messages, settings, name)

    def prompt_text(self, messages: list[dict]) -> str:
        engine, name = self.engine()
        return engine.prompt_text(messages, name)

    def stream(self, messages: list[dict], settings: GenerationSettings | None = None) -> Iterator[str]:
        engine, name = self.engine()
        switch = threading.Event()
        self._replies.add(switch)
        try:
            yield from engine.stream(messages, settings, name, switch)
        finally:
            self._replies.discard(switch)
            self.was_stopped = switch.is_set()

    def generate(self, messages: list[dict], settings: GenerationSettings | None = None) -> str:
        return "".join(self.stream(messages, settings))

    def compare(self, messages: list[dict], settings: GenerationSettings | None = None) -> dict[str, str]:
        engine, name = self.engine()
        return engine.compare(messages, settings, name)  # no adapter: the engine says so

    def replay(self, records: list[Any], settings: GenerationSettings | None = None) -> list[dict]:
        engine, name = self.engine()
        return engine.replay(records, settings, name)
