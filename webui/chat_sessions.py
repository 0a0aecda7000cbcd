"""Each page (a browser tab, or an API client) has a chat session of its own, found by Gradio's session hash:
what it loads and activates changes its own answers only (see ``lora_core.sessions``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import gradio as gr

from lora_core import paths
from lora_core.sessions import ChatSession

MAX_SESSIONS = 2000  # the least recently used is forgotten beyond this (its page then starts with no model chosen)
_SESSIONS: OrderedDict[tuple[str | None, str], ChatSession] = OrderedDict()
_LOCK = threading.Lock()


def _key(request: Any) -> tuple[str | None, str]:
    return paths.current_user(), str(getattr(request, "session_hash", None) or "local")


def session(request: Any) -> ChatSession:
    """The chat session of the page that sent ``request`` (a ``gr.Request``)."""
    key = _key(request)
    with _LOCK:
        found = _SESSIONS.pop(key, None) or ChatSession()
        _SESSIONS[key] = found
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return found


def drop(request: gr.Request) -> None:
    """The page was closed: its reply (if any) stops and its session is forgotten."""
    with _LOCK:
        found = _SESSIONS.pop(_key(request), None)
    if found is not None:
        found.stop()
